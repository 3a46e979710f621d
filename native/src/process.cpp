// Child processes and pipes for the native backend. A child is started with posix_spawn, as
// Python's subprocess starts it: descriptors 3 and up closed in the child (close_fds=True),
// SIGPIPE and SIGXFSZ back to their default (restore_signals) but other ignored signals still
// ignored (so `nohup` holds), the program looked up in the PATH of the environment it gets. Its
// exit is watched through a pidfd polled by libuv, and reported once as asyncio's returncode
// (negative: the signal that killed it). Each PIPE entry is a pipe2() pair: the child's end is
// dup2'ed onto its stdio and closed here after the spawn; our end becomes a libuv pipe endpoint.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "eddy/log.hpp"
#include "uv_backend.hpp"
#include "uv_stream.hpp"

extern char** environ;

namespace eddy::native {

namespace {

class SpawnedChild final : public ProcessEndpoint {
 public:
  // `gone`: the child ended and was reaped before its pidfd could be opened; `pidfd` is then a
  // readable stand-in, and the end is reported as for a child reaped elsewhere.
  SpawnedChild(uv_loop_t* loop, int pid, int pidfd, bool gone, std::function<void(int)> on_exit)
      : pid_(pid), pidfd_(pidfd), gone_(gone), on_exit_(std::move(on_exit)) {
    uv_poll_init(loop, &poll_, pidfd_);
    poll_.data = this;
    uv_poll_start(&poll_, UV_READABLE,
                  [](uv_poll_t* h, int, int) { static_cast<SpawnedChild*>(h->data)->reap(); });
  }
  int pid() const noexcept override { return pid_; }
  void send_signal(int sig) override {
    // A child known to be dead gets nothing: once reaped, its pid may name another process.
    // Until it is reaped the pid cannot. A child that died unseen (reaped elsewhere) is ESRCH,
    // which asyncio's transport ignores too: the end is reported when the pidfd says so.
    if (reaped_ || gone_) return;
    if (::kill(pid_, sig) != 0 && errno != ESRCH)
      throw std::system_error(errno, std::generic_category(), "kill");
  }
  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    on_exit_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) {
      auto* self = static_cast<SpawnedChild*>(h->data);
      ::close(self->pidfd_);
      delete self;
    });
  }

 private:
  ~SpawnedChild() override = default;
  // The pidfd is readable once the child has ended.
  void reap() {
    int status = 0;
    const pid_t r = gone_ ? -1 : ::waitpid(pid_, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) return;  // not yet
    uv_poll_stop(&poll_);
    reaped_ = true;
    int returncode = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
    if (r < 0) {
      // Reaped elsewhere (SIGCHLD ignored, or a waitpid(-1) of the program's): the status is
      // lost. asyncio warns and reports 255 rather than a success nobody saw.
      returncode = 255;
      log(LogLevel::warning, "child process pid " + std::to_string(pid_) +
                                 " exit status already read: will report returncode 255");
    }
    if (closed_ || !on_exit_) return;
    auto report = std::move(on_exit_);
    report(returncode);
  }

  int pid_;
  int pidfd_;
  bool gone_;
  uv_poll_t poll_;
  std::function<void(int)> on_exit_;
  bool closed_ = false;
  bool reaped_ = false;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

StreamEndpointPtr UvBackend::adopt_pipe(int fd, const char*) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw std::system_error(errno, std::generic_category(), "fstat");
  if (!(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode)))
    throw ValueError("Pipe transport is for pipes/sockets only.");
  auto* ep = new UvStreamEndpoint(&loop_, UvStreamEndpoint::Kind::pipe);
  StreamEndpointPtr owned(ep);
  if (int rc = uv_pipe_open(ep->pipe(), fd)) throw std::system_error(uv_error(rc), "uv_pipe_open");
  // Some character devices (/dev/null) cannot be watched by epoll, and libuv aborts when it
  // finds out: the endpoint knows beforehand, and refuses to read (EPERM, as Python's selector).
  if (S_ISCHR(st.st_mode)) ep->refuse_reading_unless_pollable();
  return owned;
}

namespace {
// The program to run, as execvp would find it, but in the PATH of `env` when the child gets an
// environment of its own (Python's os.get_exec_path(env); "/bin:/usr/bin" when it has none).
std::string find_program(const ProcessSpec& spec) {
  const std::string& name = spec.args.at(0);
  // As execvp: "" joined to each PATH directory names the directory, which is no program.
  if (name.empty()) throw std::system_error(EACCES, std::generic_category(), "spawn ''");
  if (name.find('/') != std::string::npos) return name;
  std::string path;
  if (spec.env) {
    path = "/bin:/usr/bin";
    for (const std::string& e : *spec.env)
      if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  } else {
    const char* p = std::getenv("PATH");
    path = p ? p : "/bin:/usr/bin";
  }
  int error = ENOENT;
  for (std::size_t begin = 0;;) {
    const std::size_t end = path.find(':', begin);
    std::string dir =
        path.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      error = EACCES;  // as execvp: remembered, the search goes on
    }
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  throw std::system_error(error, std::generic_category(), "spawn " + name);
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}
}  // namespace

