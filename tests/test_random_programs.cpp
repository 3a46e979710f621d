// The C++ twins of the random programs in tests/conformance/: each program and the trace Python's
// asyncio printed for it are replayed here and must trace the same, line for line.
// - random_programs.py: tasks sharing a Lock, a Semaphore, a Condition, an Event, a Barrier, a
//   Queue and two Futures, on every loop kind;
// - random_timed_programs.py: the same with sleeps and timeouts, on the virtual-clock loop;
// - random_group_programs.py: the first kind with TaskGroups, failing operations and uncancel, on
//   every loop kind; random_timed_group_programs.py: the same with timers, on the virtual clock;
// - random_asyncgen_programs.py: the first kind with an async generator the tasks step, on every
//   loop kind;
// - random_stream_programs.py: a StreamReader fed and read by tasks, on every loop kind.
// Differential testing of the orderings the hand-written conformance scenarios cannot all
// foresee: who wakes when, what a cancellation interrupts, what is left behind.
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <string_view>

#include "conformance_traces.hpp"
#include "support.hpp"

using namespace eddy;

namespace {

struct Op {
  std::string text;  // as Python prints it: the kind and its arguments
  std::string kind;
  int a = 0, b = 0, c = 0;
  std::vector<Op> inner;  // timeout's or eager's operation; a group's children, then its body
};

struct Program {
  // "program <seed> sem .. queue .. qmax .. cond .. parties .. passes .. sleep .."
  std::string header;
  int sem = 1, qmax = 0, passes = 0;
  int sleep = 0;  // main's sleep, in sixteenths of a second, before it cancels the rest
  std::string queue;              // fifo, lifo or priority
  bool cond_shares_lock = false;  // the Condition is made on the Lock
  int parties = 2;                // the Barrier's
  std::vector<std::vector<Op>> tasks;
  std::vector<Op> gen;   // the shared async generator's operations ("G: ..."), if it has one
  std::string expected;  // the trace, one line each
};

int to_int(std::string_view s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::vector<std::string_view> split(std::string_view s, std::string_view sep) {
  std::vector<std::string_view> parts;
  for (std::size_t at; (at = s.find(sep)) != std::string_view::npos;
       s.remove_prefix(at + sep.size()))
    parts.push_back(s.substr(0, at));
  parts.push_back(s);
  return parts;
}

Op parse_op(std::string_view text) {
  Op op;
  op.text = std::string(text);
  auto words = split(text, " ");
  op.kind = std::string(words[0]);
  if (words.size() > 1) op.a = to_int(words[1]);
  // "timeout <sixteenths> <operation>", "eager <passes> <operation>"
  if (op.kind == "timeout" || op.kind == "eager") {
    op.inner.push_back(parse_op(text.substr(words[0].size() + words[1].size() + 2)));
    return op;
  }
  if (op.kind == "group") {  // "group <child> / <child> / <body>"
    for (auto member : split(text.substr(op.kind.size() + 1), " / "))
      op.inner.push_back(parse_op(member));
    return op;
  }
  if (words.size() > 2) op.b = to_int(words[2]);
  if (words.size() > 3) op.c = to_int(words[3]);
  return op;
}

std::vector<Program> parse_programs(std::string_view text) {
  std::vector<Program> programs;
  bool in_trace = false;
  for (std::string_view line : split(text, "\n")) {
    if (line.empty()) continue;
    if (line.starts_with("program ")) {
      Program p;
      p.header = std::string(line);
      // program N sem S queue K qmax Q cond own|shared parties B passes P sleep T
      auto w = split(line, " ");
      REQUIRE(w.size() == 16);
      p.sem = to_int(w[3]);
      p.queue = std::string(w[5]);
      p.qmax = to_int(w[7]);
      p.cond_shares_lock = w[9] == "shared";
      p.parties = to_int(w[11]);
      p.passes = to_int(w[13]);
      p.sleep = to_int(w[15]);
      programs.push_back(std::move(p));
      in_trace = false;
    } else if (line == "trace") {
      in_trace = true;
    } else if (line == "end") {
      in_trace = false;
    } else if (in_trace) {
      programs.back().expected += std::string(line) + "\n";
    } else if (line.starts_with("G: ")) {
      for (auto op : split(line.substr(3), "; ")) programs.back().gen.push_back(parse_op(op));
    } else {  // "T<i>: op; op; ..."
      std::vector<Op> ops;
      for (auto op : split(line.substr(line.find(": ") + 2), "; ")) ops.push_back(parse_op(op));
      programs.back().tasks.push_back(std::move(ops));
    }
  }
  return programs;
}

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "Eddy: <line> / Python: <line>" for the first line where two traces differ.
std::string first_difference(std::string_view eddy, std::string_view python) {
  auto a = split(eddy, "\n"), b = split(python, "\n");
  for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    std::string_view x = i < a.size() ? a[i] : "(end)", y = i < b.size() ? b[i] : "(end)";
    if (x != y) return "Eddy: " + std::string(x) + " / Python: " + std::string(y);
  }
  return "none";
}

std::string py_bool(bool b) {
  return b ? "True" : "False";
}

// The queue kinds behind one interface: which one a program uses is read from its header.
class AnyQueue {
 public:
  AnyQueue(const std::string& kind, long maxsize)
      : fifo_(kind == "fifo" ? maxsize : 0),
        lifo_(kind == "lifo" ? maxsize : 0),
        priority_(kind == "priority" ? maxsize : 0),
        kind_(kind) {}
  Coro<void> put(int v) {
    if (kind_ == "fifo") co_await fifo_.put(v);
    if (kind_ == "lifo") co_await lifo_.put(v);
    if (kind_ == "priority") co_await priority_.put(v);
  }
  Coro<int> get() {
    if (kind_ == "lifo") co_return co_await lifo_.get();
    if (kind_ == "priority") co_return co_await priority_.get();
    co_return co_await fifo_.get();
  }
  void put_nowait(int v) {
    if (kind_ == "fifo") fifo_.put_nowait(v);
    if (kind_ == "lifo") lifo_.put_nowait(v);
    if (kind_ == "priority") priority_.put_nowait(v);
  }
  int get_nowait() {
    if (kind_ == "lifo") return lifo_.get_nowait();
    if (kind_ == "priority") return priority_.get_nowait();
    return fifo_.get_nowait();
  }
  void shutdown(bool immediate) {
    if (kind_ == "fifo") fifo_.shutdown(immediate);
    if (kind_ == "lifo") lifo_.shutdown(immediate);
    if (kind_ == "priority") priority_.shutdown(immediate);
  }
  detail::QueueCore& core() {
    if (kind_ == "lifo") return lifo_;
    if (kind_ == "priority") return priority_;
    return fifo_;
  }

