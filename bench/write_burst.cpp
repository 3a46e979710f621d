// A burst of small writes into a socket nobody reads yet, then a reader drains it: what a chat or
// pub/sub server does when one client falls behind. Prints how long the writes took, how long the
// drain took once the reader started, and how many write system calls the process made (from
// /proc/self/io), as one JSON line. asyncio sends its whole buffer per system call; Eddy gathers
// what is written while a write is queued, so the count stays near bytes / socket buffer.
//   write_burst [WRITES] [BYTES_EACH]        (defaults 100000 × 100)
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "eddy/eddy.hpp"

using namespace eddy;
using Clock = std::chrono::steady_clock;

static long write_syscalls() {
  std::ifstream io("/proc/self/io");
  std::string key;
  long value = 0;
  while (io >> key >> value)
    if (key == "syscw:") return value;
  return -1;
}

static double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Writer : Protocol {
  Future<void> resumed;
  int pauses = 0;
  void pause_writing() override { ++pauses; }
  void resume_writing() override {
    if (!resumed.done()) resumed.set_result();
  }
};

static Coro<void> burst(int fd, long writes, std::size_t size, std::atomic<bool>& go,
                        Clock::time_point& reader_start) {
  EventLoop& loop = get_running_loop();
  auto writer = std::make_shared<Writer>();
  writer->resumed = loop.create_future<void>();
  Connection c = co_await loop.connect_accepted_socket([writer] { return writer; }, fd);
  const std::string piece(size, 'x');
  const long calls_before = write_syscalls();
  const auto t0 = Clock::now();
  for (long i = 0; i < writes; ++i) c.first->write(piece);
  const double write_ms = ms_since(t0);
  const std::size_t buffered = c.first->get_write_buffer_size();
  reader_start = Clock::now();
  go = true;
  if (writer->pauses) co_await writer->resumed;
  while (c.first->get_write_buffer_size() > 0) co_await sleep(0.0005);
  const double drain_ms = ms_since(reader_start);
  const long calls = write_syscalls() - calls_before;
  c.first->close();
  std::printf(
      "{\"test\": \"write_burst\", \"writes\": %ld, \"bytes_each\": %zu, \"write_ns\": %.1f, "
      "\"buffered_after_writes\": %zu, \"drain_ms\": %.2f, \"write_syscalls\": %ld}\n",
      writes, size, write_ms * 1e6 / double(writes), buffered, drain_ms, calls);
}

int main(int argc, char** argv) {
  const long writes = argc > 1 ? std::atol(argv[1]) : 100000;
  const std::size_t size = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  std::atomic<bool> go{false};
  Clock::time_point reader_start;
  std::thread reader([&] {
    while (!go) std::this_thread::sleep_for(std::chrono::microseconds(100));
    char buf[65536];
    while (::read(sv[1], buf, sizeof buf) > 0) {
    }
  });
  LoopRef loop = new_event_loop();
  loop->run_until_complete(burst(sv[0], writes, size, go, reader_start));
  loop->close();
  reader.join();
  ::close(sv[1]);
}
