// The inspector's data, without a GPU: what the loop's hooks record and what a Snapshot shows
// (ready queue, timers, tasks, transports against their water marks), the wire protocol's
// decoder and delta encoder, the model's history, recording and Chrome trace export.
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "demo_workload.hpp"
#include "eddy/inspect.hpp"
#include "eddy/inspect_wire.hpp"
#include "model.hpp"
#include "support.hpp"

using namespace eddy;
namespace json = eddy::inspect::json;

namespace {

struct Named {
  int* hits;
  void operator()() const { ++*hits; }
  const char* callback_name() const noexcept { return "test::named_callback"; }
};

std::uint64_t live(const inspect::Snapshot& s, inspect::HandleKind k) {
  return s.metrics.live[static_cast<std::size_t>(k)];
}

// All snapshots published so far, oldest first.
std::vector<std::shared_ptr<const inspect::Snapshot>> published(const inspect::Feed& feed) {
  return feed.since(0);
}

}  // namespace

LOOP_TEST("inspect: the ready queue and the timer heap with names, places and cancellations",
          "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Recorder& rec = inspect::enable(loop);
  CHECK(inspect::recorder(loop) == &rec);
  int hits = 0;
  const std::uint32_t line = __LINE__ + 1;
  for (int i = 0; i < 3; ++i) loop.call_soon(Named{&hits});
  TimerHandle far = loop.call_later(10, Named{&hits});
  TimerHandle near = loop.call_later(5, Named{&hits});
  TimerHandle gone = loop.call_later(7, Named{&hits});
  gone.cancel();

  inspect::Snapshot s = rec.capture();
  REQUIRE(s.ready.size() == 3);
  CHECK(s.ready_total == 3);
  CHECK(s.ready[0].name == "test::named_callback");
  CHECK(s.ready[0].file.find("test_inspect.cpp") != std::string::npos);
  CHECK(s.ready[0].line == line);
  REQUIRE(s.timers.size() == 3);
  CHECK(s.timers[0].when == near.when());  // by deadline
  CHECK(s.timers[1].cancelled);
  CHECK(s.timers[1].name == "<cancelled>");
  CHECK(s.timers[2].when == far.when());
  CHECK(s.metrics.cancelled_timers == 1);
  CHECK(live(s, inspect::HandleKind::callback) == 3);
  CHECK(live(s, inspect::HandleKind::timer) == 2);

  loop.run_until_complete(sleep(0));
  CHECK(hits == 3);
  far.cancel();
  near.cancel();
  // The pass published what happened: three runs with their names and durations.
  auto all = published(*rec.feed());
  REQUIRE(!all.empty());
  std::size_t runs = 0, scheduled = 0, armed = 0, cancelled = 0;
  for (const auto& snap : all)
    for (const inspect::Event& e : snap->events) {
      if (e.kind == inspect::EventKind::callback_run && e.name &&
          std::string(e.name) == "test::named_callback")
        ++runs;
      if (e.kind == inspect::EventKind::callback_scheduled) ++scheduled;
      if (e.kind == inspect::EventKind::timer_armed) ++armed;
      if (e.kind == inspect::EventKind::timer_cancelled) ++cancelled;
    }
  CHECK(runs == 3);
  CHECK(scheduled >= 3);
  CHECK(armed == 3);
  CHECK(cancelled == 1);
  inspect::disable(loop);
  CHECK(inspect::recorder(loop) == nullptr);
}

// The library's own timers (sleep, wait_for, timeout, wait, as_completed) are shown as armed by
// the caller's line, under the function's name: not as a lambda at a line inside Eddy.
static Coro<void> sleeper(std::uint32_t* line) {
  *line = __LINE__ + 1;
  co_await sleep(100.0);
}
static Coro<void> waits_for(Future<void> f, std::uint32_t* line) {
  *line = __LINE__ + 1;
  co_await wait_for(f, 50.0);
}
static Coro<void> scoped(Future<void> f, std::uint32_t* line) {
  *line = __LINE__ + 1;
  auto scope = timeout(60.0);
  co_await scope.run(f);
}
static Coro<void> waits(Future<void> f, std::uint32_t* line) {
  std::vector<Future<void>> fs;
  fs.push_back(f);
  WaitOptions options;
  options.timeout = 70.0;
  *line = __LINE__ + 1;
  auto result = co_await wait(std::move(fs), options);
  CHECK(result.pending.size() == 1);
}
static Coro<void> completes(Future<void> f, std::uint32_t* line) {
  std::vector<Future<void>> fs;
  fs.push_back(f);
  *line = __LINE__ + 1;
  auto in_order = as_completed(std::move(fs), 80.0);
  auto next = in_order.next();
  co_await next;
}