 private:
  Queue<int> fifo_;
  LifoQueue<int> lifo_;
  PriorityQueue<int> priority_;
  std::string kind_;
};

struct World {
  explicit World(const Program& p)
      : sem(p.sem),
        cond(p.cond_shares_lock ? shared_cond : own_cond),
        barrier(p.parties),
        queue(p.queue, p.qmax) {
    EventLoop& loop = get_running_loop();
    futs.push_back(loop.create_future<int>());
    futs.push_back(loop.create_future<int>());
  }
  // `me`: a task's number, or "<task>.<k>" for the k-th child of a group the task runs.
  void say(const std::string& me, const Op& op, const std::string& what = {}) {
    trace.push_back("T" + me + " " + op.text + (what.empty() ? "" : " -> " + what));
  }

  Lock lock;
  Semaphore sem;
  Condition own_cond;
  Condition shared_cond{lock};
  Condition& cond;
  Event event;
  Barrier barrier;
  AnyQueue queue;
  std::vector<Future<int>> futs;
  std::vector<Task<int>> tasks;
  std::optional<AsyncGenerator<int, int>> gen;
  Trace trace;
};

// Without marking an exception retrieved (failed() does not, as exception() would).
template <class F>
std::string describe(const F& f) {
  if (!f.done()) return "pending";
  if (f.cancelled()) return "cancelled";
  if (f.base()->failed()) return "exception ValueError";  // the only one set: fut_fail's
  return "result " + std::to_string(f.result());
}

std::string describe(Outcome<int> x) {
  if (x.ok()) return std::to_string(x.value());
  try {
    std::rethrow_exception(x.exception());
  } catch (const CancelledError&) {
    return "cancelled";
  } catch (const std::exception& e) {
    return std::string("unexpected ") + e.what();
  }
}

// (An ordinary function: a braced list cannot live in a coroutine frame with gcc 12.)
std::vector<Task<int>> two_tasks(World& w, const Op& op) {
  return {w.tasks[op.a], w.tasks[op.b]};
}

Coro<void> yields(int n) {
  for (int i = 0; i < n; ++i) co_await sleep(0);
}

// `async with lock: body`: the release runs however the body ended, and an error it raises
// replaces the body's (as an exception raised in __aexit__ does).
template <class Held>
Coro<void> yields_holding(Held& held, int n) {
  std::exception_ptr failed;
  try {
    co_await yields(n);
  } catch (...) {
    failed = std::current_exception();
  }
  held.release();
  if (failed) std::rethrow_exception(failed);
}

// `async with cond: await cond.wait()`, or with `for_items`, cond.wait_for(queue not empty).
Coro<void> cond_wait(World& w, bool for_items = false) {
  co_await w.cond.acquire();
  std::exception_ptr failed;
  try {
    if (for_items)
      co_await w.cond.wait_for([&w] { return w.queue.core().qsize() > 0; });
    else
      co_await w.cond.wait();
  } catch (...) {
    failed = std::current_exception();
  }
  w.cond.release();
  if (failed) std::rethrow_exception(failed);
}

Coro<void> run_group(World& w, std::string me, const Op& op);
Coro<void> run_traced(World& w, std::string me, const Op& op, bool group_member);

std::string python_name(std::exception_ptr e);

// The async generator the tasks share: yields 0, 1, ... and between two yields traces what it was
// sent and runs its next operation (as task "g"); traces how it ends.
AsyncGenerator<int, int> agen_body(World& w, const std::vector<Op>& ops) {
  int i = 0;
  try {
    for (;;) {
      std::optional<int> got = co_yield i;
      w.trace.push_back("G got " + (got ? std::to_string(*got) : std::string("None")));
      co_await run_traced(w, "g", ops[i % ops.size()], false);
      ++i;
    }
  } catch (const GeneratorExit&) {
    w.trace.push_back("G exit");
    throw;
  } catch (const CancelledError&) {
    w.trace.push_back("G raises CancelledError");
    throw;
  } catch (...) {
    w.trace.push_back("G raises " + python_name(std::current_exception()));
    throw;
  }
}

// Python's name for an exception an operation raised.
std::string python_name(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const QueueEmpty&) {
    return "QueueEmpty";
  } catch (const QueueFull&) {
    return "QueueFull";
  } catch (const QueueShutDown&) {
    return "QueueShutDown";
  } catch (const InvalidStateError&) {
    return "InvalidStateError";
  } catch (const TypeError&) {
    return "TypeError";
  } catch (const ValueError&) {
    return "ValueError";
  } catch (const BrokenBarrierError&) {
    return "BrokenBarrierError";
  } catch (const RuntimeError&) {
    return "RuntimeError";
  } catch (const TimeoutError&) {
    return "TimeoutError";
  } catch (const std::exception& x) {
    return std::string("unexpected ") + x.what();
  }
}

