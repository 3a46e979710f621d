#include <cstdlib>
#include <memory>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "support.hpp"

using namespace eddy;

static Coro<void> noop_coro() {
  co_return;
}

LOOP_TEST("run_until_complete returns the future's result", "[lifecycle]") {
  auto fut = this->loop->template create_future<int>();
  this->loop->call_soon([fut]() mutable { fut.set_result(7); });
  CHECK(this->loop->run_until_complete(fut) == 7);
  CHECK_FALSE(this->loop->is_running());
}

LOOP_TEST("run_until_complete rethrows the future's exception", "[lifecycle]") {
  auto fut = this->loop->template create_future<int>();
  this->loop->call_soon([fut]() mutable { fut.set_exception(ValueError("boom")); });
  CHECK_THROWS_MATCHES(this->loop->run_until_complete(fut), ValueError,
                       Catch::Matchers::Message("boom"));
}

LOOP_TEST("stop lets the current pass finish; callbacks it schedules wait", "[lifecycle]") {
  std::vector<std::string> trace;
  auto& loop = *this->loop;
  loop.call_soon([&] {
    trace.push_back("a");
    loop.stop();
    loop.call_soon([&] { trace.push_back("c"); });
  });
  loop.call_soon([&] { trace.push_back("b"); });
  loop.run_forever();
  CHECK(trace == std::vector<std::string>{"a", "b"});
  loop.stop();  // the next run is one pass: it runs what the first run left ready
  loop.run_forever();
  CHECK(trace == std::vector<std::string>{"a", "b", "c"});
}

LOOP_TEST("stop before run_forever runs exactly one pass", "[lifecycle]") {
  auto& loop = *this->loop;
  int ran = 0;
  loop.call_soon([&] {
    ++ran;
    loop.call_soon([&] { ++ran; });
  });
  loop.stop();
  loop.run_forever();
  CHECK(ran == 1);
  loop.stop();
  loop.run_forever();
  CHECK(ran == 2);
}

LOOP_TEST("is_running is true inside callbacks and the running loop is visible", "[lifecycle]") {
  auto& loop = *this->loop;
  bool running = false;
  EventLoop* seen = nullptr;
  loop.call_soon([&] {
    running = loop.is_running();
    seen = &get_running_loop();
    loop.stop();
  });
  loop.run_forever();
  CHECK(running);
  CHECK(seen == &loop);
  CHECK_THROWS_AS(get_running_loop(), RuntimeError);
}

LOOP_TEST("misuse of the lifecycle is rejected as asyncio does", "[lifecycle][bad-input]") {
  auto& loop = *this->loop;
  SECTION("running a running loop") {
    std::string what;
    loop.call_soon([&] {
      try {
        loop.run_forever();
      } catch (const RuntimeError& e) {
        what = e.what();
      }
      loop.stop();
    });
    loop.run_forever();
    CHECK(what == "This event loop is already running");
  }
  SECTION("run_until_complete inside the running loop leaves no trace") {
    // Refused before anything is attached or created: the done future's stop callback used to
    // stop the outer run a pass later, and a coroutine became a task that ran anyway.
    auto done = loop.template create_future<int>();
    done.set_result(1);
    bool side_ran = false;
    auto side = [](bool* ran) -> Coro<void> {
      *ran = true;
      co_return;
    };
    auto body = [](EventLoop* l, Future<int> f, Coro<void> c,
                   std::vector<std::string>* out) -> Coro<int> {
      try {
        l->run_until_complete(f);
      } catch (const RuntimeError& e) {
        out->push_back(e.what());
      }
      try {
        l->run_until_complete(std::move(c));
      } catch (const RuntimeError& e) {
        out->push_back(e.what());
      }
      co_await sleep(0.01);
      co_return 7;
    };
    std::vector<std::string> errors;
    CHECK(loop.run_until_complete(body(&loop, done, side(&side_ran), &errors)) == 7);
    CHECK(errors == std::vector<std::string>{"This event loop is already running",
                                             "This event loop is already running"});
    CHECK_FALSE(side_ran);
    CHECK(loop.all_tasks().empty());
  }
  SECTION("closing a running loop") {
    std::string what;
    loop.call_soon([&] {
      try {
        loop.close();
      } catch (const RuntimeError& e) {
        what = e.what();
      }
      loop.stop();
    });
    loop.run_forever();
    CHECK(what == "Cannot close a running event loop");
    CHECK_FALSE(loop.is_closed());
  }
  SECTION("a closed loop") {
    loop.close();
    loop.close();  // idempotent
    CHECK(loop.is_closed());
    CHECK_THROWS_MATCHES(loop.run_forever(), RuntimeError,
                         Catch::Matchers::Message("Event loop is closed"));
    CHECK_THROWS_AS(loop.call_soon([] {}), RuntimeError);
    CHECK_THROWS_AS(loop.call_later(1.0, [] {}), RuntimeError);
    CHECK_THROWS_AS(loop.call_soon_threadsafe([] {}), RuntimeError);
    CHECK_THROWS_AS(loop.create_task(noop_coro()), RuntimeError);
  }
  SECTION("another loop running in this thread") {
    LoopRef other = TestType::make();
    std::string what;
    loop.call_soon([&] {
      try {
        other->run_forever();
      } catch (const RuntimeError& e) {
        what = e.what();
      }
      loop.stop();
    });
    loop.run_forever();
    other->close();
    CHECK(what == "Cannot run the event loop while another loop is running");
  }
  SECTION("a future of another loop") {
    LoopRef other = TestType::make();
    {
      auto fut = other->create_future<int>();
      CHECK_THROWS_AS(loop.run_until_complete(fut), ValueError);
    }
    other->close();
  }
}

