// The non-template halves of the task functions: gather's outer future, wait's completion
// counting, shield's two callbacks, as_completed's queue, Timeout's state machine, TaskGroup's
// bookkeeping and the cross-thread future of run_coroutine_threadsafe.
#include "eddy/combinators.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <list>

#include "eddy/queues.hpp"
#include "exception_is.hpp"

namespace eddy {

namespace {

bool is_cancellation(const std::exception_ptr& e) {
  return detail::exception_is<CancelledError>(e);
}

// asyncio's TaskGroup._is_base_error: KeyboardInterrupt (and SystemExit, which C++ has not) is
// re-raised by the group as it is, not inside an ExceptionGroup.
bool is_base_error(const std::exception_ptr& e) {
  return detail::exception_is<KeyboardInterrupt>(e);
}

std::string group_what(const std::string& message, std::size_t n) {
  return message + " (" + std::to_string(n) + " sub-exception" + (n == 1 ? "" : "s") + ")";
}

}  // namespace

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
    : message_(std::move(message)),
      what_(group_what(message_, exceptions.size())),
      exceptions_(std::move(exceptions)) {}

namespace detail {

EventLoop& combinator_loop(FutureBase* first) {
  if (EventLoop* running = running_loop()) return *running;
  if (first) return first->get_loop();
  return get_running_loop();  // throws: no running loop and nothing to take one from
}

// ---- gather
// ---------------------------------------------------------------------------------------

struct GatherBase::ChildDone {
  Ref<GatherBase> outer;
  struct Invoke {
    static void call(ChildDone& cb, FutureBase& child) { cb.outer->on_child_done(child); }
  };
};

GatherBase::GatherBase(EventLoop& loop, std::vector<Ref<FutureBase>> children,
                       bool return_exceptions)
    : FutureBase(loop), children_(std::move(children)), return_exceptions_(return_exceptions) {
  // gather()'s children come from to_future, which checked each against the running loop: only
  // without one (the loop is then the first child's) must the others be checked here. A second
  // pass over a million children would cost a cache miss each.
  if (running_loop() == &loop) return;
  for (const auto& c : children_)
    if (&c->get_loop() != &loop)
      throw ValueError("gather: the futures belong to different event loops");
}

void GatherBase::start() {
  if (children_.empty()) {
    collect(children_);
    finish_with_result();
    return;
  }
  // As asyncio since 3.12: children already done are counted at once, after the callbacks of
  // the others are in place, so a gather whose children all finished (or one of which failed or
  // was cancelled) is done on return, and awaiting it does not wait for a loop pass.
  std::vector<Ref<FutureBase>> already_done;
  for (const auto& c : children_) {
    if (c->done())
      already_done.push_back(c);
    else
      c->add_done_callback_as<ChildDone, ChildDone::Invoke>(ChildDone{Ref<GatherBase>(this)});
  }
  for (const auto& c : already_done) on_child_done(*c);
}

bool GatherBase::cancel(std::string message) {
  if (done()) return false;
  bool any = false;
  for (const auto& c : children_)
    if (c->cancel(message)) any = true;
  // The gather ends cancelled once the children have finished (whatever return_exceptions says).
  if (any) cancel_requested_ = true;
  return any;
}

void GatherBase::on_child_done(FutureBase& child) {
  ++finished_;
  if (done()) {
    if (!child.cancelled()) (void)child.exception();  // mark the exception as retrieved
    return;
  }
  if (!return_exceptions_) {
    if (child.cancelled()) {
      end(std::make_exception_ptr(CancelledError(child.cancel_message())));
      return;
    }
    if (std::exception_ptr e = child.exception()) {
      end(std::move(e));
      return;
    }
  }
  if (finished_ < children_.size()) return;
  if (cancel_requested_) {
    // As asyncio: the outer future ends with a CancelledError as its exception, made by the last
    // child in the arguments (not the last to finish): its message, or none if it was not
    // cancelled.
    const FutureBase& last = *children_.back();
    std::string msg = last.cancelled() ? last.cancel_message() : std::string();
    end(std::make_exception_ptr(CancelledError(std::move(msg))));
    return;
  }
  collect(children_);
  end(nullptr);
}

void GatherBase::end(std::exception_ptr error) {
  // A child still pending holds this gather through its done callback: keeping the children
  // would make a cycle that outlives them all when that child never finishes. A done gather
  // needs them no more (cancel() answers false; late children only have their exception marked
  // retrieved).
  std::vector<Ref<FutureBase>>().swap(children_);
  if (error)
    finish_with_exception(std::move(error));
  else
    finish_with_result();
}

// ---- wait ---------------------------------------------------------------------------------------

namespace {

struct WaitState {
  Future<void> waiter;
  Handle timer;
  std::size_t counter = 0;
  ReturnWhen return_when = ReturnWhen::ALL_COMPLETED;
};

struct OnCompletion {
  std::shared_ptr<WaitState> s;
  bool operator==(const OnCompletion& o) const noexcept { return s == o.s; }
  struct Invoke {
    static void call(OnCompletion& cb, FutureBase& f) {
      WaitState& s = *cb.s;
      --s.counter;
      if (s.counter == 0 || s.return_when == ReturnWhen::FIRST_COMPLETED ||
          (s.return_when == ReturnWhen::FIRST_EXCEPTION && !f.cancelled() && f.exception())) {
        s.timer.cancel();
        if (!s.waiter.done()) s.waiter.set_result();
      }
    }
  };
};

}  // namespace

Coro<void> wait_until(std::vector<Ref<FutureBase>> fs, WaitOptions options, SourceLocation where) {
  EventLoop& loop = get_running_loop();
  auto s = std::make_shared<WaitState>();
  s->waiter = loop.create_future<void>();
  s->counter = fs.size();
  s->return_when = options.return_when;
  if (options.timeout) {
    detail::SetResultUnlessDone release{s->waiter, "eddy::wait"};
    s->timer = loop.call_later(*options.timeout, std::move(release), where);
  }
  for (const auto& f : fs)
    f->add_done_callback_as<OnCompletion, OnCompletion::Invoke>(OnCompletion{s});
  std::exception_ptr error;
  try {
    co_await detail::awaiting_as("eddy::wait", s->waiter);
  } catch (...) {
    error = std::current_exception();
  }
  s->timer.cancel();
  for (const auto& f : fs) f->remove_done_callback(OnCompletion{s});
  if (error) std::rethrow_exception(error);
}

Coro<void> cancel_and_wait(Ref<FutureBase> f) {
  auto s = std::make_shared<WaitState>();
  s->waiter = f->get_loop().create_future<void>();
  s->counter = 1;
  f->add_done_callback_as<OnCompletion, OnCompletion::Invoke>(OnCompletion{s});
  std::exception_ptr error;
  try {
    f->cancel();
    co_await detail::awaiting_as("eddy::wait_for", s->waiter);
  } catch (...) {
    error = std::current_exception();
  }
  f->remove_done_callback(OnCompletion{s});
  if (error) std::rethrow_exception(error);
}

// ---- shield -------------------------------------------------------------------------------------

namespace {

using StoreFn = void (*)(FutureBase&, FutureBase&);

struct ShieldInnerDone {
  Ref<FutureBase> outer;
  StoreFn store;
  bool operator==(const ShieldInnerDone& o) const noexcept { return outer == o.outer; }
  struct Invoke {
    static void call(ShieldInnerDone& cb, FutureBase& inner) {
      FutureBase& outer = *cb.outer;
      if (outer.cancelled()) {
        if (!inner.cancelled()) (void)inner.exception();  // mark retrieved
        return;
      }
      if (inner.cancelled()) {
        outer.cancel();
      } else if (std::exception_ptr e = inner.exception()) {
        outer.set_exception(std::move(e));
      } else {
        outer.check_settable("set_result");
        cb.store(inner, outer);
        outer.finish_with_result();
      }
    }
  };
};

struct ShieldOuterDone {
  Ref<FutureBase> inner;
  struct Invoke {
    static void call(ShieldOuterDone& cb, FutureBase& outer) {
      if (!cb.inner->done())
        cb.inner->remove_done_callback(ShieldInnerDone{Ref<FutureBase>(&outer), nullptr});
    }
  };
};

}  // namespace

void shield_copy(FutureBase& inner, FutureBase& outer, StoreFn store) {
  inner.add_done_callback_as<ShieldInnerDone, ShieldInnerDone::Invoke>(
      ShieldInnerDone{Ref<FutureBase>(&outer), store});
  outer.add_done_callback_as<ShieldOuterDone, ShieldOuterDone::Invoke>(
      ShieldOuterDone{Ref<FutureBase>(&inner)});
}

// ---- as_completed -------------------------------------------------------------------------------

class AsCompletedCore {
 public:
  Queue<Ref<FutureBase>> done;
  // The futures not done yet. A list: each one's done callback holds its place, so one leaves
  // in O(1) however many there are (asyncio keeps a set).
  using Todo = std::list<Ref<FutureBase>>;
  Todo todo;
  bool expired = false;  // the timeout came: todo was dropped, with its places
  Handle timer;
};

namespace {

struct AsCompletedDone {
  std::shared_ptr<AsCompletedCore> core;
  AsCompletedCore::Todo::iterator place;
  bool operator==(const AsCompletedDone& o) const noexcept { return core == o.core; }
  struct Invoke {
    static void call(AsCompletedDone& cb, FutureBase& f) {
      AsCompletedCore& c = *cb.core;
      if (c.expired) return;  // already scheduled when the timeout came
      c.todo.erase(cb.place);
      c.done.put_nowait(Ref<FutureBase>(&f));
      if (c.todo.empty()) c.timer.cancel();
    }
  };
};

// as_completed's timer: what is not done yet is dropped and each next() still owed raises.
struct AsCompletedTimeout {
  std::weak_ptr<AsCompletedCore> core;
  void operator()() {
    auto c = core.lock();
    if (!c) return;
    for (const auto& f : c->todo) f->remove_done_callback(AsCompletedDone{c, {}});
    c->todo.clear();
    c->expired = true;
    c->done.put_nowait(Ref<FutureBase>());  // wakes next() to raise TimeoutError
  }
  static const char* callback_name() noexcept { return "eddy::as_completed"; }
};

}  // namespace

std::shared_ptr<AsCompletedCore> start_as_completed(const std::vector<Ref<FutureBase>>& fs,
                                                    std::optional<double> timeout,
                                                    SourceLocation where) {
  auto core = std::make_shared<AsCompletedCore>();
  if (timeout) {
    EventLoop& loop = combinator_loop(fs.empty() ? nullptr : fs.front().get());
    AsCompletedTimeout expire{core};
    core->timer = loop.call_later(*timeout, std::move(expire), where);
  }
  for (const auto& f : fs) {
    auto place = core->todo.insert(core->todo.end(), f);
    f->add_done_callback_as<AsCompletedDone, AsCompletedDone::Invoke>(AsCompletedDone{core, place});
  }
  return core;
}

Coro<Ref<FutureBase>> next_completed(std::shared_ptr<AsCompletedCore> core) {
  auto getting = core->done.get();
  Ref<FutureBase> f = co_await detail::awaiting_as("eddy::as_completed", getting);
  if (!f) {
    core->done.put_nowait(Ref<FutureBase>());  // every later next() times out too
    throw TimeoutError();
  }
  co_return f;
}

}  // namespace detail

// ---- Timeout ------------------------------------------------------------------------------------

Timeout timeout(std::optional<double> delay, SourceLocation where) {
  EventLoop& loop = get_running_loop();  // asyncio asks for the running loop even without a delay
  if (!delay) return Timeout(std::nullopt, where);
  return Timeout(loop.time() + *delay, where);
}

Timeout timeout_at(std::optional<double> when, SourceLocation where) {
  return Timeout(when, where);
}

Timeout::~Timeout() {
  handle_.cancel();
}

void Timeout::enter() {
  if (state_ != State::created) throw RuntimeError("Timeout has already been entered");
  TaskBase* task = current_task();
  if (!task) throw RuntimeError("Timeout should be used inside a task");
  state_ = State::entered;
  task_ = Ref<TaskBase>(task);
  cancelling_ = task->cancelling();
  reschedule(when_);
}

void Timeout::reschedule(std::optional<double> when) {
  if (state_ != State::entered) {
    if (state_ == State::created) throw RuntimeError("Timeout has not been entered");
    throw RuntimeError("Cannot change state of " + std::string(state_name()) + " Timeout");
  }
  when_ = when;
  handle_.cancel();
  handle_ = Handle();
  if (!when) return;
  EventLoop& loop = task_->get_loop();
  if (*when <= loop.time())
    handle_ = loop.call_soon(Expiry{this}, where_);
  else
    handle_ = loop.call_at(*when, Expiry{this}, where_);
}

void Timeout::on_timeout() {
  task_->cancel();
  state_ = State::expiring;
  handle_ = Handle();
}

void Timeout::exit(std::exception_ptr& error) {
  handle_.cancel();
  handle_ = Handle();
  if (state_ == State::expiring) {
    state_ = State::expired;
    // Our own cancellation (no other cancel() pending) becomes TimeoutError.
    if (task_->uncancel() <= cancelling_ && is_cancellation(error))
      error = std::make_exception_ptr(TimeoutError());
  } else if (state_ == State::entered) {
    state_ = State::exited;
  }
  task_.reset();
}

const char* Timeout::state_name() const noexcept {
  static const char* const names[] = {"created", "active", "expiring", "expired", "finished"};
  return names[static_cast<int>(state_)];
}

std::string Timeout::describe() const {
  std::string s = "<Timeout [" + std::string(state_name()) + "]";
  if (state_ == State::entered) {
    if (!when_) return s + " when=None>";
    // Python's repr(round(when, 3)): at most three decimals, at least one.
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", *when_);
    std::string w = buf;
    while (w.size() > 1 && w.back() == '0' && w[w.size() - 2] != '.') w.pop_back();
    s += " when=" + w;
  }
  return s + ">";
}

// ---- TaskGroup ----------------------------------------------------------------------------------

struct TaskGroup::State {
  EventLoop* loop = nullptr;
  Ref<TaskBase> parent;
  // The children not done yet, in creation order. A list: each child's done callback holds its
  // place, so a child leaves in O(1) however many there are (asyncio keeps a set).
  using Children = std::list<Ref<TaskBase>>;
  Children tasks;
  std::vector<std::exception_ptr> errors;
  std::exception_ptr base_error;  // the first KeyboardInterrupt, raised by exit() as it is
  Future<void> on_completed;
  bool entered = false;
  bool exiting = false;
  bool aborting = false;
  bool parent_cancel_requested = false;