LOOP_TEST(
    "inspect: sleep's, wait_for's, timeout's, wait's and as_completed's timers: named, "
    "at the caller's line",
    "[inspect][timers]") {
  EventLoop& loop = *this->loop;
  inspect::Recorder& rec = inspect::enable(loop);
  std::uint32_t lines[5] = {};
  std::vector<Future<void>> never;
  for (int i = 0; i < 4; ++i) never.push_back(loop.create_future<void>());
  std::vector<Task<void>> tasks;
  tasks.push_back(loop.create_task(sleeper(&lines[0])));
  tasks.push_back(loop.create_task(waits_for(never[0], &lines[1])));
  tasks.push_back(loop.create_task(scoped(never[1], &lines[2])));
  tasks.push_back(loop.create_task(waits(never[2], &lines[3])));
  tasks.push_back(loop.create_task(completes(never[3], &lines[4])));
  loop.run_until_complete(sleep(0));  // each task reached its timer
  inspect::Snapshot s = rec.capture();
  const char* names[5] = {"eddy::sleep", "eddy::timeout", "eddy::timeout", "eddy::wait",
                          "eddy::as_completed"};
  for (int i = 0; i < 5; ++i) {
    INFO(names[i] << " armed at test_inspect.cpp:" << lines[i]);
    CHECK(std::count_if(s.timers.begin(), s.timers.end(), [&](const inspect::HandleInfo& t) {
            return t.name == names[i] && t.line == lines[i] &&
                   t.file.find("test_inspect.cpp") != std::string::npos;
          }) == 1);
  }
  CHECK(s.timers.size() == 5);
  for (auto& t : tasks) t.cancel();
  for (int i = 0; i < 3; ++i) loop.run_until_complete(sleep(0));
  for (auto& t : tasks) CHECK(t.cancelled());
  for (auto& f : never) f.cancel();
  inspect::disable(loop);
}

static Coro<int> wait_for_it(Future<int> f) {
  int v = co_await f;
  co_return v;
}

static Coro<int> outer(Future<int> f) {
  int v = co_await wait_for_it(f);
  co_return v + 1;
}

LOOP_TEST("inspect: task steps and wake-ups in the ready queue, named, at the task's creation",
          "[inspect][tasks]") {
  EventLoop& loop = *this->loop;
  inspect::Recorder& rec = inspect::enable(loop);
  Future<int> f = loop.create_future<int>();
  const std::uint32_t line = __LINE__ + 1;
  Task<int> t = loop.create_task(wait_for_it(f), "stepper");
  inspect::Snapshot s = rec.capture();
  REQUIRE(s.ready.size() == 1);
  CHECK(s.ready[0].name == "Task.__step");
  CHECK(s.ready[0].file.find("test_inspect.cpp") != std::string::npos);
  CHECK(s.ready[0].line == line);
  CHECK_FALSE(s.ready[0].cancelled);
  CHECK(live(s, inspect::HandleKind::callback) == 1);

  loop.run_until_complete(sleep(0));  // the task runs up to its await
  CHECK(rec.capture().ready.empty());
  f.set_result(41);
  s = rec.capture();
  REQUIRE(s.ready.size() == 1);
  CHECK(s.ready[0].name == "Task.__wakeup");
  CHECK(s.ready[0].line == line);
  CHECK(loop.run_until_complete(t) == 41);

  // A future's first done callback also runs from the queue without a record, under its name.
  Future<void> g = loop.create_future<void>();
  int hits = 0;
  g.add_done_callback([&hits](Future<void>) { ++hits; });
  g.set_result();
  s = rec.capture();
  REQUIRE(s.ready.size() == 1);
  CHECK(s.ready[0].name.find("lambda") != std::string::npos);
  loop.run_until_complete(sleep(0));
  CHECK(hits == 1);
  rec.feed()->request();  // publish this pass's events now
  loop.run_until_complete(sleep(0));

  // Each step was recorded as scheduled and run under one id (a flow arrow), with its name.
  std::map<std::uint64_t, int> scheduled, ran;
  for (const auto& snap : published(*rec.feed()))
    for (const inspect::Event& e : snap->events) {
      if (e.kind == inspect::EventKind::callback_scheduled && e.line == line) ++scheduled[e.id];
      if (e.kind == inspect::EventKind::callback_run && e.name &&
          std::string(e.name).rfind("Task.__", 0) == 0 && e.line == line)
        ++ran[e.id];
    }
  CHECK(scheduled.size() == 2);
  CHECK(ran == scheduled);
  inspect::disable(loop);
}