LOOP_TEST("run_until_complete on a future nobody completes reports the stop", "[lifecycle]") {
  auto& loop = *this->loop;
  auto fut = loop.template create_future<int>();
  loop.call_soon([&] { loop.stop(); });
  CHECK_THROWS_MATCHES(loop.run_until_complete(fut), RuntimeError,
                       Catch::Matchers::Message("Event loop stopped before Future completed."));
}

LOOP_TEST("close drops pending callbacks and timers and releases what they captured",
          "[lifecycle]") {
  auto& loop = *this->loop;
  auto token = std::make_shared<int>(1);
  loop.call_soon([token] {});
  loop.call_later(100.0, [token] {});
  CHECK(token.use_count() == 3);
  loop.close();
  CHECK(token.use_count() == 1);
}

LOOP_TEST("time() is monotonic and finer than a millisecond", "[lifecycle]") {
  auto& loop = *this->loop;
  double prev = loop.time();
  for (int i = 0; i < 1000; ++i) {
    double t = loop.time();
    REQUIRE(t >= prev);
    prev = t;
  }
  if (!TestType::virtual_time) {
    // Sub-millisecond: some consecutive reads differ by less than a millisecond but not zero.
    bool fine = false;
    double a = loop.time();
    for (int i = 0; i < 100000 && !fine; ++i) {
      double b = loop.time();
      if (b > a && b - a < 1e-3) fine = true;
      a = b;
    }
    CHECK(fine);
  }
}

#if defined(__GLIBC__) && !defined(__EMSCRIPTEN__)
// (ctest runs each test case in a process of its own, so nothing before it raised the thresholds.)
TEST_CASE_METHOD(LoopFixture<PlatformLoop>,
                 "a native loop keeps freed read buffers in glibc's heap", "[lifecycle][native]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  SKIP("a sanitizer's allocator replaces glibc's");
#else
  // The fixture made a native loop. A 100 KiB block freed at the heap's top stays in the heap:
  // the next read's block is not faulted in again.
  void* volatile block = std::malloc(100 * 1024);
  const std::size_t heap = mallinfo2().arena;
  std::free(block);
  CHECK(mallinfo2().arena == heap);
  // A 16 MiB block comes from the heap too, not from a mapping of its own.
  const std::size_t mapped = mallinfo2().hblks;
  void* volatile big = std::malloc(std::size_t{16} << 20);
  CHECK(mallinfo2().hblks == mapped);
  std::free(big);
#endif
}
#endif