// Whether `op` awaits other tasks: then a cancellation it raises is traced without its message,
// as asyncio gives a cancelled task's message to its first awaiter only, Eddy to every awaiter
// (docs/api.md).
bool awaits_tasks(const Op& op) {
  if (op.kind == "eager") return true;
  if (op.kind == "timeout" || op.kind == "group")
    return std::any_of(op.inner.begin(), op.inner.end(), awaits_tasks);
  return op.kind == "await_task" || op.kind == "gather_tasks" || op.kind == "shield_task" ||
         op.kind == "wait_tasks" || op.kind == "wait_tasks_all" || op.kind == "wait_tasks_exc" ||
         op.kind == "as_completed_tasks";
}

std::string cancelled_text(const Op& op, const CancelledError& e) {
  return awaits_tasks(op) ? "cancelled" : "cancelled '" + e.message() + "'";
}

Coro<void> run_op(World& w, std::string me, const Op& op) {
  const std::string& k = op.kind;
  if (k == "yield") {
    co_await sleep(0);
    w.say(me, op);
  } else if (k == "sleep") {
    co_await sleep(op.a / 16.0);
    w.say(me, op);
  } else if (k == "timeout") {
    auto scope = timeout(op.a / 16.0);
    co_await scope.run(run_op(w, me, op.inner[0]));
    w.say(me, op, "in time");
  } else if (k == "group") {
    co_await run_group(w, me, op);
  } else if (k == "fail") {
    w.say(me, op);
    throw ValueError("fail");
  } else if (k == "eager") {  // a task started eagerly, awaited after op.a passes
    TaskOptions options;
    options.eager_start = true;
    Task<void> task =
        get_running_loop().create_task(run_traced(w, me + ".e", op.inner[0], false), options);
    w.say(me, op, std::string("started ") + (task.done() ? "done" : "pending"));
    try {
      co_await yields(op.a);
    } catch (const CancelledError&) {
      task.cancel();  // as the script does: not left pending for ever
      throw;
    }
    co_await task;
    w.say(me, op, "joined");
  } else if (k == "wait_tasks_all" || k == "wait_tasks_exc") {
    WaitOptions options;
    options.return_when = k == "wait_tasks_all" ? ALL_COMPLETED : FIRST_EXCEPTION;
    auto r = co_await wait(two_tasks(w, op), options);
    w.say(me, op, std::to_string(r.done.size()));
  } else if (k == "as_completed_tasks") {  // the results in the order the tasks end
    std::optional<double> within;
    if (op.c) within = op.c / 16.0;
    auto completed = as_completed(two_tasks(w, op), within);
    std::string results;
    while (!completed.done()) {
      Task<int> next = co_await completed.next();
      int v = co_await next;
      results += (results.empty() ? "" : " ") + std::to_string(v);
    }
    w.say(me, op, results);
  } else if (k == "cond_wait_for") {
    co_await cond_wait(w, true);
    w.say(me, op, std::to_string(w.queue.core().qsize()));
  } else if (k == "q_shutdown") {
    w.queue.shutdown(op.a != 0);
    w.say(me, op, std::to_string(w.queue.core().qsize()));
  } else if (k == "sem_release") {
    w.sem.release();
    w.say(me, op, std::to_string(w.sem.value()));
  } else if (k == "uncancel") {
    w.say(me, op, std::to_string(current_task()->uncancel()));
  } else if (k == "cancel_current") {
    TaskBase* task = current_task();
    w.say(me, op, py_bool(task->cancel("self T" + me)));
    if (op.a) w.say(me, op, "uncancel " + std::to_string(task->uncancel()));
  } else if (k == "lock" || k == "sem") {
    if (k == "lock") {
      co_await w.lock.acquire();
      w.say(me, op, "in");
      co_await yields_holding(w.lock, op.a);
    } else {
      co_await w.sem.acquire();
      w.say(me, op, "in");
      co_await yields_holding(w.sem, op.a);
    }
    w.say(me, op, "out");
  } else if (k == "unlock") {
    w.lock.release();
    w.say(me, op);
  } else if (k == "cond_wait") {
    co_await cond_wait(w);
    w.say(me, op, "woke");
  } else if (k == "notify" || k == "notify_all") {
    co_await w.cond.acquire();
    if (k == "notify")
      w.cond.notify(op.a);
    else
      w.cond.notify_all();
    w.cond.release();
    w.say(me, op);
  } else if (k == "ev_wait") {
    co_await w.event.wait();
    w.say(me, op, "set");
  } else if (k == "ev_set") {
    w.event.set();
    w.say(me, op);
  } else if (k == "ev_clear") {
    w.event.clear();
    w.say(me, op);
  } else if (k == "put") {
    co_await w.queue.put(op.a);
    w.say(me, op, std::to_string(w.queue.core().qsize()));
  } else if (k == "get") {
    int v = co_await w.queue.get();
    w.say(me, op, std::to_string(v));
  } else if (k == "put_nowait") {
    w.queue.put_nowait(op.a);
    w.say(me, op, std::to_string(w.queue.core().qsize()));
  } else if (k == "get_nowait") {
    w.say(me, op, std::to_string(w.queue.get_nowait()));
  } else if (k == "task_done") {
    w.queue.core().task_done();
    w.say(me, op);
  } else if (k == "join") {
    co_await w.queue.core().join();
    w.say(me, op, "joined");
  } else if (k == "fut_await") {
    int v = co_await w.futs[op.a];
    w.say(me, op, std::to_string(v));
  } else if (k == "fut_set") {
    w.futs[op.a].set_result(op.b);
    w.say(me, op);
  } else if (k == "fut_fail") {
    w.futs[op.a].set_exception(ValueError("failed"));
    w.say(me, op);
  } else if (k == "fut_cancel") {
    w.say(me, op, py_bool(w.futs[op.a].cancel("f by T" + me)));
  } else if (k == "shield") {
    int v = co_await shield(w.futs[op.a]);
    w.say(me, op, std::to_string(v));
  } else if (k == "gather") {
    auto both = co_await gather(w.futs[0], w.futs[1]);
    w.say(me, op, std::to_string(std::get<0>(both)) + " " + std::to_string(std::get<1>(both)));
  } else if (k == "wait_timeout") {
    auto r = co_await wait(w.futs, {.timeout = op.a / 16.0});
    w.say(me, op, std::to_string(r.done.size()));
  } else if (k == "wait_first") {
    auto r = co_await wait(w.futs, {.return_when = FIRST_COMPLETED});
    w.say(me, op, std::to_string(r.done.size()));
  } else if (k == "cancel") {
    w.say(me, op, py_bool(w.tasks[op.a].cancel("by T" + me)));
  } else if (k == "await_task") {
    int v = co_await w.tasks[op.a];
    w.say(me, op, std::to_string(v));
  } else if (k == "barrier") {
    int index = co_await w.barrier.wait();
    w.say(me, op, std::to_string(index));
  } else if (k == "barrier_reset") {
    co_await w.barrier.reset();
    w.say(me, op);
  } else if (k == "barrier_abort") {
    co_await w.barrier.abort();
    w.say(me, op);
  } else if (k == "callback") {
    const int i = op.a;
    w.futs[i].add_done_callback([&w, me, i](Future<int> f) {
      w.trace.push_back("T" + me + " callback f" + std::to_string(i) + " -> " + describe(f));
    });
    w.say(me, op);
  } else if (k == "soon") {
    get_running_loop().call_soon([&w, me] { w.trace.push_back("T" + me + " soon ran"); });
    w.say(me, op);
  } else if (k == "gather_tasks") {
    auto both = co_await gather(return_exceptions, w.tasks[op.a], w.tasks[op.b]);
    w.say(me, op, describe(std::get<0>(both)) + " " + describe(std::get<1>(both)));
  } else if (k == "shield_task") {
    int v = co_await shield(w.tasks[op.a]);
    w.say(me, op, std::to_string(v));
  } else if (k == "wait_tasks") {
    auto r = co_await wait(two_tasks(w, op), {.return_when = FIRST_COMPLETED});
    w.say(me, op, std::to_string(r.done.size()));
  } else if (k == "cancelling") {
    w.say(me, op, std::to_string(current_task()->cancelling()));
  } else if (k == "notify_unlocked") {
    w.cond.notify();
    w.say(me, op);
  } else if (k == "agen_next" || k == "agen_send" || k == "agen_throw") {
    std::optional<int> value;  // nullopt: StopAsyncIteration
    if (k == "agen_next")
      value = co_await w.gen->next();
    else if (k == "agen_send")
      value = co_await w.gen->asend(op.a);
    else
      value = co_await w.gen->athrow(std::make_exception_ptr(ValueError("thrown in")));
    w.say(me, op, value ? std::to_string(*value) : std::string("stop"));
  } else if (k == "agen_close") {
    co_await w.gen->aclose();
    w.say(me, op, "closed");
  } else if (k == "state") {
    w.say(me, op,
          "lock=" + py_bool(w.lock.locked()) + " sem=" + py_bool(w.sem.locked()) +
              " cond=" + py_bool(w.cond.locked()) + " event=" + py_bool(w.event.is_set()) +
              " queue=" + std::to_string(w.queue.core().qsize()) + " full=" +
              py_bool(w.queue.core().full()) + " barrier=" + std::to_string(w.barrier.n_waiting()) +
              (w.barrier.broken() ? " broken" : ""));
  } else {
    FAIL("unknown operation " << op.text);
  }
}

