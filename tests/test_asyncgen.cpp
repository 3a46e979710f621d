// Async generators: co_yield with co_await in between, the end of iteration, aclose with async
// cleanup, athrow, asend, errors, concurrent steps, cancellation, and the loop's tracking: dropped
// generators are closed by a task, shutdown_asyncgens (and Runner) close the live ones.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conformance_traces.hpp"
#include "support.hpp"

using namespace eddy;

namespace {

// Yields 0..n-1, a loop pass apart; on aclose it cleans up asynchronously and says so.
AsyncGenerator<int> counter(int n, Trace* trace) {
  bool closing = false;
  try {
    for (int i = 0; i < n; ++i) {
      co_await sleep(0);
      co_yield i;
    }
    trace->push_back("counter exhausted");
  } catch (const GeneratorExit&) {
    closing = true;
  }
  if (closing) {
    co_await sleep(0);  // async cleanup (no co_await inside a catch block in C++)
    trace->push_back("counter cleaned up");
    throw GeneratorExit();
  }
}

Coro<void> iterate(Trace* trace) {
  auto gen = counter(3, trace);
  CHECK_FALSE(gen.finished());
  while (auto v = co_await gen.next()) trace->push_back("got " + std::to_string(*v));
  CHECK(gen.finished());
  auto after = co_await gen.next();  // StopAsyncIteration again
  CHECK_FALSE(after.has_value());
  co_await gen.aclose();  // closing a finished generator does nothing
  CHECK(get_running_loop().live_asyncgens() == 0);
}

Coro<void> close_early(Trace* trace) {
  auto gen = counter(10, trace);
  auto first = co_await gen.next();
  trace->push_back("got " + std::to_string(*first));
  CHECK(get_running_loop().live_asyncgens() == 1);
  co_await gen.aclose();
  trace->push_back("closed");
  CHECK(gen.finished());
  CHECK(get_running_loop().live_asyncgens() == 0);
  auto none = co_await gen.next();
  CHECK_FALSE(none.has_value());
  // A generator that was never started is closed without running.
  auto unstarted = counter(10, trace);
  co_await unstarted.aclose();
  CHECK(unstarted.finished());
  auto nothing = co_await unstarted.next();
  CHECK_FALSE(nothing.has_value());
}

AsyncGenerator<std::string> stubborn() {
  for (;;) {
    try {
      co_yield std::string("value");
    } catch (const GeneratorExit&) {
      // ignores the close and yields again
    }
  }
}

AsyncGenerator<int> failing(Trace* trace) {
  co_yield 1;
  co_await sleep(0);
  trace->push_back("failing raises");
  throw ValueError("generator failed");
}

// Yields 1; an exception thrown in at that point is answered with -1, then it ends.
AsyncGenerator<int> catcher(Trace* trace) {
  try {
    co_yield 1;
  } catch (const ValueError& e) {
    trace->push_back(std::string("caught ") + e.what());
  }
  co_yield -1;
}

Coro<void> errors(Trace* trace) {
  auto s = stubborn();
  auto v = co_await s.next();
  CHECK(*v == "value");
  bool ignored = false;
  try {
    co_await s.aclose();
  } catch (const RuntimeError& e) {
    ignored = std::string(e.what()) == "async generator ignored GeneratorExit";
  }
  CHECK(ignored);

  auto f = failing(trace);
  auto one = co_await f.next();
  CHECK(*one == 1);
  try {
    co_await f.next();
  } catch (const ValueError& e) {
    trace->push_back(e.what());
  }
  CHECK(f.finished());
  auto end = co_await f.next();
  CHECK_FALSE(end.has_value());

  auto c = catcher(trace);
  auto first = co_await c.next();
  CHECK(*first == 1);
  auto answer = co_await c.athrow(std::make_exception_ptr(ValueError("thrown in")));
  CHECK(*answer == -1);
  try {
    co_await c.athrow(std::make_exception_ptr(ValueError("not caught")));
  } catch (const ValueError& e) {
    trace->push_back(e.what());  // not handled: it comes out of athrow
  }
  CHECK(c.finished());
  // athrow into a finished generator does nothing: Python's None, nullopt here.
  auto after_end = co_await c.athrow(std::make_exception_ptr(ValueError("after the end")));
  CHECK_FALSE(after_end.has_value());
  // Into one that never started, it raises what was thrown in, and the generator is finished.
  auto unstarted = catcher(trace);
  try {
    co_await unstarted.athrow(std::make_exception_ptr(ValueError("before the start")));
  } catch (const ValueError& e) {
    trace->push_back(e.what());
  }
  CHECK(unstarted.finished());
  auto again = co_await unstarted.athrow(std::make_exception_ptr(ValueError("once more")));
  CHECK_FALSE(again.has_value());
  // And into one closed before it started, too.
  auto closed = catcher(trace);
  co_await closed.aclose();
  auto into_closed = co_await closed.athrow(std::make_exception_ptr(ValueError("closed")));
  CHECK_FALSE(into_closed.has_value());
}

AsyncGenerator<int> slow(Trace* trace) {
  try {
    co_await sleep(3600);
  } catch (const CancelledError&) {
    trace->push_back("slow cancelled");
    throw;
  }
  co_yield 1;
}

Coro<void> consume(AsyncGenerator<int>& gen, Trace* trace) {
  auto v = co_await gen.next();
  trace->push_back(v ? "value" : "end");
}

Coro<void> concurrency_and_cancel(Trace* trace) {
  auto& loop = get_running_loop();
  auto gen = slow(trace);
  auto t = loop.create_task(consume(gen, trace));
  co_await sleep(0);
  bool running = false;
  try {
    co_await gen.next();
  } catch (const RuntimeError& e) {
    running = std::string(e.what()) == "anext(): asynchronous generator is already running";
  }
  CHECK(running);
  t.cancel();
  try {
    co_await t;
  } catch (const CancelledError&) {
    trace->push_back("consumer cancelled");
  }
  CHECK(gen.finished());
}

}  // namespace