LOOP_TEST("inspect: tasks with state, run count and await chain", "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Recorder& rec = inspect::enable(loop);
  Future<int> f = loop.create_future<int>();
  Task<int> t = loop.create_task(outer(f), "outer-task");
  loop.run_until_complete(sleep(0));
  inspect::Snapshot s = rec.capture();
  const inspect::TaskInfo* row = nullptr;
  for (const auto& ti : s.tasks)
    if (ti.name == "outer-task") row = &ti;
  REQUIRE(row);
  CHECK(row->state == "pending");
  CHECK(row->runs == 1);
  CHECK(row->file.find("test_inspect.cpp") != std::string::npos);
  REQUIRE(row->await_chain.size() == 2);
  CHECK(row->await_chain[0].awaiting == "wait_for_it");
  CHECK(row->await_chain[1].awaiting.find("Future") != std::string::npos);
  CHECK(row->await_chain[1].file.find("test_inspect.cpp") != std::string::npos);
  CHECK(live(s, inspect::HandleKind::task) == 1);
  // A task awaiting a task: the snapshot's rows say what Task::await_chain() says.
  auto waiter = [](Task<int> inner) -> Coro<int> { co_return co_await inner; };
  Task<int> w = loop.create_task(waiter(t), "waiter-task");
  loop.run_until_complete(sleep(0));
  s = rec.capture();
  for (const Task<int>* task : {&t, &w}) {
    const inspect::TaskInfo* r = nullptr;
    for (const auto& ti : s.tasks)
      if (ti.id == task->task()->id()) r = &ti;
    REQUIRE(r);
    const std::vector<AwaitFrame> chain = task->await_chain();
    REQUIRE(r->await_chain.size() == chain.size());
    for (std::size_t i = 0; i < chain.size(); ++i) {
      CHECK(r->await_chain[i].function == chain[i].function);
      CHECK(r->await_chain[i].awaiting == chain[i].awaiting);
      CHECK(r->await_chain[i].file == std::string_view(chain[i].where.file));
      CHECK(r->await_chain[i].line == chain[i].where.line);
    }
  }
  for (const auto& ti : s.tasks)
    if (ti.name == "waiter-task") CHECK(ti.await_chain.back().awaiting == "Task 'outer-task'");
  f.set_result(41);
  CHECK(loop.run_until_complete(t) == 42);
  CHECK(loop.run_until_complete(w) == 42);
  s = rec.capture();
  for (const auto& ti : s.tasks)
    if (ti.name == "outer-task") CHECK(ti.state == "done");
  CHECK(live(s, inspect::HandleKind::task) == 0);
}

LOOP_TEST("inspect: a full event window drops events and counts them", "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Options options;
  options.event_capacity = 10;
  inspect::Recorder& rec = inspect::enable(loop, options);
  int hits = 0;
  for (int i = 0; i < 50; ++i) loop.call_soon(Named{&hits});
  loop.run_until_complete(sleep(0));
  auto all = published(*rec.feed());
  REQUIRE(!all.empty());
  std::size_t events = 0;
  for (const auto& snap : all) events += snap->events.size();
  CHECK(events <= 10 * all.size());
  CHECK(all.back()->metrics.dropped_events >= 90);  // 50 scheduled + 50 runs, 10 kept
  CHECK(rec.dropped_events() == all.back()->metrics.dropped_events);
}