// One operation, its errors traced as Python names them; a CancelledError ends the task. In a
// group's member (a child, or the body) every error is raised on, for the group to collect.
// (Its own coroutine: Emscripten 3.1.6 loses an exception raised at a co_await in a try block
// inside a loop, docs/targets.md.)
Coro<void> run_traced(World& w, std::string me, const Op& op, bool group_member) {
  try {
    co_await run_op(w, me, op);
  } catch (const CancelledError& e) {
    w.say(me, op, cancelled_text(op, e));
    throw;
  } catch (const std::exception&) {
    const std::string name = python_name(std::current_exception());
    if (!group_member) {
      w.say(me, op, name);
      co_return;
    }
    w.say(me, op, "raises " + name);
    throw;
  }
}

Coro<int> actor(World& w, int me, const std::vector<Op>& ops) {
  for (const Op& op : ops) co_await run_traced(w, std::to_string(me), op, false);
  co_return me;
}

// `async with TaskGroup() as tg`: the children (tasks "<me>.<k>"), then the body in this task.
Coro<void> run_group(World& w, std::string me, const Op& op) {
  try {
    auto body = [&w, me, &op](TaskGroup& tg) -> Coro<void> {
      for (std::size_t k = 0; k + 1 < op.inner.size(); ++k)
        tg.create_task(run_traced(w, me + "." + std::to_string(k), op.inner[k], true));
      co_await run_traced(w, me, op.inner.back(), true);
    };
    co_await TaskGroup::run(body);
    w.say(me, op, "ok");
  } catch (const ExceptionGroup& group) {
    std::string names = "errors";
    for (const std::exception_ptr& e : group.exceptions()) names += " " + python_name(e);
    w.say(me, op, names);
  }
}