  void abort() {
    aborting = true;
    for (const auto& t : tasks)
      if (!t->done()) t->cancel();
  }

  void on_task_done(TaskBase& task, Children::iterator place) {
    tasks.erase(place);
    if (on_completed && tasks.empty() && !on_completed.done()) on_completed.set_result();
    if (task.cancelled()) return;
    std::exception_ptr e = task.exception();
    if (!e) return;
    errors.push_back(e);
    if (!base_error && is_base_error(e)) base_error = e;
    if (parent->done()) {
      ExceptionContext ctx("Task has errored out but its parent task is already completed");
      ctx.exception = e;
      ctx.extra["task"] = task.describe();
      loop->call_exception_handler(ctx);
      return;
    }
    if (!aborting && !parent_cancel_requested) {
      // Stop whatever the body is awaiting; exit() takes this cancellation back (uncancel).
      abort();
      parent_cancel_requested = true;
      parent->cancel();
    }
  }
};

namespace {

struct GroupTaskDone {
  std::shared_ptr<TaskGroup::State> state;
  TaskGroup::State::Children::iterator place;  // the child's entry in state->tasks
  struct Invoke {
    static void call(GroupTaskDone& cb, FutureBase& f) {
      cb.state->on_task_done(static_cast<TaskBase&>(f), cb.place);
    }
  };
};

}  // namespace

TaskGroup::TaskGroup() : state_(std::make_shared<State>()) {}

TaskGroup::~TaskGroup() {
  // Left without exit() (its coroutine was destroyed): the children must not outlive it.
  if (state_->entered && !state_->tasks.empty()) state_->abort();
}

std::string TaskGroup::describe() const {
  const State& s = *state_;
  std::string out = "<TaskGroup";
  if (!s.tasks.empty()) out += " tasks=" + std::to_string(s.tasks.size());
  if (!s.errors.empty()) out += " errors=" + std::to_string(s.errors.size());
  if (s.aborting)
    out += " cancelling";
  else if (s.entered)
    out += " entered";
  return out + ">";
}

void TaskGroup::enter() {
  State& s = *state_;
  if (s.entered) throw RuntimeError("TaskGroup " + describe() + " has already been entered");
  EventLoop& loop = get_running_loop();
  TaskBase* parent = loop.current_task();
  if (!parent) throw RuntimeError("TaskGroup " + describe() + " cannot determine the parent task");
  s.loop = &loop;
  s.parent = Ref<TaskBase>(parent);
  s.entered = true;
}

EventLoop& TaskGroup::check_can_create() {
  State& s = *state_;
  if (!s.entered) throw RuntimeError("TaskGroup " + describe() + " has not been entered");
  if (s.exiting && s.tasks.empty()) throw RuntimeError("TaskGroup " + describe() + " is finished");
  if (s.aborting) throw RuntimeError("TaskGroup " + describe() + " is shutting down");
  return *s.loop;
}

void TaskGroup::adopt(TaskBase* task) {
  // Also a task that already finished (started eagerly): its done callback runs a pass later,
  // as asyncio 3.13.2 does (gh-128550). Handled at once, a failure would abort the group and
  // cancel the parent in the middle of create_task: a task created next by the same eager step
  // would miss the abort, or be refused as the group was already shutting down.
  auto place = state_->tasks.insert(state_->tasks.end(), Ref<TaskBase>(task));
  task->add_done_callback_as<GroupTaskDone, GroupTaskDone::Invoke>(GroupTaskDone{state_, place});
}

namespace {

// Awaits `f`, storing a CancelledError instead of raising it. (A separate coroutine because
// Emscripten 3.1.6 mishandles an exception raised at a co_await inside a try inside a loop.)
Coro<void> await_noting_cancel(Future<void> f, std::exception_ptr* cancelled) {
  try {
    co_await detail::awaiting_as("eddy::TaskGroup::exit", f);
  } catch (const CancelledError&) {
    *cancelled = std::current_exception();
  }
}

}  // namespace

Coro<void> TaskGroup::exit(std::exception_ptr error) {
  std::shared_ptr<State> s = state_;
  if (!s->entered) throw RuntimeError("TaskGroup " + describe() + " has not been entered");
  s->exiting = true;
  if (!s->base_error && is_base_error(error)) s->base_error = error;
  const bool error_is_cancel = is_cancellation(error);
  std::exception_ptr propagate_cancel = error_is_cancel ? error : nullptr;
  if (error && !s->aborting) s->abort();  // the body failed or was cancelled
  while (!s->tasks.empty()) {
    if (!s->on_completed) s->on_completed = s->loop->create_future<void>();
    std::exception_ptr cancelled;
    co_await detail::awaiting_as("eddy::TaskGroup::exit",
                                 await_noting_cancel(s->on_completed, &cancelled));
    if (cancelled && !s->aborting) {
      // The parent was cancelled from outside while waiting for the children.
      propagate_cancel = cancelled;
      s->abort();
    }
    s->on_completed = Future<void>();
  }
  if (s->base_error) std::rethrow_exception(s->base_error);
  if (s->parent_cancel_requested && s->parent->uncancel() == 0) propagate_cancel = nullptr;
  // Errors take priority over a cancellation.
  if (propagate_cancel && s->errors.empty()) std::rethrow_exception(propagate_cancel);
  if (error && !error_is_cancel) s->errors.push_back(error);
  if (!s->errors.empty()) {
    // Keep an outside cancellation of the parent pending (uncancel + cancel keeps the count).
    if (s->parent->cancelling() > 0) {
      s->parent->uncancel();
      s->parent->cancel();
    }
    std::vector<std::exception_ptr> errors = std::move(s->errors);
    s->errors.clear();
    throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors));
  }
}