LOOP_TEST("AsyncGenerator: aclose ignored, errors out of next, athrow", "[asyncgen][faults]") {
  Trace trace;
  this->loop->run_until_complete(errors(&trace));
  // The stubborn generator was dropped at a yield: the loop's closing task failed in turn.
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].message ==
        "an error occurred during closing of asynchronous generator <async_generator stubborn>");
  this->reported.clear();
  CHECK(joined(trace) ==
        "failing raises;generator failed;caught thrown in;not caught;before the start;");
}

LOOP_TEST("AsyncGenerator: one step at a time; cancelling the consumer cancels the generator",
          "[asyncgen]") {
  Trace trace;
  this->loop->run_until_complete(concurrency_and_cancel(&trace));
  CHECK(joined(trace) == "slow cancelled;consumer cancelled;");
}

namespace {

Coro<void> dropped_generator(Trace* trace) {
  auto& loop = get_running_loop();
  {
    auto gen = counter(10, trace);
    auto v = co_await gen.next();
    trace->push_back("got " + std::to_string(*v));
  }  // dropped while suspended at a yield: the loop closes it in a task of its own
  trace->push_back("dropped");
  CHECK(loop.live_asyncgens() == 1);
  co_await sleep(0);
  co_await sleep(0);
  co_await sleep(0);
  CHECK(loop.live_asyncgens() == 0);
}

Coro<void> leave_suspended(std::optional<AsyncGenerator<int>>* a,
                           std::optional<AsyncGenerator<int>>* b, Trace* trace) {
  a->emplace(counter(10, trace));
  b->emplace(counter(10, trace));
  auto x = co_await (*a)->next();
  auto y = co_await (*b)->next();
  trace->push_back("suspended at " + std::to_string(*x) + " and " + std::to_string(*y));
}

AsyncGenerator<int> bad_cleanup() {
  bool closing = false;
  try {
    co_yield 1;
  } catch (const GeneratorExit&) {
    closing = true;
  }
  if (closing) throw ValueError("cleanup failed");
}

}  // namespace

LOOP_TEST("AsyncGenerator: a generator dropped at a yield is closed by the loop", "[asyncgen]") {
  Trace trace;
  this->loop->run_until_complete(dropped_generator(&trace));
  CHECK(joined(trace) == "got 0;dropped;counter cleaned up;");
}

LOOP_TEST("shutdown_asyncgens closes the live generators and reports failed cleanups",
          "[asyncgen]") {
  auto& loop = *this->loop;
  CHECK(loop.capabilities().supports("shutdown_asyncgens"));
  Trace trace;
  std::optional<AsyncGenerator<int>> a, b, c;
  loop.run_until_complete(leave_suspended(&a, &b, &trace));
  auto start_bad = [](std::optional<AsyncGenerator<int>>* c) -> Coro<void> {
    c->emplace(bad_cleanup());
    co_await (*c)->next();
  };
  loop.run_until_complete(start_bad(&c));
  CHECK(loop.live_asyncgens() == 3);
  loop.run_until_complete(loop.shutdown_asyncgens());
  CHECK(loop.live_asyncgens() == 0);
  CHECK(a->finished());
  CHECK(b->finished());
  CHECK(c->finished());
  CHECK(joined(trace) == "suspended at 0 and 0;counter cleaned up;counter cleaned up;");
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].message.find(
            "an error occurred during closing of asynchronous generator") == 0);
  this->reported.clear();
}

TEST_CASE("eddy::run closes the generators left suspended when main returns", "[asyncgen]") {
  Trace trace;
  std::optional<AsyncGenerator<int>> a, b;
  eddy::run(leave_suspended(&a, &b, &trace));
  CHECK(a->finished());
  CHECK(b->finished());
  CHECK(joined(trace) == "suspended at 0 and 0;counter cleaned up;counter cleaned up;");
}

LOOP_TEST("AsyncGenerator: co_yield between awaits, then the end of iteration", "[asyncgen]") {
  Trace trace;
  this->loop->run_until_complete(iterate(&trace));
  CHECK(joined(trace) == "got 0;got 1;got 2;counter exhausted;");
}

