#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "support.hpp"

using namespace eddy;

LOOP_TEST("an exception escaping a callback reaches the handler and the loop keeps running",
          "[errors]") {
  auto& loop = *this->loop;
  bool after = false;
  Handle failing = loop.call_soon([] { throw ValueError("callback failed"); });
  loop.call_soon([&] {
    after = true;
    loop.stop();
  });
  loop.run_forever();
  CHECK(after);
  REQUIRE(this->reported.size() == 1);
  {
    const auto& c = this->reported[0];
    CHECK(c.message.rfind("Exception in callback ", 0) == 0);
    CHECK(c.message.find("lambda") != std::string::npos);
    CHECK(c.exception_text() == "callback failed");
    CHECK(c.handle == failing);  // as asyncio: the handle call_soon returned
    CHECK(std::string(c.handle.callback_name()).find("lambda") != std::string::npos);
    CHECK(std::string(c.source.file).empty());  // no place outside debug mode, as asyncio
  }
  this->reported.clear();
  // In debug mode the report says where the callback was scheduled.
  loop.set_debug(true);
  Handle debug_failing = loop.call_soon([] { throw ValueError("callback failed"); });
  loop.run_until_complete(sleep(0));
  loop.set_debug(false);
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].handle == debug_failing);
  CHECK(std::string(this->reported[0].source.file).find("test_errors_debug.cpp") !=
        std::string::npos);
  this->reported.clear();
}

// As asyncio, each failing done callback is reported under "handle", named as the callback:
// the first (which Eddy runs from the future, without a record) as the later ones.
LOOP_TEST("an exception escaping a done callback is reported with its handle; later ones run",
          "[errors][futures]") {
  EventLoop& loop = *this->loop;
  Future<int> f = loop.template create_future<int>();
  std::vector<std::string> trace;
  f.add_done_callback([](Future<int>) { throw ValueError("first failed"); });
  f.add_done_callback(
      [&](Future<int> g) { trace.push_back("second:" + std::to_string(g.result())); });
  f.add_done_callback([](Future<int>) { throw ValueError("third failed"); });
  f.set_result(7);
  loop.run_until_complete(sleep(0));
  CHECK(trace == std::vector<std::string>{"second:7"});
  REQUIRE(this->reported.size() == 2);
  for (const auto& c : this->reported) {
    CHECK(c.message.rfind("Exception in callback ", 0) == 0);
    CHECK(c.message.find("lambda") != std::string::npos);
    CHECK(bool(c.handle));
  }
  // (A handle that ran lets its callback go, so only the report's own record still has a name.)
  CHECK(std::string(this->reported[0].handle.callback_name()).find("lambda") != std::string::npos);
  CHECK(this->reported[0].exception_text() == "first failed");
  CHECK(this->reported[0].future.get() == f.base());  // Eddy's extra: the future it ran for
  CHECK(this->reported[1].exception_text() == "third failed");
  this->reported.clear();
}