// ---- Cross-thread futures
// -------------------------------------------------------------------------

bool detail::ConcurrentCore::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_ != State::pending;
}

bool detail::ConcurrentCore::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_ == State::cancelled;
}

void detail::ConcurrentCore::wait_done(std::unique_lock<std::mutex>& lock,
                                       std::optional<double> timeout) {
  auto ready = [this] { return state_ != State::pending; };
  if (!timeout) {
    cv_.wait(lock, ready);
  } else if (!cv_.wait_for(lock, std::chrono::duration<double>(*timeout), ready)) {
    throw TimeoutError();
  }
}

void detail::ConcurrentCore::wait_result(std::optional<double> timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_done(lock, timeout);
  if (state_ == State::cancelled) throw CancelledError();
  if (exception_) std::rethrow_exception(exception_);
}

std::exception_ptr detail::ConcurrentCore::wait_exception(std::optional<double> timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_done(lock, timeout);
  if (state_ == State::cancelled) throw CancelledError();
  return exception_;
}

bool detail::ConcurrentCore::cancel() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::finished) return false;
    if (state_ == State::cancelled) return true;
    state_ = State::cancelled;
  }
  cv_.notify_all();
  // The task (if it started) is cancelled on its loop's thread.
  try {
    loop->call_soon_threadsafe([core = shared_from_this()] {
      if (core->task) core->task->cancel();
    });
  } catch (const RuntimeError&) {
    // The loop has closed: nothing runs there any more.
  }
  return true;
}

