// add_signal_handler / remove_signal_handler with real signals sent to this process, and
// asyncio's validation (invalid numbers, uncatchable signals). Loop kinds without signals say so.
#include <csignal>

#include "support.hpp"

using namespace eddy;

LOOP_TEST("signal handlers: real signals, validation, removal", "[signals]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("add_signal_handler")) {
    CHECK_THROWS_AS(loop.add_signal_handler(SIGUSR1, [] {}), NotSupportedError);
    return;
  }
  CHECK_THROWS_AS(loop.add_signal_handler(0, [] {}), ValueError);
  CHECK_THROWS_AS(loop.add_signal_handler(100000, [] {}), ValueError);
  CHECK_THROWS_AS(loop.add_signal_handler(SIGKILL, [] {}), RuntimeError);
  CHECK_THROWS_AS(loop.remove_signal_handler(-3), ValueError);
  if (SIGRTMIN > 32) {
    // The C library keeps 32 (and 33) for itself: not among Python's valid_signals().
    CHECK_THROWS_AS(loop.add_signal_handler(32, [] {}), ValueError);
    CHECK_THROWS_AS(loop.remove_signal_handler(32), ValueError);
  }
  CHECK_FALSE(loop.remove_signal_handler(SIGUSR2));

  int usr1 = 0, usr2 = 0;
  loop.add_signal_handler(SIGUSR1, [&] { ++usr1; });
  loop.add_signal_handler(SIGUSR2, [&] {
    ++usr2;
    loop.stop();
  });
  loop.call_soon([] { ::raise(SIGUSR1); });
  loop.call_later(0.05, [] { ::raise(SIGUSR2); });
  loop.run_forever();
  CHECK(usr1 == 1);
  CHECK(usr2 == 1);

  // A second add replaces the first handler.
  int replaced = 0;
  loop.add_signal_handler(SIGUSR1, [&] {
    ++replaced;
    loop.stop();
  });
  loop.call_soon([] { ::raise(SIGUSR1); });
  loop.run_forever();
  CHECK(usr1 == 1);
  CHECK(replaced == 1);

  CHECK(loop.remove_signal_handler(SIGUSR1));
  CHECK_FALSE(loop.remove_signal_handler(SIGUSR1));
  struct sigaction now;
  ::sigaction(SIGUSR1, nullptr, &now);
  CHECK(now.sa_handler == SIG_DFL);  // the default disposition is back
  // SIGUSR2 stays registered: close() removes it.
}

// A handler that raises is reported under its own name and where it was added, as the loop's
// other callbacks are (Eddy named an internal lambda of the loop).
LOOP_TEST("a signal handler that raises is reported under its own name", "[signals][errors]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("add_signal_handler")) SKIP("no signals here");
  loop.set_debug(true);  // the place is kept in debug mode, as asyncio's source traceback
  const std::uint32_t line = __LINE__ + 1;
  loop.add_signal_handler(SIGUSR1, [] { throw ValueError("handler failed"); });
  loop.call_soon([] { ::raise(SIGUSR1); });
  loop.run_until_complete(sleep(0.05));
  CHECK(loop.remove_signal_handler(SIGUSR1));
  REQUIRE(this->reported.size() == 1);
  const auto& c = this->reported[0];
  CHECK(c.exception_text() == "handler failed");
  CHECK(c.message.find("lambda") != std::string::npos);
  CHECK(c.message.find("add_signal_handler") == std::string::npos);
  CHECK(std::string(c.source.file).find("test_signals.cpp") != std::string::npos);
  CHECK(c.source.line == line);
  loop.set_debug(false);
  this->reported.clear();
}

#ifndef __EMSCRIPTEN__
#include <unistd.h>

#include <thread>

// asyncio wants the main thread (its set_wakeup_fd); libuv delivers a signal to every loop that
// watches it, so a loop running in another thread can take signals too.
TEST_CASE("signal handlers: a loop running in another thread receives them", "[signals]") {
  int got = 0;
  bool closed = false;
  std::thread worker([&] {
    LoopRef loop = new_event_loop();
    loop->add_signal_handler(SIGUSR1, [&] {
      ++got;
      loop->stop();
    });
    loop->call_soon([] { ::kill(::getpid(), SIGUSR1); });  // to the process, not this thread
    loop->call_later(10.0, [&] { loop->stop(); });
    loop->run_forever();
    CHECK(loop->remove_signal_handler(SIGUSR1));
    loop->close();
    closed = loop->is_closed();
  });
  worker.join();
  CHECK(got == 1);
  CHECK(closed);
}
#endif

#ifndef __EMSCRIPTEN__
#include <sys/wait.h>

namespace {
// The test runner may have been started with SIGINT ignored (a background job): give these
// tests the default disposition a program normally starts with, and put the old one back.
struct DefaultSigint {
  struct sigaction saved {};
  DefaultSigint() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGINT, &dfl, &saved);
  }
  ~DefaultSigint() { ::sigaction(SIGINT, &saved, nullptr); }
};

bool sigint_is_default() {
  struct sigaction now {};
  ::sigaction(SIGINT, nullptr, &now);
  return now.sa_handler == SIG_DFL;
}

Coro<void> interrupted_main(bool* caught_during_run, bool* cleaned_up) {
  *caught_during_run = !sigint_is_default();
  get_running_loop().call_later(0.05, [] { ::kill(::getpid(), SIGINT); });
  try {
    co_await sleep(30);
  } catch (const CancelledError&) {
    *cleaned_up = true;
    throw;
  }
}

Coro<int> swallowing_main() {
  get_running_loop().call_later(0.05, [] { ::kill(::getpid(), SIGINT); });
  try {
    co_await sleep(30);
  } catch (const CancelledError&) {
    current_task()->uncancel();
  }
  co_return 7;
}
}  // namespace

// asyncio's Runner: the first Ctrl-C cancels the main task, whose cleanup runs, and run() raises
// KeyboardInterrupt; SIGINT's default disposition is back afterwards.
TEST_CASE("Runner: SIGINT cancels the main task, then run() raises KeyboardInterrupt",
          "[signals][runner]") {
  DefaultSigint dfl;
  bool caught_during_run = false, cleaned_up = false;
  {
    Runner runner;
    CHECK_THROWS_AS(runner.run(interrupted_main(&caught_during_run, &cleaned_up)),
                    KeyboardInterrupt);
    CHECK(caught_during_run);
    CHECK(cleaned_up);
    CHECK(sigint_is_default());
    // A main task that takes the cancellation back (uncancel) returns normally.
    CHECK(runner.run(swallowing_main()) == 7);
    CHECK(sigint_is_default());
  }
  // eddy::run in another thread leaves SIGINT alone, as asyncio does off the main thread.
  bool touched = true;
  std::thread worker(
      [&] { touched = eddy::run([]() -> Coro<bool> { co_return !sigint_is_default(); }()); });
  worker.join();
  CHECK_FALSE(touched);
}

// The second Ctrl-C ends the process at once, even while the loop is stuck in a callback (as a
// second KeyboardInterrupt does in Python): proved in a child process.
TEST_CASE("Runner: a second SIGINT ends the process even when the loop is stuck",
          "[signals][runner]") {
  DefaultSigint dfl;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      eddy::run([]() -> Coro<void> {
        ::kill(::getpid(), SIGINT);  // the first: noted, to be handled by the loop...
        ::kill(::getpid(), SIGINT);  // ...which is busy here: the second ends the process
        ::usleep(2000000);
        co_return;
      }());
    } catch (...) {
    }
    ::_exit(0);  // not reached when the second SIGINT works
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == SIGINT);
}
#endif