SpawnedProcess UvBackend::spawn_process(const ProcessSpec& spec, std::function<void(int)> on_exit) {
  SpawnedProcess out;
  Fd child_ends[3], devnull, moved[3];
  int source[3] = {-1, -1, -1};
  for (int i = 0; i < 3; ++i) {
    const int want = spec.stdio[i];
    if (want == subprocess::PIPE) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
      // fds[0] reads, fds[1] writes. The child reads its stdin, writes stdout and stderr.
      child_ends[i].fd = i == 0 ? fds[0] : fds[1];
      const int ours = i == 0 ? fds[1] : fds[0];
      auto* ep = new UvStreamEndpoint(&loop_, UvStreamEndpoint::Kind::pipe);
      out.pipes[i] = StreamEndpointPtr(ep);
      if (int rc = uv_pipe_open(ep->pipe(), ours)) {
        ::close(ours);
        throw std::system_error(uv_error(rc), "uv_pipe_open");
      }
      source[i] = child_ends[i].fd;
    } else if (want == subprocess::STDOUT && i == 2) {
      source[i] = source[1];
    } else if (want == subprocess::DEVNULL) {
      if (devnull.fd < 0) devnull.fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (devnull.fd < 0) throw std::system_error(errno, std::generic_category(), "/dev/null");
      source[i] = devnull.fd;
    } else if (want == subprocess::INHERIT) {
      source[i] = i;
    } else if (want >= 0) {
      source[i] = want;
    } else {
      // As Popen, whose child then fails to dup2 it: OSError(EBADF).
      throw std::system_error(EBADF, std::generic_category(),
                              "spawn: stdio value " + std::to_string(want));
    }
  }
  // A source that is another of the child's stdio numbers would be overwritten by an earlier
  // dup2: such sources are copied above 2 first.
  for (int i = 0; i < 3; ++i) {
    if (source[i] >= 0 && source[i] < 3 && source[i] != i) {
      moved[i].fd = ::fcntl(source[i], F_DUPFD_CLOEXEC, 3);
      if (moved[i].fd < 0) throw std::system_error(errno, std::generic_category(), "dup");
      source[i] = moved[i].fd;
    }
  }
  if (spec.cwd) {  // checked here, so that the error names the directory, as Python's does
    struct stat st;
    if (::stat(spec.cwd->c_str(), &st) != 0)
      throw std::system_error(errno, std::generic_category(), *spec.cwd);
    if (!S_ISDIR(st.st_mode)) throw std::system_error(ENOTDIR, std::generic_category(), *spec.cwd);
  }
  const std::string program = find_program(spec);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  struct Cleanup {
    posix_spawn_file_actions_t* a;
    posix_spawnattr_t* t;
    ~Cleanup() {
      posix_spawn_file_actions_destroy(a);
      posix_spawnattr_destroy(t);
    }
  } cleanup{&actions, &attr};
  // dup2 onto the same number clears close-on-exec (glibc 2.29+, POSIX 2024). An inherited
  // stdio descriptor that is closed here (a daemon's stdin) stays closed in the child, as with
  // Python's stdin=None, instead of failing the spawn with EBADF.
  for (int i = 0; i < 3; ++i) {
    if (source[i] == i && ::fcntl(i, F_GETFD) < 0) continue;
    posix_spawn_file_actions_adddup2(&actions, source[i], i);
  }
  if (spec.cwd) posix_spawn_file_actions_addchdir_np(&actions, spec.cwd->c_str());
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
  sigset_t defaults, none;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (spec.start_new_session) flags |= POSIX_SPAWN_SETSID;  // glibc 2.26+
  if (spec.process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, *spec.process_group);
  }
  posix_spawnattr_setflags(&attr, flags);

  std::vector<char*> argv;
  for (const std::string& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (spec.env) {
    for (const std::string& e : *spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  pid_t pid = -1;
  if (int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(),
                             spec.env ? envp.data() : environ))
    throw std::system_error(rc, std::generic_category(), "spawn " + spec.args[0]);
  int pidfd = open_pidfd(pid);
  bool gone = false;
  if (pidfd < 0 && errno == ESRCH) {
    // With SIGCHLD ignored the kernel reaps a child as it exits, which a quick one can do before
    // its pidfd is opened. Its status is lost, as when that happens later: a readable eventfd
    // stands in for the pidfd, so the loop reports the end the same way (255, with a warning).
    pidfd = ::eventfd(1, EFD_CLOEXEC);
    gone = true;
  }
  if (pidfd < 0) {
    const int error = errno;
    if (!gone) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    throw std::system_error(error, std::generic_category(), "pidfd_open");
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  out.process = ProcessEndpointPtr(new SpawnedChild(&loop_, pid, pidfd, gone, std::move(on_exit)));
  return out;  // the child's ends close here (Fd destructors)
}

}  // namespace eddy::native