LOOP_TEST("AsyncGenerator: aclose raises GeneratorExit at the yield and awaits the cleanup",
          "[asyncgen]") {
  Trace trace;
  this->loop->run_until_complete(close_early(&trace));
  CHECK(joined(trace) == "got 0;counter cleaned up;closed;");
}

namespace {

std::string shown(const std::optional<int>& v) {
  return v ? std::to_string(*v) : std::string("None");
}

// asyncgen_send.py's generator: adds up what is sent in until a ValueError is thrown in, then
// yields -1 and cleans up asynchronously when closed there.
AsyncGenerator<int, int> accumulator(Trace* trace) {
  int total = 0;
  std::string caught;
  try {
    for (;;) {
      co_await sleep(0);
      std::optional<int> got = co_yield total;
      trace->push_back("gen got " + shown(got));
      if (got) total += *got;
    }
  } catch (const ValueError& e) {
    caught = e.what();
  }
  trace->push_back("gen caught " + caught);
  bool closing = false;
  try {
    co_yield -1;
  } catch (const GeneratorExit&) {
    closing = true;
  }
  if (closing) {
    trace->push_back("gen cleanup");
    co_await sleep(0);
    trace->push_back("gen cleaned up");
    throw GeneratorExit();
  }
}

Coro<void> ticker(Trace* trace) {
  for (int i = 0; i < 8; ++i) {
    trace->push_back("tick " + std::to_string(i));
    co_await sleep(0);
  }
}

Coro<std::optional<int>> send(AsyncGenerator<int, int>* gen, int value) {
  co_return co_await gen->asend(value);
}

Coro<void> asyncgen_send(Trace* trace) {
  auto& loop = get_running_loop();
  auto ticks = loop.create_task(ticker(trace));
  auto gen = accumulator(trace);
  try {
    co_await gen.asend(5);
  } catch (const TypeError& e) {
    trace->push_back(std::string("TypeError ") + e.what());
  }
  auto first = co_await gen.asend(std::nullopt);
  trace->push_back("first " + shown(first));
  auto three = co_await gen.asend(3);
  trace->push_back("sent 3 -> " + shown(three));
  auto next = co_await gen.next();
  trace->push_back("next -> " + shown(next));
  auto early = gen.asend(10);
  auto four = co_await gen.asend(4);
  trace->push_back("sent 4 -> " + shown(four));
  auto ten = co_await early;
  trace->push_back("early 10 -> " + shown(ten));
  auto running = loop.create_task(send(&gen, 1));
  co_await sleep(0);
  try {
    co_await gen.asend(2);
  } catch (const RuntimeError& e) {
    trace->push_back(std::string("RuntimeError ") + e.what());
  }
  auto one = co_await running;
  trace->push_back("task sent 1 -> " + shown(one));
  auto thrown = co_await gen.athrow(std::make_exception_ptr(ValueError("boom")));
  trace->push_back("athrow -> " + shown(thrown));
  co_await gen.aclose();
  trace->push_back("closed");
  auto after = co_await gen.asend(7);
  if (!after) trace->push_back("StopAsyncIteration");
  co_await ticks;
}

// Takes ownership of what is sent in; ends when it is sent nothing.
AsyncGenerator<std::string, std::unique_ptr<std::string>> collector(Trace* trace) {
  std::string all;
  for (;;) {
    std::optional<std::unique_ptr<std::string>> got = co_yield all;
    if (!got) break;
    all += **got;
    trace->push_back("took " + **got);
  }
}

Coro<void> send_owned(Trace* trace) {
  auto gen = collector(trace);
  auto empty = co_await gen.next();
  CHECK(*empty == "");
  auto a = co_await gen.asend(std::make_unique<std::string>("a"));
  CHECK(*a == "a");
  auto ab = co_await gen.asend(std::make_unique<std::string>("b"));
  CHECK(*ab == "ab");
  auto end = co_await gen.next();
  CHECK_FALSE(end.has_value());
  CHECK(gen.finished());
  // A send to a generator that never started leaves it unstarted; next() starts it.
  auto fresh = collector(trace);
  bool refused = false;
  try {
    co_await fresh.asend(std::make_unique<std::string>("too early"));
  } catch (const TypeError&) {
    refused = true;
  }
  CHECK(refused);
  CHECK(get_running_loop().live_asyncgens() == 0);
  auto started = co_await fresh.asend(std::nullopt);
  CHECK(*started == "");
  CHECK(get_running_loop().live_asyncgens() == 1);
  co_await fresh.aclose();
}

}  // namespace

LOOP_TEST("conformance: asyncgen_send matches Python's asyncio", "[asyncgen][conformance]") {
  Trace trace;
  this->loop->run_until_complete(asyncgen_send(&trace));
  CHECK(lines(trace) == conformance::asyncgen_send);
}

LOOP_TEST("AsyncGenerator: asend moves the value into the co_yield; nullopt is next()",
          "[asyncgen]") {
  Trace trace;
  this->loop->run_until_complete(send_owned(&trace));
  CHECK(joined(trace) == "took a;took b;");
}
