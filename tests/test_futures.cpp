#include "support.hpp"

using namespace eddy;

namespace {
int g_calls = 0;
void count_call(Future<int>) { ++g_calls; }
void other_call(Future<int>) {}
}  // namespace

LOOP_TEST("Future state machine and its errors", "[future][bad-input]") {
  auto fut = this->loop->template create_future<int>();
  CHECK_FALSE(fut.done());
  CHECK_THROWS_MATCHES(fut.result(), InvalidStateError,
                       Catch::Matchers::Message("Result is not set."));
  CHECK_THROWS_MATCHES(fut.exception(), InvalidStateError,
                       Catch::Matchers::Message("Exception is not set."));
  fut.set_result(3);
  CHECK(fut.done());
  CHECK(fut.result() == 3);
  CHECK(fut.exception() == nullptr);
  CHECK_THROWS_AS(fut.set_result(4), InvalidStateError);
  CHECK_THROWS_AS(fut.set_exception(ValueError("x")), InvalidStateError);
  CHECK_FALSE(fut.cancel());
  CHECK(&fut.get_loop() == this->loop.get());
}

LOOP_TEST("cancel(msg) gives CancelledError with the message", "[future]") {
  auto fut = this->loop->template create_future<void>();
  CHECK(fut.cancel("stop it"));
  CHECK(fut.cancelled());
  CHECK(fut.done());
  CHECK_FALSE(fut.cancel("again"));
  try {
    fut.result();
    FAIL("result() of a cancelled future must throw");
  } catch (const CancelledError& e) {
    CHECK(e.message() == "stop it");
  }
  CHECK_THROWS_AS(fut.exception(), CancelledError);
  CHECK_THROWS_AS(fut.set_result(), InvalidStateError);
}

LOOP_TEST("done callbacks run through call_soon, in order, with the future", "[future]") {
  auto& loop = *this->loop;
  auto fut = loop.template create_future<int>();
  std::vector<std::string> trace;
  fut.add_done_callback([&](Future<int> f) { trace.push_back("cb1:" + std::to_string(f.result())); });
  fut.add_done_callback([&](Future<int> f) { trace.push_back("cb2:" + std::to_string(f.result())); });
  loop.call_soon([&] {
    fut.set_result(5);
    trace.push_back("after set_result");  // callbacks are not called inline
  });
  loop.call_soon([&] { trace.push_back("next"); });
  loop.stop();
  loop.run_forever();
  loop.stop();
  loop.run_forever();
  CHECK(trace == std::vector<std::string>{"after set_result", "next", "cb1:5", "cb2:5"});
  // Added after completion: scheduled at once.
  fut.add_done_callback([&](Future<int>) { trace.push_back("late"); });
  CHECK(trace.size() == 4);
  loop.stop();
  loop.run_forever();
  CHECK(trace.back() == "late");
}

LOOP_TEST("remove_done_callback removes every equal callback and returns the count", "[future]") {
  auto& loop = *this->loop;
  auto fut = loop.template create_future<int>();
  g_calls = 0;
  fut.add_done_callback(&count_call);
  fut.add_done_callback(&other_call);
  fut.add_done_callback(&count_call);
  CHECK(fut.remove_done_callback(&count_call) == 2);
  CHECK(fut.remove_done_callback(&count_call) == 0);
  fut.add_done_callback(&count_call);
  fut.set_result(1);
  CHECK(fut.remove_done_callback(&count_call) == 0);  // already scheduled
  loop.stop();
  loop.run_forever();
  CHECK(g_calls == 1);
}

LOOP_TEST("a future's exception that is never retrieved is reported", "[future][errors]") {
  {
    auto fut = this->loop->template create_future<int>();
    fut.set_exception(ValueError("lost"));
  }
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].message == "Future exception was never retrieved");
  CHECK(this->reported[0].exception_text() == "lost");
  this->reported.clear();
  {
    auto fut = this->loop->template create_future<int>();
    fut.set_exception(ValueError("seen"));
    CHECK(fut.exception() != nullptr);
  }
  CHECK(this->reported.empty());
}

LOOP_TEST("setting a result schedules on a closed loop fails like asyncio", "[future][bad-input]") {
  auto& loop = *this->loop;
  auto fut = loop.template create_future<int>();
  fut.add_done_callback([](Future<int>) {});
  loop.close();
  CHECK_THROWS_MATCHES(fut.set_result(1), RuntimeError,
                       Catch::Matchers::Message("Event loop is closed"));
  CHECK(fut.done());  // as asyncio: the result is set before the callbacks are scheduled
  CHECK(fut.result() == 1);
  // A future made on a closed loop is fine until it has something to schedule.
  auto late = loop.template create_future<int>();
  late.set_result(2);
  CHECK(late.result() == 2);
  CHECK(&late.get_loop() == &loop);
}