Coro<std::string> run_program(const Program& p) {
  World w(p);
  if (!p.gen.empty()) w.gen.emplace(agen_body(w, p.gen));
  EventLoop& loop = get_running_loop();
  for (std::size_t me = 0; me < p.tasks.size(); ++me)
    w.tasks.push_back(loop.create_task(actor(w, static_cast<int>(me), p.tasks[me])));
  co_await yields(p.passes);
  if (p.sleep) co_await sleep(p.sleep / 16.0);
  for (std::size_t me = 0; me < w.tasks.size(); ++me)
    if (!w.tasks[me].done())
      w.trace.push_back("main cancels T" + std::to_string(me) + " -> " +
                        py_bool(w.tasks[me].cancel("by main")));
  for (int i = 0; i < 20; ++i) {
    bool all_done = true;
    for (auto& t : w.tasks) all_done = all_done && t.done();
    if (all_done) break;
    co_await sleep(0);
  }
  co_await yields(3);  // what the last steps scheduled (done callbacks, call_soon) runs now
  if (w.gen) {         // closed here, as the script does (not by its garbage collector)
    std::string closed = "ok";
    try {
      co_await w.gen->aclose();
    } catch (const GeneratorExit&) {
      closed = "GeneratorExit";
    } catch (const CancelledError&) {
      closed = "CancelledError";
    } catch (...) {
      closed = python_name(std::current_exception());
    }
    w.trace.push_back("main closes G -> " + closed);
  }
  for (std::size_t me = 0; me < w.tasks.size(); ++me)
    w.trace.push_back("T" + std::to_string(me) + " end " + describe(w.tasks[me]));
  w.trace.push_back("lock=" + py_bool(w.lock.locked()) + " sem=" + py_bool(w.sem.locked()) +
                    " event=" + py_bool(w.event.is_set()) +
                    " queue=" + std::to_string(w.queue.core().qsize()) +
                    " f0=" + describe(w.futs[0]) + " f1=" + describe(w.futs[1]));
  co_return lines(w.trace);
}

