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
