#include "support.hpp"

using namespace eddy;

namespace {
Coro<int> forty_two() {
  co_await sleep(0.001);
  co_return 42;
}
Coro<void> forever(bool* cancelled) {
  try {
    co_await sleep(3600);
  } catch (const CancelledError&) {
    *cancelled = true;
    throw;
  }
}
// Where the running task was created, as "file:line" (the inspector's "created at" column).
Coro<std::string> created_where() {
  const SourceLocation at = current_task()->created_at();
  const std::string file = at.file;
  co_return file.substr(file.find_last_of('/') + 1) + ":" + std::to_string(at.line);
}
}  // namespace

// The main task's "created at" is the caller's line, not a line inside Eddy's headers.
TEMPLATE_TEST_CASE(
    "run_until_complete, Runner::run and eddy::run: the main task's place is the call",
    "[runner][inspect]", PlatformLoop, VirtualLoop) {
  auto here = [](int line) { return "test_runner_policy.cpp:" + std::to_string(line); };
  RunOptions options;
  options.loop_factory = [] { return TestType::make(); };
  CHECK(run(created_where(), options) == here(__LINE__));
  {
    Runner runner(options);
    CHECK(runner.run(created_where()) == here(__LINE__));
  }
  LoopRef loop = TestType::make();
  CHECK(loop->run_until_complete(created_where()) == here(__LINE__));
  loop->close();
}

TEMPLATE_TEST_CASE("eddy::run and Runner", "[runner]", PlatformLoop, VirtualLoop) {
  RunOptions options;
  options.loop_factory = [] { return TestType::make(); };
  CHECK(run(forty_two(), options) == 42);

  LoopRef seen;
  {
    options.debug = true;
    Runner runner(options);
    CHECK(runner.run(forty_two()) == 42);
    CHECK(runner.run(forty_two()) == 42);  // the same loop serves several runs
    seen = LoopRef(&runner.get_loop());
    CHECK(seen->get_debug());
    bool cancelled = false;
    auto main_ = [](bool* c) -> Coro<void> {
      get_running_loop().create_task(forever(c), "left over");
      co_return;
    };
    runner.run(main_(&cancelled));
    runner.close();  // cancels the left-over task and waits for it
    CHECK(cancelled);
    CHECK(seen->is_closed());
    CHECK_THROWS_AS(runner.run(forty_two()), RuntimeError);
  }
  CHECK(seen->stats().live_tasks == 0);
  CHECK(seen->stats().live_handles == 0);

  auto nested = [](RunOptions o) -> Coro<void> {
    CHECK_THROWS_WITH(run(forty_two(), o),
                      "eddy::run() cannot be called from a running event loop");
    Runner inner(o);
    CHECK_THROWS_WITH(inner.run(forty_two()),
                      "Runner.run() cannot be called from a running event loop");
    co_return;
  };
  run(nested(options), options);
}

// asyncio.Runner: without a loop factory its loop is the thread's current loop, so synchronous
// code between runs finds it with get_event_loop(), until close(). close() on a runner never
// used does nothing: the runner still works afterwards.
TEST_CASE(
    "Runner: its own loop is the current loop until close; an unused runner's close is a no-op",
    "[runner][policy]") {
  CHECK_THROWS_AS(get_event_loop(), RuntimeError);
  Runner runner;
  runner.close();
  CHECK_THROWS_AS(get_event_loop(), RuntimeError);  // close() made no loop either
  LoopRef loop(&runner.get_loop());
  CHECK(get_event_loop() == loop);
  CHECK(runner.run(forty_two()) == 42);
  CHECK(get_event_loop() == loop);  // between runs
  runner.close();
  CHECK(loop->is_closed());
  CHECK_THROWS_AS(get_event_loop(), RuntimeError);
  CHECK_THROWS_WITH(runner.get_loop(), "Runner is closed");

  RunOptions own;  // a loop factory's loop is left alone, as asyncio
  own.loop_factory = [] { return new_event_loop(); };
  Runner factory_runner(own);
  CHECK(factory_runner.run(forty_two()) == 42);
  CHECK_THROWS_AS(get_event_loop(), RuntimeError);
}

// asyncio fails on the first use of what its loop factory returned (an AttributeError for None);
// Runner used to dereference a null loop.
TEST_CASE("Runner: a loop factory that returns no loop is a TypeError, not a crash", "[runner]") {
  RunOptions options;
  options.loop_factory = [] { return LoopRef(); };
  options.debug = true;
  Runner runner(options);
  CHECK_THROWS_AS(runner.run(forty_two()), TypeError);
  CHECK_THROWS_AS(runner.get_loop(), TypeError);
  runner.close();  // nothing to close
  CHECK(running_loop() == nullptr);
}

