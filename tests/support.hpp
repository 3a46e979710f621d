// Test support: every LOOP_TEST body runs on each loop kind of this build (the platform loop:
// libuv natively, the emulated selector in WebAssembly; and the virtual-clock loop), and ends by
// proving the loop closed with no handle, future, task or executor job left and no exception
// reported that the test did not expect.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "catch_amalgamated.hpp"
#include "eddy/eddy.hpp"
#include "selector/selector_backend.hpp"
#include "selector/virtual_network.hpp"

struct PlatformLoop {
  static eddy::LoopRef make() { return eddy::new_event_loop(); }
  static constexpr bool virtual_time = false;
};
struct VirtualLoop {
  static eddy::LoopRef make() { return eddy::testing::new_virtual_clock_loop(); }
  static constexpr bool virtual_time = true;
};

// What a scenario did, step by step; joined() for ";"-separated one-line expectations, lines()
// for the conformance traces (one step per line, as Python prints them).
using Trace = std::vector<std::string>;
inline std::string joined(const Trace& t) {
  std::string s;
  for (const auto& x : t) s += x + ";";
  return s;
}
inline std::string lines(const Trace& t) {
  std::string s;
  for (const auto& x : t) s += x + "\n";
  return s;
}

// ": <what>" of a reported exception, for failure messages.
inline std::string describe_exception(const std::exception_ptr& e) {
  return e ? ": " + eddy::exception_text(e) : std::string();
}

template <class Kind>
struct LoopFixture {
  eddy::LoopRef loop = Kind::make();
  std::vector<eddy::ExceptionContext> reported;  // what reached the exception handler

  LoopFixture() {
    loop->set_exception_handler(
        [this](eddy::EventLoop&, const eddy::ExceptionContext& c) { reported.push_back(c); });
  }
  ~LoopFixture() {
    if (auto* net = eddy::vnet::find_network(*loop)) CHECK(net->stats().open_sockets == 0);
    if (!loop->is_closed()) loop->close();
    const eddy::LoopStats s = loop->stats();
    CHECK(s.ready == 0);
    CHECK(s.timers == 0);
    CHECK(s.live_futures == 0);
    CHECK(s.live_tasks == 0);
    CHECK(s.executor_jobs == 0);
    CHECK(s.live_transports == 0);
    for (const auto& c : reported)
      UNSCOPED_INFO("unexpected report: " << c.message << describe_exception(c.exception));
    CHECK(reported.empty());
    reported.clear();
    CHECK(s.live_handles == 0);
    CHECK(loop->ref_count() == 1);
  }
  bool threads() const { return loop->capabilities().supports("run_in_executor"); }
};

// Coroutine bodies avoid braced lists (gcc 12 cannot keep an initializer_list's array in a
// coroutine frame): strings("a", "b") builds the vector in an ordinary function.
template <class... S>
std::vector<std::string> strings(S... s) {
  std::vector<std::string> v;
  (v.emplace_back(s), ...);
  return v;
}

// A file holding `content`, its name already unlinked, positioned at its end (for sendfile): on
// the host's file system natively, in Emscripten's in WebAssembly.
inline int temp_file_with(const std::string& content) {
  char path[] = "/tmp/eddy-sendfile-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  std::size_t off = 0;
  while (off < content.size()) {
    const auto n = ::write(fd, content.data() + off, content.size() - off);
    REQUIRE(n > 0);
    off += static_cast<std::size_t>(n);
  }
  return fd;
}

// A start_server callback: echoes what it reads until EOF, then closes its writer.
inline eddy::Coro<void> echo_until_eof(std::shared_ptr<eddy::StreamReader> reader,
                                       std::shared_ptr<eddy::StreamWriter> writer) {
  for (;;) {
    std::string chunk = co_await reader->read(65536);
    if (chunk.empty()) break;
    writer->write(chunk);
    co_await writer->drain();
  }
  writer->close();
  co_await writer->wait_closed();
}

// The log messages of one level, collected while in scope; the previous sink is back after it.
class CapturedLog {
 public:
  explicit CapturedLog(eddy::LogLevel level = eddy::LogLevel::warning)
      : previous_(eddy::set_log_sink([this, level](eddy::LogLevel l, std::string_view m) {
          if (l == level) messages.emplace_back(m);
        })) {}
  ~CapturedLog() { eddy::set_log_sink(std::move(previous_)); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  std::vector<std::string> messages;

 private:
  eddy::LogSink previous_;
};

// A default-executor job that runs until release(), or 2 s at most: a loop that wrongly waits
// for it then fails its test instead of hanging. Its result is 7.
class HeldExecutorJob {
 public:
  explicit HeldExecutorJob(eddy::EventLoop& loop)
      : job_(loop.run_in_executor(nullptr, [this] {
          started_ = true;
          while (!released_) std::this_thread::yield();
          return 7;
        })) {
    while (!started_) std::this_thread::yield();
    watchdog_ = std::thread([this] {
      for (int i = 0; i < 200 && !released_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      released_ = true;
    });
  }
  ~HeldExecutorJob() {
    release();
    watchdog_.join();
  }
  HeldExecutorJob(const HeldExecutorJob&) = delete;
  HeldExecutorJob& operator=(const HeldExecutorJob&) = delete;
  void release() noexcept { released_ = true; }
  // True once released, by release() or by the watchdog (the loop waited 2 s for the job).
  bool released() const noexcept { return released_; }
  eddy::Future<int>& job() noexcept { return job_; }

 private:
  std::atomic<bool> started_{false}, released_{false};
  eddy::Future<int> job_;
  std::thread watchdog_;
};

#define LOOP_TEST(name, tags) \
  TEMPLATE_TEST_CASE_METHOD(LoopFixture, name, tags, PlatformLoop, VirtualLoop)