LOOP_TEST("inspect: fast events are sampled to the budget; pause/resume and snapshots are not", "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Options options;
  options.event_budget = 100;
  options.history = 100;
  inspect::Recorder& rec = inspect::enable(loop, options);
  int hits = 0;
  std::uint64_t first_seq = 0;
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 2000; ++i) loop.call_soon(Named{&hits});
    loop.run_until_complete(sleep(0));
    rec.feed()->request();  // publish at the end of the next pass
    loop.run_until_complete(sleep(0));
    if (round == 0) first_seq = rec.feed()->latest()->seq;  // the first burst meets stride 1
  }
  CHECK(hits == 8000);
  auto all = rec.feed()->since(first_seq);
  REQUIRE(all.size() >= 3);
  std::uint64_t max_stride = 0;
  std::size_t scheduled = 0, runs = 0;
  for (const auto& snap : all) {
    max_stride = std::max(max_stride, snap->metrics.event_stride);
    for (const inspect::Event& e : snap->events) {
      scheduled += e.kind == inspect::EventKind::callback_scheduled;
      runs += e.kind == inspect::EventKind::callback_run;
    }
  }
  CHECK(max_stride >= 10);     // 2000+ attempts against a budget of 100
  CHECK(scheduled < 6000 / 4);  // far fewer than one per callback...
  CHECK(runs >= 6000 / max_stride / 2);  // ...but a steady sample,
  CHECK(runs <= scheduled);              // each run paired with its scheduling
  CHECK(all.back()->metrics.dropped_events == 0);  // sampling is not dropping
}

LOOP_TEST("inspect: a burst is sampled harder within its window, not only from the next one",
          "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Options options;
  options.interval = 1000;  // one window: only the request below publishes
  options.event_budget = 100;
  inspect::Recorder& rec = inspect::enable(loop, options);
  loop.run_until_complete(sleep(0));  // the first pass publishes at once
  int hits = 0;
  for (int i = 0; i < 20000; ++i) loop.call_soon(Named{&hits});
  loop.run_until_complete(sleep(0));
  rec.feed()->request();
  loop.run_until_complete(sleep(0));
  auto window = rec.feed()->latest();
  CHECK(hits == 20000);
  // At stride 1 it would keep 40,000 events (capacity 65,536). The stride doubles each time two
  // more budgets fill, so a window grows with the logarithm of a burst: here ~7 doublings, each
  // ~200 schedulings and their runs.
  CHECK(window->events.size() <= 30 * options.event_budget);
  CHECK(window->metrics.event_stride >= 64);
  CHECK(window->metrics.dropped_events == 0);
  std::size_t scheduled = 0, runs = 0;
  for (const inspect::Event& e : window->events) {
    scheduled += e.kind == inspect::EventKind::callback_scheduled;
    runs += e.kind == inspect::EventKind::callback_run;
  }
  CHECK(runs >= scheduled);  // every sampled scheduling still has its run
}

static Coro<void> passes(int n) {
  for (int i = 0; i < n; ++i) co_await sleep(0);
}

// One burst of callbacks and passes in its own window, published on request.
static std::shared_ptr<const inspect::Snapshot> burst_window(EventLoop& loop,
                                                             inspect::Recorder& rec, int* hits) {
  for (int i = 0; i < 2000; ++i) loop.call_soon(Named{hits});
  loop.run_until_complete(passes(400));
  rec.feed()->request();
  loop.run_until_complete(sleep(0));
  return rec.feed()->latest();
}

namespace {
// Whether the kernel found an invariant time-stamp counter, which the native backend's ticks()
// reads (its name for CPUID 0x80000007 EDX bit 8).
bool cpu_has_invariant_tsc() {
#if defined(__x86_64__) && !defined(__EMSCRIPTEN__)
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string word;
  while (cpuinfo >> word)
    if (word == "nonstop_tsc") return true;
#endif
  return false;
}
}  // namespace

