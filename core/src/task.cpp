// Task: drives a coroutine from loop callbacks (asyncio's Task.__step and __wakeup). A pending
// cancellation is delivered by the awaiter where the coroutine is suspended; a task that never
// started is cancelled without running its body.
#include "eddy/task.hpp"

#include "exception_is.hpp"

#include <atomic>
#include <cmath>
#include <sstream>

namespace eddy {

namespace {

std::atomic<std::uint64_t> g_task_counter{0};       // ids, unique per process
std::atomic<std::uint64_t> g_task_name_counter{0};  // "Task-<n>" names, for unnamed tasks only

// Stops the loop when the future run_until_complete waits for is done (asyncio's
// _run_until_complete_cb). A KeyboardInterrupt it finished with has already ended that run by
// propagating out of it, and this callback, scheduled by then, cannot be removed any more:
// stopping now would stop the next run instead.
struct StopLoop {
  bool operator==(const StopLoop&) const noexcept { return true; }
  struct Invoke {
    static void call(StopLoop&, FutureBase& f) {
      // (exception() marks it retrieved, as asyncio's does.)
      if (!f.cancelled() && detail::exception_is<KeyboardInterrupt>(f.exception())) return;
      f.get_loop().stop();
    }
  };
};

}  // namespace

// ---- PromiseBase ----------------------------------------------------------------------------------

void PromiseBase::FinalAwaiter::finish(PromiseBase& p) noexcept {
  if (p.parent_handle) {
    if (p.inline_start) return;  // the parent's co_await sees done() and continues itself
    coro::coroutine_handle<> parent = p.parent_handle;
    parent.resume();  // nothing of this frame may be touched after this line
    return;
  }
  if (p.task) p.task->on_coroutine_done(p);
}

namespace detail {

void release_coro(coro::coroutine_handle<> frame, QuickCall& call, FutureBase* waiting) noexcept {
  if (frame) frame.destroy();
  if (call.self.owns()) call.self = KeepAlive();
  if (waiting) waiting->release();
}

// (ptr_ is always a live shared_ptr; the union only keeps its destructor from being inlined.)
std::shared_ptr<void> KeepAlive::release_shared() noexcept {
  return std::move(ptr_);
}

void KeepAlive::take(KeepAlive& o) noexcept {
  ptr_ = std::move(o.ptr_);
}

void KeepAlive::release() noexcept {
  ptr_.reset();
}

void throw_coroutine_reused() { throw RuntimeError("cannot reuse already awaited coroutine"); }

void reject_future_await(PromiseBase& p, FutureBase* f) {
  if (!p.task) throw RuntimeError("a Future was awaited outside of a Task");
  if (&f->get_loop() != &p.task->get_loop())
    throw RuntimeError("Task " + p.task->describe() + " got Future " + f->describe() +
                       " attached to a different loop");
  throw RuntimeError("Task cannot await on itself: " + p.task->describe());
}

void run_until_done(EventLoop& loop, FutureBase* f, bool new_task) {
  // Checked before the stop callback goes on: on a done future it would be scheduled at once
  // and stop the running loop a pass later.
  loop.check_can_run("run_until_complete");
  if (&f->get_loop() != &loop)
    throw ValueError("The future belongs to a different loop than the one specified as the loop "
                     "argument");
  f->add_done_callback_as<StopLoop, StopLoop::Invoke>(StopLoop{});
  try {
    loop.run_forever();
  } catch (...) {
    if (new_task && f->done() && !f->cancelled()) (void)f->exception();  // mark retrieved
    f->remove_done_callback(StopLoop{});
    throw;
  }
  f->remove_done_callback(StopLoop{});
  if (!f->done()) throw RuntimeError("Event loop stopped before Future completed.");
}

}  // namespace detail

// ---- TaskBase -------------------------------------------------------------------------------------

TaskBase::TaskBase(EventLoop& loop, CoroutineFrame frame, const TaskOptions& options)
    : FutureBase(loop),
      created_file_(options.created_at.file),
      created_line_(detail::HandleRecord::clamp_line(options.created_at.line)) {
  static_assert(sizeof(void*) != 8 || sizeof(TaskBase) <= 176, "see the note on TaskBase's fields");
  static_assert(sizeof(void*) != 8 || sizeof(Coro<void>::promise_type) <= 56,
                "see the notes on AwaitRecord::where and PromiseBase::inline_start");
  is_task_ = true;
  slot_ = frame.slot();
  frame_holds_result_ = frame.returns_value();
  PromiseBase* root = frame.promise();
  frame_ = frame.take().release();
  if (EDDY_UNLIKELY(promise() != root)) {
    rare().promise = root;
    promise_in_rare_ = true;
  }
  root->task = this;
  id_ = ++g_task_counter;
  if (!options.name.empty()) {
    set_name(options.name);
  } else {
    const std::uint64_t n = ++g_task_name_counter;
    if (EDDY_LIKELY(n <= UINT32_MAX))
      name_number_ = static_cast<std::uint32_t>(n);
    else
      set_name("Task-" + std::to_string(n));  // past what the field holds: formatted now
  }
  loop.register_task(this);
  EDDY_INSPECT_HOOK(loop, task_created(this));
}

TaskBase::~TaskBase() {
  get_loop().unregister_task(this);
  if (frame_) frame_.destroy();
}

Ref<TaskBase> TaskBase::create(EventLoop& loop, CoroutineFrame&& frame, const TaskOptions& options) {
  Ref<TaskBase> t(new TaskBase(loop, std::move(frame), options));
  t->start(options.eager_start.value_or(false));
  return t;
}

Ref<TaskBase> eager_task_factory(EventLoop& loop, CoroutineFrame&& frame,
                                 const TaskOptions& options) {
  TaskOptions eager = options;
  if (!eager.eager_start) eager.eager_start = true;
  return TaskBase::create(loop, std::move(frame), eager);
}

void TaskBase::destroy_self() noexcept {
  if (!done() && frame_ && log_destroy_pending_) {
    ExceptionContext ctx("Task was destroyed but it is pending!");
    ctx.extra["task"] = describe();
    ctx.source = created_at();
    get_loop().call_exception_handler(ctx);
  }
  FutureBase::destroy_self();
}

void TaskBase::start(bool eager) {
  EventLoop& loop = get_loop();
  if (eager && loop.is_running()) {
    // asyncio's eager start: run the first step now, in place of the current task.
    TaskBase* outer = loop.current_task();
    Ref<TaskBase> keep(this);
    loop.set_current_task(nullptr);
#if EDDY_INSPECT
    inspect::Recorder* rec = loop.inspector();
    TaskBase* outer_step = rec ? rec->take_stepping() : nullptr;
    struct Restore {
      EventLoop& loop;
      TaskBase* outer_step;
      ~Restore() {
        if (inspect::Recorder* r = loop.inspector()) r->restore_stepping(outer_step);
        else if (outer_step) outer_step->release();
      }
    } restore{loop, outer_step};
#endif
    try {
      step();
    } catch (...) {
      loop.set_current_task(outer);
      throw;
    }
    loop.set_current_task(outer);
    return;
  }
  schedule_step();
}

void TaskBase::schedule_step() {
  scheduled_ = true;
  get_loop().schedule_task_step(Ref<TaskBase>(this), false);
}

void TaskBase::step() {
  scheduled_ = false;
  if (done()) return;
  EventLoop& loop = get_loop();
  if (TaskBase* other = loop.current_task())
    throw RuntimeError("Cannot enter into task " + describe() + " while another task " +
                       other->describe() + " is being executed.");
  if (must_cancel_ && !started_) {
    // The coroutine never ran: cancelling it is final, its body never starts.
    must_cancel_ = false;
    finish_cancelled(pending_cancel_message());
    return;
  }
  // Woken by a waiter whose condition was undone meanwhile: waits again, not running.
  if (EDDY_UNLIKELY(fut_waiter_ && fut_waiter_->rechecks_on_wake()) && !must_cancel_ &&
      fut_waiter_->wait_again(*this))
    return;
  started_ = true;
  run_count_ += run_count_ != UINT32_MAX;
  Ref<TaskBase> keep(this);
  coro::coroutine_handle<> h = resume_point_ ? std::exchange(resume_point_, {}) : frame_;
  loop.set_current_task(this);
  EDDY_INSPECT_HOOK(loop, task_stepping(this));  // its callback's duration is the step's
  h.resume();
  loop.set_current_task(nullptr);
  if (EDDY_UNLIKELY(loop.interrupting())) std::rethrow_exception(loop.take_interrupting());
}

void TaskBase::wait_on(FutureBase* future, coro::coroutine_handle<> resume_at) {
  fut_waiter_ = Ref<FutureBase>(future);
  resume_point_ = resume_at;
  future->add_task_wakeup(this);
  if (must_cancel_) {
    // Cancelled during this step, before the await: pass it on to what we now wait for.
    if (future->cancel(pending_cancel_message())) must_cancel_ = false;
  }
}

void TaskBase::yield_once(coro::coroutine_handle<> resume_at) {
  resume_point_ = resume_at;
  schedule_step();
}

void TaskBase::throw_pending_cancel(FutureBase* awaited) {
  must_cancel_ = false;
  if (awaited) {
    std::exception_ptr cancelled;
    try {
      awaited->check_result();
    } catch (const CancelledError&) {
      cancelled = std::current_exception();
    } catch (...) {  // any other outcome gives way to the cancellation
    }
    if (cancelled) std::rethrow_exception(cancelled);
  }
  throw CancelledError(pending_cancel_message());
}

bool TaskBase::cancel(std::string message) {
  log_traceback_ = false;
  if (done()) return false;
  ++num_cancels_requested_;
  if (fut_waiter_ && fut_waiter_->cancel(message)) return true;
  must_cancel_ = true;
  if (rare_fields() || !message.empty()) rare().pending_cancel_message = std::move(message);
  return true;
}

int TaskBase::uncancel() noexcept {
  if (num_cancels_requested_ > 0) {
    --num_cancels_requested_;
    if (num_cancels_requested_ == 0) must_cancel_ = false;
  }
  return num_cancels_requested_;
}

void TaskBase::on_coroutine_done(PromiseBase& root) noexcept {
  PromiseBase* p = &root;
  resume_point_ = {};
  fut_waiter_.reset();
  try {
    if (p->exception) {
      std::exception_ptr e = p->exception.take();
      try {
        std::rethrow_exception(e);
      } catch (const CancelledError& c) {
        must_cancel_ = false;
        finish_cancelled(c.message());
      } catch (const KeyboardInterrupt&) {
        get_loop().set_interrupting(std::current_exception());  // step() re-raises it
        finish_with_exception(std::current_exception());
      } catch (...) {
        finish_with_exception(std::current_exception());
      }
    } else if (must_cancel_) {
      must_cancel_ = false;  // cancelled right before the coroutine returned
      finish_cancelled(pending_cancel_message());
    } else {
      finish_with_result();
    }
  } catch (...) {
    // Scheduling the done callbacks failed (the loop is closed); the state is final anyway.
  }
  EDDY_INSPECT_HOOK(get_loop(), task_done(this));
  if (!frame_holds_result_) {
    // Python frees a coroutine's locals when it returns; a C++ frame keeps the parameters until
    // it is destroyed. With no result in it, it goes now (we are at its final suspend point), so
    // what the coroutine was given (a writer, a socket) is let go even while the task is held.
    slot_ = nullptr;
    std::exchange(frame_, {}).destroy();
  }
}

void TaskBase::abandon() noexcept {
  Ref<TaskBase> keep(this);
  resume_point_ = {};
  fut_waiter_.reset();
  mark_abandoned();
  if (frame_) std::exchange(frame_, {}).destroy();
}

const char* TaskBase::describe_await(const PromiseBase& p, std::string& scratch) const {
  switch (p.awaiting.kind) {
    case AwaitRecord::Kind::none:
      return started_ ? "running" : "not started";
    case AwaitRecord::Kind::coroutine: {
      // The awaited coroutine by name (known from its own first co_await, which it has made,
      // being suspended below this frame).
      const char* name = static_cast<const PromiseBase*>(p.awaiting.target)->function();
      return *name ? name : "coroutine";
    }
    case AwaitRecord::Kind::future: {
      const auto* f = static_cast<const FutureBase*>(p.awaiting.target);
      if (const char* fixed = f->fixed_description()) return fixed;
      scratch = f->describe();
      return nullptr;
    }
    case AwaitRecord::Kind::task:
      scratch = "Task '" + static_cast<const TaskBase*>(p.awaiting.target)->get_name() + "'";
      return nullptr;
    case AwaitRecord::Kind::yield:
      return "sleep(0)";
  }
  return "";
}

const PromiseBase* TaskBase::awaited_coroutine(const PromiseBase& p) noexcept {
  return p.awaiting.kind == AwaitRecord::Kind::coroutine
             ? static_cast<const PromiseBase*>(p.awaiting.target)
             : nullptr;
}

const SourceLocation* TaskBase::waiting_call(const PromiseBase& p) noexcept {
  return p.awaiting.kind == AwaitRecord::Kind::future
             ? static_cast<const FutureBase*>(p.awaiting.target)->waiting_call()
             : nullptr;
}

std::vector<AwaitFrame> TaskBase::await_chain() const {
  std::vector<AwaitFrame> chain;
  for_each_await([&](const char* function, const AwaitRecord& awaiting, const char* fixed,
                     std::string& scratch) {
    AwaitFrame f;
    f.function = function;
    if (awaiting.kind != AwaitRecord::Kind::none) f.where = awaiting.where;
    f.awaiting = fixed ? std::string(fixed) : std::move(scratch);
    chain.push_back(std::move(f));
  });
  return chain;
}

std::string TaskBase::describe() const {
  std::ostringstream os;
  os << "<Task " << (state() == FutureState::pending     ? "pending"
                     : state() == FutureState::cancelled ? "cancelled"
                                                         : "finished")
     << " name='" << get_name() << "'";
  if (created_line_ != 0) os << " created at " << created_file_ << ':' << created_line_;
  os << '>';
  return os.str();
}

// ---- Module-level functions -----------------------------------------------------------------------

TaskBase* current_task(EventLoop* loop) {
  if (!loop) loop = &get_running_loop();
  return loop->current_task();
}

std::vector<Ref<TaskBase>> all_tasks(EventLoop* loop) {
  if (!loop) loop = &get_running_loop();
  return loop->all_tasks();
}

Coro<void> sleep(double delay, SourceLocation where) {
  if (std::isnan(delay))
    throw ValueError("Invalid delay: NaN (not a number)");  // asyncio.sleep's words
  if (delay <= 0) {
    co_await detail::awaiting_as("eddy::sleep", detail::YieldOnce{});
    co_return;
  }
  EventLoop& loop = get_running_loop();
  Future<void> done = loop.create_future<void>();
  detail::SetResultUnlessDone wakeup{done, "eddy::sleep"};
  TimerHandle timer = loop.call_later(delay, std::move(wakeup), where);
  try {
    co_await detail::awaiting_as("eddy::sleep", done);
  } catch (...) {
    timer.cancel();
    throw;
  }
}

}  // namespace eddy