LOOP_TEST("exception handler: get/set, default handler, and a handler that throws", "[errors]") {
  auto& loop = *this->loop;
  std::vector<std::string> logged;
  std::mutex mu;
  LogSink old = set_log_sink([&](LogLevel level, std::string_view m) {
    std::lock_guard<std::mutex> lock(mu);
    logged.push_back(std::string(to_string(level)) + " " + std::string(m));
  });
  CHECK(bool(loop.get_exception_handler()));
  loop.set_exception_handler(nullptr);
  CHECK_FALSE(loop.get_exception_handler());
  loop.call_exception_handler(ExceptionContext("plain report"));
  loop.default_exception_handler(ExceptionContext("direct", std::make_exception_ptr(ValueError("v"))));
  loop.set_exception_handler([](EventLoop&, const ExceptionContext&) { throw TypeError("handler bug"); });
  loop.call_soon([] { throw ValueError("original"); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  set_log_sink(std::move(old));
  REQUIRE(logged.size() == 3);
  CHECK(logged[0] == "ERROR plain report");
  CHECK(logged[1].find("direct") != std::string::npos);
  CHECK(logged[1].find("exception: v") != std::string::npos);
  CHECK(logged[2].find("Unhandled error in exception handler") != std::string::npos);
  CHECK(logged[2].find("handler bug") != std::string::npos);
  // As asyncio, the report carries the whole context the handler was given, its exception too.
  CHECK(logged[2].find("Exception in callback") != std::string::npos);
  CHECK(logged[2].find("original") != std::string::npos);
  loop.set_exception_handler(nullptr);
}

// asyncio re-raises KeyboardInterrupt (and SystemExit) from a custom exception handler: it ends
// the run, and what was still ready runs in the next one (eh.py in the commit message).
LOOP_TEST("exception handler: a KeyboardInterrupt from it ends the run", "[errors]") {
  auto& loop = *this->loop;
  std::vector<std::string> trace;
  loop.set_exception_handler([&trace](EventLoop&, const ExceptionContext& c) {
    trace.push_back("handler got " + c.exception_text());
    throw KeyboardInterrupt();
  });
  loop.call_soon([] { throw ValueError("v"); });
  loop.call_soon([&trace] { trace.push_back("second ran"); });
  try {
    loop.run_forever();
    trace.push_back("run ended");
  } catch (const KeyboardInterrupt&) {
    trace.push_back("KI escaped");
  }
  loop.call_soon([&loop] { loop.stop(); });
  loop.run_forever();
  // The same from a task's done callback, a watched run (debug mode times each callback).
  loop.set_debug(true);
  Future<int> f = loop.template create_future<int>();
  f.add_done_callback([](Future<int>) { throw ValueError("w"); });
  f.set_result(1);
  try {
    loop.run_forever();
  } catch (const KeyboardInterrupt&) {
    trace.push_back("KI escaped again");
  }
  loop.set_debug(false);
  loop.set_exception_handler(nullptr);
  CHECK(trace == std::vector<std::string>{"handler got v", "KI escaped", "second ran",
                                          "handler got w", "KI escaped again"});
}

LOOP_TEST("debug mode reports slow callbacks with their name and where they were scheduled",
          "[debug]") {
  auto& loop = *this->loop;
  std::vector<std::string> logged;
  LogSink old = set_log_sink([&](LogLevel level, std::string_view m) {
    if (level == LogLevel::warning) logged.emplace_back(m);
  });
  CHECK_FALSE(loop.get_debug());
  CHECK(loop.slow_callback_duration() == 0.1);
  CHECK_THROWS_AS(loop.set_slow_callback_duration(-1), ValueError);
  loop.set_debug(true);
  loop.set_slow_callback_duration(0.05);
  auto take_time = [&] {
    if (testing::is_virtual_clock_loop(loop))
      testing::advance_virtual_clock(loop, 0.06);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
  };
  loop.call_soon([] {});  // fast: not reported
  const std::uint32_t line = __LINE__ + 1;
  loop.call_soon(take_time);
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  set_log_sink(std::move(old));
  loop.set_debug(false);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find("Executing <Handle ") == 0);
  CHECK(logged[0].find("test_errors_debug.cpp:" + std::to_string(line)) != std::string::npos);
  CHECK(logged[0].find("lambda") != std::string::npos);
  CHECK(logged[0].find(" seconds") != std::string::npos);
}

static Coro<void> slow_after(EventLoop& loop, Future<void> f) {
  auto take_time = [&loop] {
    if (testing::is_virtual_clock_loop(loop))
      testing::advance_virtual_clock(loop, 0.06);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
  };
  take_time();  // in the first step
  co_await f;
  take_time();  // in the wake-up
}

LOOP_TEST("debug mode reports slow task steps as Task.__step and __wakeup, where it was created",
          "[debug][tasks]") {
  EventLoop& loop = *this->loop;
  CapturedLog warnings;
  loop.set_debug(true);
  loop.set_slow_callback_duration(0.05);
  Future<void> f = loop.create_future<void>();
  const std::uint32_t line = __LINE__ + 1;
  Task<void> t = loop.create_task(slow_after(loop, f));
  loop.run_until_complete(sleep(0));
  f.set_result();
  loop.run_until_complete(t);
  const std::vector<std::string>& logged = warnings.messages;
  loop.set_debug(false);
  REQUIRE(logged.size() == 2);
  const std::string at = "test_errors_debug.cpp:" + std::to_string(line) + ">";
  CHECK(logged[0].find("Executing <Handle Task.__step scheduled at ") == 0);
  CHECK(logged[0].find(at) != std::string::npos);
  CHECK(logged[1].find("Executing <Handle Task.__wakeup scheduled at ") == 0);
  CHECK(logged[1].find(at) != std::string::npos);
}

// Debug mode and the inspector run callbacks on a path of their own that times each one (the
// plain path stays small); every kind of ready entry must behave the same there.
LOOP_TEST("callbacks timed by debug mode or the inspector: every kind runs, raises and is reported",
          "[debug][errors][inspect]") {
  EventLoop& loop = *this->loop;
  for (const bool use_inspector : {false, true}) {
    CAPTURE(use_inspector);
    std::vector<std::string> logged;
    LogSink old = set_log_sink([&](LogLevel level, std::string_view m) {
      if (level == LogLevel::warning) logged.emplace_back(m);
    });
    if (use_inspector)
      inspect::enable(loop);
    else
      loop.set_debug(true);
    loop.set_slow_callback_duration(0.05);
    std::vector<std::string> trace;
    Future<int> f = loop.template create_future<int>();
    f.add_done_callback([](Future<int>) { throw ValueError("done callback failed"); });
    f.add_done_callback([&](Future<int> g) {
      trace.push_back("done:" + std::to_string(g.result()));
      if (testing::is_virtual_clock_loop(loop))
        testing::advance_virtual_clock(loop, 0.06);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
    });
    Handle cancelled = loop.call_soon([&] { trace.push_back("cancelled ran"); });
    cancelled.cancel();
    loop.call_soon([] { throw ValueError("callback failed"); });
    loop.call_soon([&] {
      trace.push_back("callback");
      f.set_result(3);
    });
    Task<int> t = loop.create_task([](std::vector<std::string>& tr) -> Coro<int> {
      tr.push_back("step");
      co_await sleep(0);
      tr.push_back("wakeup");
      co_return 5;
    }(trace));
    CHECK(loop.run_until_complete(t) == 5);
    loop.run_until_complete(sleep(0));
    if (use_inspector)
      inspect::disable(loop);
    else
      loop.set_debug(false);
    set_log_sink(std::move(old));

    CHECK(trace == std::vector<std::string>{"callback", "step", "done:3", "wakeup"});
    REQUIRE(this->reported.size() == 2);
    CHECK(this->reported[0].exception_text() == "callback failed");
    CHECK(bool(this->reported[0].handle));
    CHECK(this->reported[1].exception_text() == "done callback failed");
    CHECK(this->reported[1].future.get() == f.base());
    this->reported.clear();
    // Debug mode logs the slow done callback; the inspector records it instead.
    if (use_inspector) {
      CHECK(logged.empty());
    } else {
      REQUIRE(logged.size() == 1);
      CHECK(logged[0].find("Executing <Handle ") == 0);
      CHECK(logged[0].find("lambda") != std::string::npos);
    }
  }
}

LOOP_TEST("debug mode rejects non-thread-safe calls from another thread", "[debug][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;  // one thread only: nothing to check
  loop.set_debug(true);
  std::string error;
  loop.call_soon([&] {
    std::thread other([&] {
      try {
        loop.call_soon([] {});
      } catch (const RuntimeError& e) {
        error = e.what();
      }
    });
    other.join();
    loop.stop();
  });
  loop.run_forever();
  loop.set_debug(false);
  CHECK(error.find("Non-thread-safe operation") == 0);
}

// asyncio's _run_once times Handle._run, which reports a callback's exception itself: a slow
// callback that raises is both reported and logged as slow. Only the first used to happen.
LOOP_TEST("debug mode logs a slow callback even when it raised", "[debug][errors]") {
  EventLoop& loop = *this->loop;
  CapturedLog warnings;
  loop.set_debug(true);
  loop.set_slow_callback_duration(0.05);
  loop.call_soon([&loop] {
    if (testing::is_virtual_clock_loop(loop))
      testing::advance_virtual_clock(loop, 0.06);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
    throw ValueError("slow and failing");
  });
  loop.run_until_complete(sleep(0));
  loop.set_debug(false);
  const std::vector<std::string>& logged = warnings.messages;
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].exception_text() == "slow and failing");
  this->reported.clear();
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find("Executing <Handle ") == 0);
  CHECK(logged[0].find(" took 0.0") != std::string::npos);
}