LOOP_TEST(
    "inspect: callbacks are timed on the tick counter once calibrated, in step with loop time",
    "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Recorder& rec = inspect::enable(loop);
  CHECK_FALSE(rec.ticks_calibrated());  // a rate needs two points 10 ms apart
  // Publications (every 0.1 s) measure the counter's rate against loop time.
  loop.run_until_complete(sleep(0.25));
  if (TestType::virtual_time)
    CHECK_FALSE(rec.ticks_calibrated());  // virtual time has no counter: read as loop time
  else if (cpu_has_invariant_tsc())
    REQUIRE(rec.ticks_calibrated());
  double previous = rec.last_clock();
  for (int i = 0; i < 20; ++i) {
    const double before = loop.time();
    const double t = rec.callback_clock();
    const double after = loop.time();
    CHECK(t >= previous);  // never backwards
    CHECK(t >= before - 1e-3);
    CHECK(t <= after + 1e-3);
    if (!rec.ticks_calibrated()) CHECK((t >= before && t <= after));  // read as loop time
    previous = t;
    loop.run_until_complete(sleep(0.02));
  }
  if (TestType::virtual_time) return;  // virtual time does not pass while a callback runs
  // A callback's length, timed by it: the task's busy time agrees with loop time.
  auto busy = [](EventLoop& l) -> Coro<void> {
    const double until = l.time() + 0.03;
    while (l.time() < until) {
    }
    co_return;
  };
  Task<void> task = loop.create_task(busy(loop));
  loop.run_until_complete(task);
  CHECK(task.task()->busy_time() >= 0.03 - 1e-3);
  CHECK(task.task()->busy_time() < 1.0);
}

LOOP_TEST("inspect: a short window (a publish on request) does not reset the sampling strides",
          "[inspect]") {
  EventLoop& loop = *this->loop;
  inspect::Options options;
  options.interval = 1000;  // only requests publish
  options.event_budget = 100;
  options.pass_budget = 20;
  options.history = 100;
  inspect::Recorder& rec = inspect::enable(loop, options);
  loop.run_until_complete(sleep(0));  // the first pass publishes at once
  int hits = 0;
  auto first = burst_window(loop, rec, &hits);  // meets strides of 1: everything kept
  CHECK(first->passes.size() >= 400);
  rec.feed()->request();  // a window of a pass or two, nearly empty
  loop.run_until_complete(sleep(0));
  auto quiet = rec.feed()->latest();
  CHECK(quiet->seq == first->seq + 1);
  CHECK(quiet->passes.size() <= 2);
  auto next = burst_window(loop, rec, &hits);  // the strides learnt from the first burst hold
  CHECK(next->seq == quiet->seq + 1);
  CHECK(hits == 4000);
  CHECK(next->passes.size() <= 3 * options.pass_budget);
  CHECK(next->passes.size() >= options.pass_budget / 4);
  CHECK(next->events.size() <= 3 * options.event_budget);
  CHECK(next->metrics.event_stride >= 10);
  CHECK(next->metrics.dropped_events == 0);
}

static Coro<void> run_demo_for(EventLoop& loop, double seconds,
                               std::shared_ptr<inspector::DemoStats> stats) {
  Future<void> stop = loop.create_future<void>();
  TimerHandle end = loop.call_later(seconds, [stop]() mutable { stop.set_result(); });
  inspector::DemoOptions options;
  options.tick = 0.02;
  co_await inspector::run_demo(stop, options, stats);
}