// A program's trace, then what reached the exception handler once its objects were gone
// (Python: after a collection), as Python lists it; taken out so the fixture does not count it
// as unexpected.
template <class Fixture>
std::string run_with_reports(Fixture& f, const Program& p) {
  std::string trace = f.loop->run_until_complete(run_program(p));
  trace += "reports " + std::to_string(f.reported.size()) + "\n";
  for (const auto& c : f.reported) trace += "report " + c.message + "\n";
  f.reported.clear();
  return trace;
}

// ---- StreamReader programs (random_stream_programs.py) ----------------------------------------

struct StreamProgram {
  std::string header;  // "program <seed> limit L passes P"
  int limit = 0, passes = 0;
  std::vector<Op> feeder;
  std::vector<std::vector<Op>> consumers;
  std::string expected;
};

std::vector<StreamProgram> parse_stream_programs(std::string_view text) {
  std::vector<StreamProgram> programs;
  bool in_trace = false;
  for (std::string_view line : split(text, "\n")) {
    if (line.empty()) continue;
    if (line.starts_with("program ")) {
      auto w = split(line, " ");
      REQUIRE(w.size() == 6);
      StreamProgram p;
      p.header = std::string(line);
      p.limit = to_int(w[3]);
      p.passes = to_int(w[5]);
      programs.push_back(std::move(p));
      in_trace = false;
    } else if (line == "trace") {
      in_trace = true;
    } else if (line == "end") {
      in_trace = false;
    } else if (in_trace) {
      programs.back().expected += std::string(line) + "\n";
    } else {  // "F: op; op" or "C<i>: op; op"
      std::vector<Op> ops;
      for (auto op : split(line.substr(line.find(": ") + 2), "; ")) ops.push_back(parse_op(op));
      if (line.starts_with("F: "))
        programs.back().feeder = std::move(ops);
      else
        programs.back().consumers.push_back(std::move(ops));
    }
  }
  return programs;
}