// Runner.close() from inside its own run (rc.py in the commit message, python3.13): every task is
// cancelled, then RuntimeError "Cannot close a running event loop"; the runner is left as it was,
// and closes afterwards. Eddy's close used to throw from a destructor here: std::terminate.
namespace {
Coro<void> sleeper(std::vector<std::string>* trace) {
  try {
    co_await sleep(10);
  } catch (const CancelledError&) {
    trace->push_back("other cancelled");
    throw;
  }
}
Coro<int> closes_its_runner(Runner* runner, std::vector<std::string>* trace) {
  Task<void> other = get_running_loop().create_task(sleeper(trace));
  co_await sleep(0);
  try {
    runner->close();
  } catch (const RuntimeError& e) {
    trace->push_back(std::string("close raised: ") + e.what());
  }
  trace->push_back("main cancelling: " + std::to_string(current_task()->cancelling()));
  try {
    co_await sleep(0);
    trace->push_back("main continued");
  } catch (const CancelledError&) {
    trace->push_back("main cancelled at next await");
    throw;
  }
  co_return 1;
}
}  // namespace

TEST_CASE("Runner: close() from inside its run cancels every task and raises", "[runner]") {
  std::vector<std::string> trace;
  Runner runner;
  try {
    runner.run(closes_its_runner(&runner, &trace));
    trace.push_back("run returned");
  } catch (const CancelledError&) {
    trace.push_back("run raised CancelledError");
  }
  CHECK(trace == std::vector<std::string>{"close raised: Cannot close a running event loop",
                                          "main cancelling: 1", "other cancelled",
                                          "main cancelled at next await",
                                          "run raised CancelledError"});
  LoopRef loop(&runner.get_loop());  // still there
  runner.close();
  CHECK(loop->is_closed());
  CHECK(loop->stats().live_tasks == 0);
}

TEST_CASE("policy calls: get_running_loop, get/set/new_event_loop", "[policy]") {
  CHECK(running_loop() == nullptr);
  CHECK_THROWS_WITH(get_running_loop(), "no running event loop");
  CHECK_THROWS_AS(get_event_loop(), RuntimeError);
  LoopRef loop = new_event_loop();
  set_event_loop(loop);
  CHECK(get_event_loop() == loop);
  LoopRef in_loop;
  loop->call_soon([&] {
    in_loop = get_event_loop();  // the running loop
    loop->stop();
  });
  loop->run_forever();
  CHECK(in_loop == loop);
  set_event_loop(nullptr);
  CHECK_THROWS_AS(get_event_loop(), RuntimeError);

  struct CountingPolicy : EventLoopPolicy {
    int made = 0;
    LoopRef new_event_loop() override {
      ++made;
      return eddy::testing::new_virtual_clock_loop();
    }
  };
  auto policy = std::make_shared<CountingPolicy>();
  set_event_loop_policy(policy);
  CHECK(get_event_loop_policy() == policy);
  LoopRef v = new_event_loop();
  CHECK(policy->made == 1);
  CHECK(testing::is_virtual_clock_loop(*v));
  set_event_loop_policy(nullptr);
  CHECK(get_event_loop_policy() != policy);
  v->close();
  loop->close();
  in_loop = {};
  CHECK(loop->ref_count() == 1);
}

LOOP_TEST("guest mode: run_once steps the loop; time_until_work tells the host when", "[guest]") {
  auto& loop = *this->loop;
  CHECK_FALSE(loop.time_until_work().has_value());
  std::vector<std::string> trace;
  loop.call_soon([&] {
    trace.push_back("a");
    loop.call_soon([&] { trace.push_back("b"); });
  });
  CHECK(loop.time_until_work() == 0.0);
  CHECK(loop.run_once() == 1);
  CHECK(trace == std::vector<std::string>{"a"});
  CHECK(loop.run_once() == 1);
  CHECK(trace == std::vector<std::string>{"a", "b"});
  CHECK_FALSE(loop.is_running());

  loop.call_later(0.05, [&] { trace.push_back("timer"); });
  auto wait = loop.time_until_work();
  REQUIRE(wait.has_value());
  CHECK(*wait > 0.0);
  CHECK(*wait <= 0.05);
  CHECK(loop.run_once(0) == 0);  // not due yet, and run_once(0) never waits
  while (trace.size() < 3) loop.run_once(*loop.time_until_work());
  CHECK(trace.back() == "timer");

  struct RecordingHost : HostDriver {
    std::vector<double> delays;
    void schedule(double delay) override { delays.push_back(delay); }
  } host;
  loop.set_host_driver(&host);
  CHECK(host.delays.empty());  // nothing to do
  loop.call_soon([] {});
  REQUIRE(host.delays.size() == 1);
  CHECK(host.delays[0] == 0.0);
  loop.run_once();
  host.delays.clear();
  loop.call_later(1.0, [] {});
  REQUIRE(host.delays.size() == 1);
  CHECK(host.delays[0] > 0.5);
  loop.set_host_driver(nullptr);
}