LOOP_TEST("inspect: the demo's slow reader shows above high water, with pause and resume events",
          "[inspect][demo]") {
  EventLoop& loop = *this->loop;
  inspect::Options options;
  options.interval = 0.05;
  options.history = 1000;
  inspect::Recorder& rec = inspect::enable(loop, options);
  auto stats = std::make_shared<inspector::DemoStats>();
  loop.run_until_complete(run_demo_for(loop, 1.5, stats));
  CHECK(stats->written > 0);
  CHECK(stats->read_slowly > 0);
  CHECK(stats->echoed > 0);
  CHECK(stats->jobs > 0);

  auto all = published(*rec.feed());
  REQUIRE(all.size() >= 5);
  bool above_high = false, paused_row = false, workers = false, two_servers = false;
  std::size_t pauses = 0, resumes = 0;
  std::uint64_t depth_max = 0;
  for (const auto& snap : all) {
    for (const auto& t : snap->transports) {
      if (t.high && t.buffer > t.high) above_high = true;
      if (t.writing_paused) paused_row = true;
    }
    for (const auto& t : snap->tasks)
      if (t.name == "worker-0") workers = true;
    if (snap->servers.size() == 2) two_servers = true;
    for (const auto& e : snap->events) {
      if (e.kind == inspect::EventKind::pause_writing) {
        ++pauses;
        if (e.value > 64 * 1024) above_high = true;
      }
      if (e.kind == inspect::EventKind::resume_writing) ++resumes;
    }
    depth_max = std::max(depth_max, snap->metrics.ready_depth_max);
    CHECK(snap->metrics.iterations_per_s >= 0);
  }
  CHECK(above_high);
  CHECK(paused_row);
  CHECK(pauses >= 1);
  CHECK(resumes >= 1);
  CHECK(workers);
  CHECK(two_servers);
  CHECK(depth_max >= 200);  // the ticker's bursts
  CHECK(all.back()->metrics.iterations > 0);

  // The same snapshots through the wire encoder into the inspector's model.
  inspector::Model model;
  REQUIRE(model.apply_line(inspect::welcome_message("test")));
  inspect::Encoder encoder;
  for (const auto& snap : all) REQUIRE(model.feed(encoder.update(*snap)));
  CHECK(model.frame_count() == all.size());
  CHECK(model.error().empty());
  auto summary = json::parse(model.summary_json());
  REQUIRE(summary);
  bool model_above = false;
  std::uint64_t model_pauses = 0;
  for (const auto& t : summary->list("transports")) {
    if (t.flag("above_high")) model_above = true;
    model_pauses += t.u64("pause_writing");
  }
  CHECK(model_above);
  CHECK(model_pauses == pauses);
  CHECK(summary->u64("ready_depth_max") == depth_max);

  // Perfetto / Chrome trace: valid JSON with slices, flows, counters and instants.
  auto trace = json::parse(model.chrome_trace());
  REQUIRE(trace);
  std::set<std::string> phases;
  for (const auto& e : trace->list("traceEvents")) phases.insert(e.str("ph"));
  CHECK(phases.count("X"));
  CHECK(phases.count("s"));
  CHECK(phases.count("f"));
  CHECK(phases.count("C"));
  CHECK(phases.count("i"));
}

// ---- The wire protocol --------------------------------------------------------------------------

TEST_CASE("inspect wire: the JSON decoder accepts JSON and nothing else", "[inspect][wire]") {
  auto v = json::parse(R"( {"a":[1,-2.5e3,true,false,null],"s":"x\u00e9\ud83d\ude00\n"} )");
  REQUIRE(v);
  CHECK(v->list("a").size() == 5);
  CHECK(v->list("a")[1].number == -2500);
  CHECK(v->str("s") == "x\xc3\xa9\xf0\x9f\x98\x80\n");
  // Numbers: the exact-integer fast path and the general one agree with the JSON grammar.
  auto n = json::parse(
      R"([0,-0,7,-15,123456789012345,1234567890123456789,0.5,-1.25e-3,1E2,9007199254740993.0])");
  REQUIRE(n);
  REQUIRE(n->array.size() == 10);
  const double expected[] = {0, 0, 7, -15, 123456789012345.0, 1234567890123456789.0, 0.5, -0.00125,
                             100, 9007199254740992.0};
  for (std::size_t i = 0; i < 10; ++i) CHECK(n->array[i].number == expected[i]);
  auto nested = json::parse(R"({"a":{"b":[{"c":1},{"d":[2,{"e":3}]}],"f":4},"g":5})");
  REQUIRE(nested);
  CHECK(nested->get("a")->list("b")[1].list("d")[1].u64("e") == 3);
  CHECK(nested->get("a")->u64("f") == 4);
  CHECK(nested->u64("g") == 5);
  CHECK(nested->keys == std::vector<std::string>{"a", "g"});
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\\ud800\"", "tru",
                          "{} x", "\"a\nb\"", "[1 2]", "-", "{\"a\":}", "nul"}) {
    std::string why;
    CHECK_FALSE(json::parse(bad, &why));
    CHECK(!why.empty());
  }
  std::string deep(100, '[');
  CHECK_FALSE(json::parse(deep + std::string(100, ']')));
  CHECK_FALSE(json::parse("[1]", nullptr, json::Limits{2, 8}));
}