// The script's escapes: "\n" for a newline; "empty" for nothing.
std::string unescape(std::string_view s) {
  if (s == "empty") return {};
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string show(std::string_view data) {
  std::string out = "\"";
  for (char c : data) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out + "\"";
}

// An operation's text after its kind: the chunk or separator (which may hold spaces? never: the
// alphabet is "abxy\n").
std::string argument(const Op& op) {
  return op.text.substr(op.kind.size() + 1);
}

Coro<void> feed(StreamReader& reader, const std::vector<Op>& feeds, Trace& trace) {
  for (const Op& op : feeds) {
    if (op.kind == "yield") {
      co_await sleep(0);
      continue;
    }
    if (op.kind == "feed")
      reader.feed_data(unescape(argument(op)));
    else if (op.kind == "eof")
      reader.feed_eof();
    else if (op.kind == "fail")
      reader.set_exception(ValueError("failed"));
    trace.push_back("F " + op.text);
  }
}

Coro<std::string> read_one(StreamReader& reader, const Op& op) {
  if (op.kind == "read") {
    std::string data = co_await reader.read(op.a);
    co_return show(data);
  }
  if (op.kind == "readline") {
    std::string data = co_await reader.readline();
    co_return show(data);
  }
  if (op.kind == "readexactly") {
    std::string data = co_await reader.readexactly(op.a);
    co_return show(data);
  }
  if (op.kind == "readuntil") {
    std::string data = co_await reader.readuntil(unescape(argument(op)));
    co_return show(data);
  }
  co_return py_bool(reader.at_eof());
}

// One read, its errors traced as Python names them. (Its own coroutine: see run_traced.)
Coro<void> read_traced(StreamReader& reader, int me, const Op& op, Trace& trace) {
  std::string what;
  try {
    what = co_await read_one(reader, op);
  } catch (const CancelledError&) {
    trace.push_back("C" + std::to_string(me) + " " + op.text + " -> cancelled");
    throw;
  } catch (const IncompleteReadError& e) {
    what = "IncompleteReadError partial=" + show(e.partial) +
           " expected=" + (e.expected ? std::to_string(*e.expected) : std::string("None"));
  } catch (const LimitOverrunError& e) {
    what = "LimitOverrunError consumed=" + std::to_string(e.consumed);
  } catch (const ValueError&) {
    what = "ValueError";
  } catch (const RuntimeError&) {
    what = "RuntimeError";
  } catch (const std::exception& e) {
    what = std::string("unexpected ") + e.what();
  }
  trace.push_back("C" + std::to_string(me) + " " + op.text + " -> " + what);
}

Coro<void> consume(StreamReader& reader, int me, const std::vector<Op>& reads, Trace& trace) {
  for (const Op& op : reads) co_await read_traced(reader, me, op, trace);
}

Coro<std::string> read_rest(StreamReader& reader) {
  try {
    std::string data = co_await reader.read(-1);
    co_return show(data);
  } catch (const ValueError&) {
    co_return "ValueError";
  }
}

Coro<std::string> run_stream_program(const StreamProgram& p) {
  Trace trace;
  EventLoop& loop = get_running_loop();
  auto reader = std::make_shared<StreamReader>(p.limit);
  auto feeding = loop.create_task(feed(*reader, p.feeder, trace));
  std::vector<Task<void>> consumers;
  for (std::size_t me = 0; me < p.consumers.size(); ++me)
    consumers.push_back(
        loop.create_task(consume(*reader, static_cast<int>(me), p.consumers[me], trace)));
  co_await yields(p.passes);
  for (int i = 0; i < 20 && !feeding.done(); ++i) co_await sleep(0);
  for (std::size_t me = 0; me < consumers.size(); ++me)
    if (!consumers[me].done())
      trace.push_back("main cancels C" + std::to_string(me) + " -> " +
                      py_bool(consumers[me].cancel()));
  co_await yields(3);
  reader->feed_eof();
  std::string rest = co_await read_rest(*reader);
  trace.push_back("rest " + rest + " at_eof=" + py_bool(reader->at_eof()));
  for (auto& c : consumers) CHECK(c.done());
  co_return lines(trace);
}

// Replays `text` (a script's output; or the file named by the environment variable `env`,
// e.g. after `random_programs.py 5000 1000 > file`) and counts the programs whose trace, as
// `run` gives it, differs from Python's; the first few differences (or all, with
// EDDY_RANDOM_PROGRAMS_ALL) are shown.
template <class Parse, class Run>
void replay(const char* env, std::string_view text, std::size_t expected_count, Parse parse,
            Run run) {
  const char* other = std::getenv(env);
  const std::string read = other ? read_file(other) : std::string();
  const auto programs = parse(other ? std::string_view(read) : text);
  REQUIRE(programs.size() == (other ? programs.size() : expected_count));
  REQUIRE(!programs.empty());
  const bool show_all = std::getenv("EDDY_RANDOM_PROGRAMS_ALL") != nullptr;
  int mismatches = 0;
  for (const auto& p : programs) {
    const std::string trace = run(p);
    if (trace != p.expected) {
      ++mismatches;
      if (mismatches <= 5 || show_all) {  // the first few in full; the count says the rest
        INFO(p.header << "\nfirst difference: " << first_difference(trace, p.expected));
        CHECK(trace == p.expected);
      }
    }
  }
  CHECK(mismatches == 0);
}

// The programs of tasks (all kinds but the StreamReader's): 300 in `text`, or the file named by
// EDDY_RANDOM_PROGRAMS.
template <class Fixture>
void replay_programs(Fixture& f, std::string_view text) {
  replay("EDDY_RANDOM_PROGRAMS", text, 300, parse_programs,
         [&f](const Program& p) { return run_with_reports(f, p); });
}

}  // namespace