static Coro<void> interrupt_after_a_pass() {
  co_await sleep(0);
  throw KeyboardInterrupt();
}

// asyncio's Handle._run and Task.__step re-raise KeyboardInterrupt (and SystemExit) instead of
// reporting it: it leaves run_until_complete / run_forever, and what was still ready runs in the
// next run. A task keeps it as its exception too. Eddy used to report it and keep running.
LOOP_TEST("KeyboardInterrupt raised by a callback or a task ends the run, as asyncio",
          "[errors][lifecycle]") {
  EventLoop& loop = *this->loop;
  for (const bool debug : {false, true}) {
    CAPTURE(debug);
    loop.set_debug(debug);  // the timed path must do the same
    std::vector<std::string> trace;

    Future<int> fut = loop.create_future<int>();
    loop.call_soon([] { throw KeyboardInterrupt(); });
    loop.call_soon([&] {
      trace.push_back("after callback");
      fut.set_result(1);
    });
    CHECK_THROWS_AS(loop.run_until_complete(fut), KeyboardInterrupt);
    CHECK(trace.empty());
    CHECK_FALSE(loop.is_running());
    CHECK(running_loop() == nullptr);
    CHECK(loop.run_until_complete(fut) == 1);  // the rest ran in the next run
    CHECK(trace == std::vector<std::string>{"after callback"});

    Future<int> done = loop.create_future<int>();
    done.add_done_callback([](Future<int>) { throw KeyboardInterrupt(); });
    done.set_result(2);
    loop.call_soon([&] { trace.push_back("after done callback"); });
    CHECK_THROWS_AS(loop.run_forever(), KeyboardInterrupt);
    CHECK(trace.size() == 1);
    loop.stop();
    loop.run_forever();
    CHECK(trace.back() == "after done callback");

    Task<void> task = loop.create_task(interrupt_after_a_pass());
    Future<int> never = loop.create_future<int>();
    TimerHandle guard = loop.call_later(5.0, [&] { loop.stop(); });  // old behaviour: no hang
    CHECK_THROWS_AS(loop.run_until_complete(never), KeyboardInterrupt);
    guard.cancel();
    REQUIRE(task.done());
    CHECK_THROWS_AS(std::rethrow_exception(task.exception()), KeyboardInterrupt);
    CHECK(loop.current_task() == nullptr);
    loop.run_until_complete(sleep(0));

    // The task run_until_complete waits for raises it: its stop callback, already scheduled,
    // must not stop the next run (asyncio's _run_until_complete_cb returns on it).
    CHECK_THROWS_AS(loop.run_until_complete(interrupt_after_a_pass()), KeyboardInterrupt);
    CHECK(loop.run_until_complete(sleep(0.01, 7)) == 7);
    CHECK(this->reported.empty());
  }
  loop.set_debug(false);
}

TEST_CASE("exception_text: what an exception says, for a message", "[errors]") {
  CHECK(exception_text(nullptr).empty());
  CHECK(exception_text(std::make_exception_ptr(ValueError("bad value"))) == "bad value");
  CHECK(exception_text(std::make_exception_ptr(CancelledError("stop"))) == "CancelledError(stop)");
  CHECK(exception_text(std::make_exception_ptr(
            std::system_error(std::make_error_code(std::errc::connection_refused), "connect"))) ==
        std::string("connect: ") + std::strerror(ECONNREFUSED));
  CHECK(exception_text(std::make_exception_ptr(42)) == "unknown exception");
}