TEST_CASE("inspect wire: hello, welcome and refusals", "[inspect][wire]") {
  auto h = inspect::parse_client_hello(inspect::client_hello("s3cret"));
  REQUIRE(h);
  CHECK(h->token == "s3cret");
  CHECK(h->protocol == inspect::kProtocolVersion);
  CHECK_FALSE(inspect::parse_client_hello("{\"type\":\"hello\"}"));
  CHECK_FALSE(inspect::parse_client_hello("{\"type\":\"run\",\"token\":\"s3cret\"}"));
  CHECK_FALSE(
      inspect::parse_client_hello(std::string(5000, ' ') + inspect::client_hello("s3cret")));

  inspector::Model model;
  CHECK_FALSE(model.apply_line("{\"type\":\"update\",\"metrics\":{}}"));  // before welcome
  CHECK(model.error().find("before welcome") != std::string::npos);

  inspector::Model refused;
  CHECK_FALSE(refused.feed(inspect::error_message("invalid token")));
  CHECK(refused.error().find("invalid token") != std::string::npos);

  inspector::Model broken;
  REQUIRE(broken.feed(inspect::welcome_message("x")));
  CHECK_FALSE(broken.feed(
      "{\"type\":\"update\",\"metrics\":{},\"tasks\":{},\"transports\":{},\"events\":[[1,2]]}\n"));
  CHECK(broken.error().find("bad event") != std::string::npos);
  CHECK_FALSE(broken.feed("{}\n"));  // stays failed
}

TEST_CASE("inspect wire: deltas send changed rows once and removals by id; recordings replay",
          "[inspect][wire]") {
  inspect::Snapshot a;
  a.seq = 1;
  a.time = 10;
  inspect::TaskInfo t1;
  t1.id = 1;
  t1.name = "one";
  t1.state = "pending";
  inspect::TaskInfo t2 = t1;
  t2.id = 2;
  t2.name = "two";
  a.tasks = {t1, t2};
  inspect::TransportInfo tr;
  tr.id = 7;
  tr.kind = "tcp";
  tr.high = 65536;
  tr.low = 16384;
  tr.buffer = 100000;
  tr.writing_paused = true;
  a.transports = {tr};
  inspect::Event pause{10, 7, 100000, nullptr, "f.cpp", 3, inspect::EventKind::pause_writing};
  a.events = {pause};

  inspect::Encoder enc;
  const std::string first = enc.update(a);
  inspect::Snapshot b = a;
  b.seq = 2;
  b.time = 10.1;
  b.tasks = {t1};  // two is gone
  b.tasks[0].state = "done";
  b.events.clear();
  const std::string second = enc.update(b);
  auto second_json = json::parse(second);
  REQUIRE(second_json);
  REQUIRE(second_json->get("tasks")->list("upsert").size() == 1);
  const json::Value& changed = second_json->get("tasks")->list("upsert")[0];
  CHECK(changed.keys == std::vector<std::string>{"id", "state"});  // a known row: what changed
  CHECK(changed.str("state") == "done");
  CHECK(second_json->get("tasks")->list("removed").size() == 1);
  CHECK(second_json->get("transports")->list("upsert").empty());  // unchanged: not resent

  const std::string path =
      "/tmp/eddy-inspect-test-" + std::to_string(reinterpret_cast<std::uintptr_t>(&a)) + ".jsonl";
  inspector::Model live;
  REQUIRE(live.feed(inspect::welcome_message("test")));
  REQUIRE(live.feed(first));
  REQUIRE(live.start_recording(path));
  REQUIRE(live.feed(second));
  live.stop_recording();
  REQUIRE(live.frame_count() == 2);
  CHECK(live.latest()->tasks.size() == 1);
  CHECK(live.latest()->tasks.at(1)->state == "done");
  CHECK(live.latest()->tasks.at(1)->name == "one");  // merged: the fields not resent are kept
  CHECK(live.frame(0).tasks.at(1)->state == "pending");
  CHECK(live.latest()->transports.size() == 1);  // kept from the first update
  CHECK(live.transport_history().at(7).pauses_writing == 1);
  CHECK(live.frame(0).tasks.size() == 2);  // history: the first frame is unchanged

  inspector::Model replay;
  REQUIRE(replay.open(path));
  REQUIRE(replay.latest());
  CHECK(replay.latest()->tasks.size() == 1);
  CHECK(replay.latest()->tasks.at(1)->state == "done");
  CHECK(replay.latest()->transports.at(7)->buffer == 100000);
  std::remove(path.c_str());
  inspector::Model missing;
  CHECK_FALSE(missing.open(path));
}