void detail::ConcurrentCore::set_cancelled() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != State::pending) return;
    state_ = State::cancelled;
  }
  cv_.notify_all();
}

void detail::ConcurrentCore::set_exception(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != State::pending) return;
    exception_ = std::move(e);
    state_ = State::finished;
  }
  cv_.notify_all();
}

void detail::ConcurrentCore::set_value_stored() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != State::pending) return;
    state_ = State::finished;
  }
  cv_.notify_all();
}

void detail::start_threadsafe(EventLoop& loop, std::shared_ptr<ConcurrentCore> core,
                              UniqueFunction start) {
  core->loop = &loop;
  loop.call_soon_threadsafe([core, start = std::move(start)]() mutable {
    if (core->cancelled()) return;  // cancelled before it could start
    try {
      start();
    } catch (...) {
      core->set_exception(std::current_exception());
    }
  });
}

namespace {

struct ChainToConcurrent {
  std::shared_ptr<detail::ConcurrentCore> core;
  void (*store)(FutureBase&, detail::ConcurrentCore&);
  struct Invoke {
    static void call(ChainToConcurrent& cb, FutureBase& task) {
      detail::ConcurrentCore& core = *cb.core;
      core.task = nullptr;
      if (task.cancelled()) {
        core.set_cancelled();
      } else if (std::exception_ptr e = task.exception()) {
        core.set_exception(std::move(e));
      } else {
        // The value is written before the state says finished (under the core's mutex there).
        if (!core.done()) cb.store(task, core);
        core.set_value_stored();
      }
    }
  };
};

}  // namespace

void detail::chain_to_concurrent(TaskBase& task, std::shared_ptr<ConcurrentCore> core,
                                 void (*store)(FutureBase&, ConcurrentCore&)) {
  core->task = &task;
  task.add_done_callback_as<ChainToConcurrent, ChainToConcurrent::Invoke>(
      ChainToConcurrent{std::move(core), store});
}

}  // namespace eddy