namespace {
Coro<void> interrupt_soon() {
  co_await sleep(0);
  throw KeyboardInterrupt();
}
Coro<void> wait_a_while(bool* cancelled) {
  get_running_loop().create_task(interrupt_soon());
  bool was_cancelled = false;
  try {
    co_await sleep(
        5);  // bounded, so that a run the interrupt does not end fails instead of hanging
  } catch (const CancelledError&) {
    was_cancelled = true;
  }
  *cancelled = was_cancelled;
  if (was_cancelled) throw CancelledError();
}
}  // namespace

// As asyncio.run: a KeyboardInterrupt raised by another task leaves run(), and closing the
// runner then cancels the main task it interrupted. The interrupting task's exception was never
// retrieved, which is reported when it goes, as asyncio logs it.
TEMPLATE_TEST_CASE(
    "eddy::run: a task's KeyboardInterrupt leaves run and the main task is cancelled",
    "[runner][errors]", PlatformLoop, VirtualLoop) {
  RunOptions options;
  LoopRef loop;
  std::vector<std::string> reported;
  options.loop_factory = [&] {
    loop = TestType::make();
    loop->set_exception_handler([&](EventLoop&, const ExceptionContext& c) {
      reported.push_back(c.message + ": " + c.exception_text());
    });
    return loop;
  };
  bool cancelled = false;
  CHECK_THROWS_AS(run(wait_a_while(&cancelled), options), KeyboardInterrupt);
  CHECK(cancelled);
  REQUIRE(loop);
  CHECK(loop->is_closed());
  CHECK(loop->stats().live_tasks == 0);
  CHECK(reported ==
        std::vector<std::string>{"Task exception was never retrieved: KeyboardInterrupt"});
}

namespace {
// A loop set up as a browser page's: its waiter cannot block, so it cannot run to completion.
struct PageWaiter final : selector::Waiter {
  void wait(double) override {}
  void wake() noexcept override {}
  bool can_block() const noexcept override { return false; }
};
LoopRef page_like_loop() {
  selector::SelectorOptions o;
  o.target = "page-like";
  o.clock = std::make_unique<selector::SteadyClock>();
  o.waiter = std::make_unique<PageWaiter>();
  o.blocking_note = "the page's thread cannot block";
  return LoopRef(new EventLoop(std::make_unique<selector::SelectorBackend>(std::move(o))));
}
Coro<int> seven() {
  co_return 7;
}
}  // namespace

TEST_CASE("run_until_complete and Runner::run where the loop cannot block name themselves",
          "[runner][lifecycle]") {
  // NotSupportedError names run_until_complete (not run_forever, which it calls), and comes
  // before the coroutine becomes a task that would be left pending.
  LoopRef loop = page_like_loop();
  CHECK_FALSE(loop->capabilities().supports("run_until_complete"));
  try {
    loop->run_until_complete(seven());
    FAIL("run_until_complete ran");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "run_until_complete");
    CHECK(e.target() == "page-like");
  }
  Future<int> f = loop->create_future<int>();
  CHECK_THROWS_AS(loop->run_until_complete(f), NotSupportedError);
  CHECK_FALSE(f.done());
  {
    Runner runner(RunOptions{.loop_factory = [&] { return loop; }});
    try {
      (void)runner.run(seven());
      FAIL("Runner::run ran");
    } catch (const NotSupportedError& e) {
      CHECK(e.method() == "run_until_complete");
    }
    runner.close();  // closes the loop without trying to run its clean-up
  }
  CHECK(loop->is_closed());
  CHECK(loop->stats().live_tasks == 0);
}