TEST_CASE("inspect wire: after every delta a client's rows equal the loop's", "[inspect][wire]") {
  // Random churn: rows appear, disappear and change any field (the await chain included); the
  // model, fed only the deltas, must hold exactly the snapshot's rows each time.
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::map<std::uint64_t, inspect::TaskInfo> tasks;
  std::map<std::uint64_t, inspect::TransportInfo> transports;
  inspect::Encoder enc;
  inspector::Model model;
  REQUIRE(model.feed(inspect::welcome_message("test")));
  auto on_the_wire = [](double x) {
    std::string text;
    json::append_number(text, x);
    return std::stod(text);
  };
  std::uint64_t next_id = 1;
  for (std::uint64_t seq = 1; seq <= 60; ++seq) {
    for (int i = pick(4); i > 0; --i) {
      inspect::TaskInfo t;
      t.id = next_id++;
      t.name = "task-" + std::to_string(t.id);
      t.state = "pending";
      t.created = seq * 0.1;
      t.file = "a.cpp";
      t.line = 10;
      t.await_chain = {{"worker", "<Future pending>", "a.cpp", 12}};
      tasks[t.id] = t;
      inspect::TransportInfo tr;
      tr.id = next_id++;
      tr.kind = "tcp";
      tr.peer = "127.0.0.1:" + std::to_string(tr.id);
      tr.state = "open";
      tr.high = 65536;
      tr.low = 16384;
      transports[tr.id] = tr;
    }
    for (auto& [id, t] : tasks) {
      switch (pick(6)) {
        case 0:
          t.runs += 1 + pick(5);
          t.busy += 0.001 * pick(9);
          break;
        case 1:
          t.state = pick(2) ? "running" : "pending";
          break;
        case 2:
          t.await_chain.push_back({"inner", "<Task pending>", "b.cpp", 3});
          break;
        case 3:
          if (!t.await_chain.empty()) t.await_chain.pop_back();
          break;
        case 4:
          t.name += "'";
          break;
        default:
          break;
      }
    }
    for (auto& [id, tr] : transports) {
      switch (pick(5)) {
        case 0:
          tr.bytes_in += 1000;
          tr.bytes_out += 1000;
          break;
        case 1:
          tr.buffer = 70000;
          tr.writing_paused = true;
          break;
        case 2:
          tr.buffer = 0;
          tr.writing_paused = false;
          tr.reading_paused = pick(2);
          break;
        case 3:
          tr.state = "closing";
          break;
        default:
          break;
      }
    }
    if (!tasks.empty() && pick(3) == 0)
      tasks.erase(std::next(tasks.begin(), pick(int(tasks.size()))));
    if (!transports.empty() && pick(3) == 0)
      transports.erase(std::next(transports.begin(), pick(int(transports.size()))));

    inspect::Snapshot s;
    s.seq = seq;
    s.time = seq * 0.1;
    for (const auto& [id, t] : tasks) s.tasks.push_back(t);
    for (const auto& [id, tr] : transports) s.transports.push_back(tr);
    REQUIRE(model.feed(enc.update(s)));
    const inspector::Frame& f = *model.latest();
    REQUIRE(f.tasks.size() == tasks.size());
    for (const auto& [id, t] : tasks) {
      inspect::TaskInfo sent = t;  // times travel with 9 significant digits
      sent.created = on_the_wire(t.created);
      sent.busy = on_the_wire(t.busy);
      CHECK(*f.tasks.at(id) == sent);
    }
    REQUIRE(f.transports.size() == transports.size());
    for (const auto& [id, tr] : transports) CHECK(*f.transports.at(id) == tr);
  }
}

TEST_CASE("inspect wire: a version 1 recording (whole rows) still opens", "[inspect][wire]") {
  inspector::Model old;
  REQUIRE(old.feed(
      "{\"type\":\"welcome\",\"protocol\":1,\"server\":\"eddy 0.1.0\",\"handle_kinds\":[]}\n"));
  const std::string row = "{\"id\":3,\"name\":\"w\",\"state\":\"pending\",\"runs\":1,\"await\":[]}";
  REQUIRE(old.feed("{\"type\":\"update\",\"seq\":1,\"metrics\":{},\"tasks\":{\"upsert\":[" + row +
                   "],\"removed\":[]},\"transports\":{\"upsert\":[],\"removed\":[]}}\n"));
  CHECK(old.latest()->tasks.at(3)->runs == 1);
  inspector::Model future;
  CHECK_FALSE(future.feed("{\"type\":\"welcome\",\"protocol\":3}\n"));
  CHECK(future.error().find("unsupported protocol version 3") != std::string::npos);
}