LOOP_TEST("conformance: random programs of tasks, locks, queues and futures trace as in Python",
          "[conformance][locks][queues]") {
  replay_programs(*this, conformance::random_programs);
}

// With timers: only on the virtual-clock loop, whose time moves as the Python script's does.
TEST_CASE_METHOD(LoopFixture<VirtualLoop>,
                 "conformance: random programs with sleeps and timeouts trace as in Python",
                 "[conformance][locks][queues][timers]") {
  replay_programs(*this, conformance::random_timed_programs);
}

LOOP_TEST("conformance: random programs with TaskGroups trace as in Python (3.13)",
          "[conformance][combinators]") {
  replay_programs(*this, conformance::random_group_programs);
}

TEST_CASE_METHOD(LoopFixture<VirtualLoop>,
                 "conformance: random programs with TaskGroups and timeouts trace as in Python",
                 "[conformance][combinators][timers]") {
  replay_programs(*this, conformance::random_timed_group_programs);
}

LOOP_TEST("conformance: random programs with an async generator trace as in Python",
          "[conformance][asyncgen]") {
  replay_programs(*this, conformance::random_asyncgen_programs);
}

LOOP_TEST("conformance: random StreamReader programs trace as in Python",
          "[conformance][streams]") {
  replay("EDDY_RANDOM_STREAM_PROGRAMS", conformance::random_stream_programs, 300,
         parse_stream_programs, [this](const StreamProgram& p) {
           return this->loop->run_until_complete(run_stream_program(p));
         });
}
