// Real peers for the native socket tests: Python's asyncio (tests/peers/asyncio_peer.py) run as
// a child process. A server peer prints "READY <port|path>" once listening.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

class PythonPeer {
 public:
  explicit PythonPeer(std::vector<std::string> args) {
    int fds[2];
    if (::pipe(fds) != 0) std::abort();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<std::string> argv_s{"python3", EDDY_PEER_SCRIPT};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    out_ = fds[0];
  }
  PythonPeer(const PythonPeer&) = delete;
  ~PythonPeer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }
  // Blocks for one line of the peer's stdout ("" at EOF).
  std::string read_line() {
    std::string line;
    char c;
    while (::read(out_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  // For server peers: the value after "READY".
  std::string ready() {
    std::string l = read_line();
    return l.rfind("READY ", 0) == 0 ? l.substr(6) : "peer did not start: " + l;
  }
  // True once the peer has exited (without blocking).
  bool exited() {
    if (pid_ <= 0) return true;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }
  // Everything the peer still prints, then waits for it to exit; returns its output.
  std::string finish() {
    std::string all, l;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_, buf, sizeof buf)) > 0) all.append(buf, static_cast<std::size_t>(n));
    if (pid_ > 0) ::waitpid(pid_, &status_, 0);
    pid_ = -1;
    return all;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int status_ = 0;
};

// A loopback TCP port nobody listens on (bound, then closed).
inline std::uint16_t unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);  // nobody listens there now
  return ntohs(a.sin_port);
}

// The pattern the peer checks: byte i is ((i % 4096) * 7 + i / 4096) % 251.
inline std::string peer_pattern(std::size_t start, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = start + i;
    s[i] = static_cast<char>(((k % 4096) * 7 + k / 4096) % 251);
  }
  return s;
}

// The reading end of an OS pipe, drained by a thread of its own until EOF (a peer that reads
// everything, after waiting `delay_us` first). join() then gives what arrived.
class PipeDrain {
 public:
  explicit PipeDrain(unsigned delay_us = 0) {
    if (::pipe2(fds_, O_CLOEXEC) != 0) std::abort();
    reader_ = std::thread([this, delay_us] {
      if (delay_us) ::usleep(delay_us);
      char buf[65536];
      for (ssize_t n; (n = ::read(fds_[0], buf, sizeof buf)) > 0;)
        got_.append(buf, static_cast<std::size_t>(n));
    });
  }
  ~PipeDrain() {
    if (reader_.joinable()) join();
  }
  // The writing end, for the code under test (which closes it).
  int write_end() const noexcept { return fds_[1]; }
  const std::string& join() {
    reader_.join();
    ::close(fds_[0]);
    return got_;
  }

 private:
  int fds_[2];
  std::string got_;
  std::thread reader_;
};
