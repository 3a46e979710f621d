// FutureBase's state machine and done callbacks. Callbacks are never called inline: each one is
// queued with call_soon semantics when the future completes: the first (stored in the future)
// as a ready-queue entry of its own, later ones through a pooled handle record.
#include "eddy/future.hpp"

#include <cassert>

#include "eddy/log.hpp"
#include "eddy/task.hpp"

namespace eddy {

const char* to_string(FutureState s) noexcept {
  switch (s) {
    case FutureState::pending:
      return "PENDING";
    case FutureState::cancelled:
      return "CANCELLED";
    case FutureState::finished:
      return "FINISHED";
  }
  return "?";
}

namespace {

// The handle callback that runs one done callback with its future. It keeps the future alive
// until the callback has run (or was dropped because the loop closed).
struct DoneCallbackRunner {
  FutureBase* future;
  detail::DoneCallback* cb;
  DoneCallbackRunner(FutureBase* f, detail::DoneCallback* c) noexcept : future(f), cb(c) {
    f->retain();
  }
  DoneCallbackRunner(DoneCallbackRunner&& o) noexcept
      : future(std::exchange(o.future, nullptr)), cb(o.cb) {}
  ~DoneCallbackRunner() {
    if (!future) return;
    FutureBase::release_callback(cb);
    future->release();
  }
  void operator()() { cb->ops->invoke(cb->storage, *future); }
  const char* callback_name() const { return cb->ops->name(cb->storage); }
};

// The done callback by which a future wakes the task awaiting it. It does not need the future
// (the task holds it), so it becomes the task's wake-up entry in the ready queue (asyncio's
// __wakeup), with no handle record. As a future's first callback (a task awaiting it, nearly
// always) it is stored and scheduled without going through the callback ops.
struct TaskWakeup {
  Ref<TaskBase> task;
  struct Invoke {
    static void call(TaskWakeup& w, FutureBase&) { w.task->step(); }
    static void schedule_alone(TaskWakeup&& w, EventLoop& loop) {
      loop.schedule_task_step(std::move(w.task), true);
    }
  };
};
using TaskWakeupOps = detail::DoneCallbackOpsFor<TaskWakeup, TaskWakeup::Invoke>;
static_assert(detail::done_fits_inline<TaskWakeup>);

}  // namespace

void FutureBase::add_task_wakeup(TaskBase* task) {
  if (EDDY_LIKELY(!first_.ops && !first_.scheduled && !more_ && !done())) {
    TaskWakeupOps::construct(first_.storage, TaskWakeup{Ref<TaskBase>(task)});
    first_.ops = &TaskWakeupOps::ops;
    return;
  }
  add_done_callback_as<TaskWakeup, TaskWakeup::Invoke>(TaskWakeup{Ref<TaskBase>(task)});
}

FutureBase::FutureBase(EventLoop& loop) : loop_(&loop) { loop.future_created(); }

FutureBase::~FutureBase() {
  drop_pending_callbacks();
  loop_->future_destroyed();
}

void FutureBase::destroy_self() noexcept {
  if (log_traceback_ && exception_) {
    ExceptionContext ctx(is_task_ ? "Task exception was never retrieved"
                                  : "Future exception was never retrieved",
                         exception_);
    ctx.extra[is_task_ ? "task" : "future"] = describe();
    if (is_task_) ctx.source = static_cast<TaskBase*>(this)->created_at();
    loop_->call_exception_handler(ctx);
  }
  delete this;
}

void FutureBase::release_callback(detail::DoneCallback* cb) noexcept {
  if (cb->ops) {
    const detail::DoneCallbackOps* ops = cb->ops;
    cb->ops = nullptr;
    ops->destroy(cb->storage);
  }
  cb->scheduled = false;
  if (cb->owned_by_node) delete static_cast<detail::DoneCallbackNode*>(cb);
}

bool FutureBase::cancel(std::string message) {
  log_traceback_ = false;
  if (state_ != FutureState::pending) return false;
  finish_cancelled(std::move(message));
  return true;
}

std::exception_ptr FutureBase::exception() {
  if (state_ == FutureState::cancelled) throw CancelledError(cancel_message());
  if (state_ != FutureState::finished) throw InvalidStateError("Exception is not set.");
  log_traceback_ = false;
  return exception_;
}

void FutureBase::check_result_slow() {
  if (state_ == FutureState::cancelled) throw CancelledError(cancel_message());
  if (state_ != FutureState::finished)
    throw InvalidStateError("Result is not set.");  // CPython's C Future (the Python one: "ready")
  log_traceback_ = false;
  if (exception_) std::rethrow_exception(exception_);
}

void FutureBase::check_settable(const char* method) const {
  // A task's outcome is its coroutine's (asyncio's Task refuses both calls, whatever its state).
  if (is_task_) throw RuntimeError(std::string("Task does not support ") + method + " operation");
  if (state_ != FutureState::pending)
    throw InvalidStateError(std::string(method) + ": invalid state " + to_string(state_) + ": " +
                            describe());
}

void FutureBase::set_exception(std::exception_ptr e) {
  check_settable("set_exception");
  if (!e) throw TypeError("set_exception: the exception must not be null");
  finish_with_exception(std::move(e));
}

void FutureBase::finish_with_result() {
  state_ = FutureState::finished;
  schedule_callbacks();
}

void FutureBase::finish_cancelled(std::string message) {
  state_ = FutureState::cancelled;
  set_cancel_message(std::move(message));
  schedule_callbacks();
}

void FutureBase::finish_with_exception(std::exception_ptr e) {
  exception_ = std::move(e);
  state_ = FutureState::finished;
  log_traceback_ = true;
  schedule_callbacks();
}

void FutureBase::set_cancel_message(std::string message) {
  if (rare_ || !message.empty()) rare().cancel_message = std::move(message);
}

bool FutureBase::wait_again(TaskBase&) {
  return false;
}

void FutureBase::reset_to_pending() noexcept {
  assert(can_reset_to_pending());
  state_ = FutureState::pending;
  log_traceback_ = false;
}

void FutureBase::mark_abandoned() noexcept {
  state_ = FutureState::cancelled;
  set_cancel_message("event loop closed");
  drop_pending_callbacks();
}

// Destroys the callbacks not yet handed to a handle.
void FutureBase::drop_pending_callbacks() noexcept {
  if (first_.ops && !first_.scheduled) {
    first_.ops->destroy(first_.storage);
    first_.ops = nullptr;
  }
  while (more_) {
    detail::DoneCallbackNode* cb = more_;
    more_ = cb->next;
    if (cb->ops) cb->ops->destroy(cb->storage);
    delete cb;
  }
}

detail::DoneCallback* FutureBase::new_callback_slot() {
  if (!first_.ops && !first_.scheduled && !more_) return &first_;
  auto* cb = new detail::DoneCallbackNode;
  cb->owned_by_node = true;
  return cb;
}

void FutureBase::append_callback(detail::DoneCallback* cb) {
  if (done()) {
    schedule_one(cb);
    return;
  }
  if (cb == &first_) return;
  detail::DoneCallbackNode** tail = &more_;
  while (*tail) tail = &(*tail)->next;
  *tail = static_cast<detail::DoneCallbackNode*>(cb);
}

void FutureBase::schedule_one(detail::DoneCallback* cb) {
  if (cb->ops->schedule_alone) {
    const detail::DoneCallbackOps* ops = std::exchange(cb->ops, nullptr);
    ops->schedule_alone(cb->storage, *loop_);  // moves the callable out and destroys it here
    release_callback(cb);                      // frees the slot
    return;
  }
  cb->scheduled = true;
  if (cb == &first_) {  // runs from the ready queue with no handle record
    retain();
    loop_->schedule_entry(detail::ReadyEntry::first_done_callback(this));
    return;
  }
  detail::HandleRecord* r = loop_->new_record(SourceLocation{});
  using Ops = detail::CallbackOpsFor<DoneCallbackRunner>;
  Ops::construct(r->storage, DoneCallbackRunner(this, cb));
  r->ops = &Ops::ops;
  loop_->schedule_record(r);
}

void FutureBase::schedule_callbacks() {
  // Detach the list first: the callbacks now belong to their handles (asyncio copies and clears).
  detail::DoneCallbackNode* chain = std::exchange(more_, nullptr);
  if (first_.ops == &TaskWakeupOps::ops) {
    Ref<TaskBase> task = std::move(TaskWakeupOps::get(first_.storage).task);
    first_.ops = nullptr;
    TaskWakeupOps::destroy(first_.storage);
    loop_->schedule_task_step(std::move(task), true);
  } else if (first_.ops && !first_.scheduled) {
    schedule_one(&first_);
  }
  while (chain) {
    detail::DoneCallbackNode* next = chain->next;
    chain->next = nullptr;
    schedule_one(chain);
    chain = next;
  }
}

std::size_t FutureBase::remove_matching(const void* type_key, const void* value) {
  std::size_t removed = 0;
  auto matches = [&](const detail::DoneCallback* cb) {
    return cb->ops && !cb->scheduled && cb->ops->type_key == type_key &&
           cb->ops->equals(cb->storage, value);
  };
  if (matches(&first_)) {
    first_.ops->destroy(first_.storage);
    first_.ops = nullptr;
    ++removed;
  }
  for (detail::DoneCallbackNode** p = &more_; *p;) {
    if (matches(*p)) {
      detail::DoneCallbackNode* dead = *p;
      *p = dead->next;
      dead->ops->destroy(dead->storage);
      delete dead;
      ++removed;
    } else {
      p = &(*p)->next;
    }
  }
  return removed;
}

const char* FutureBase::fixed_description() const noexcept {
  if (is_task_) return nullptr;
  switch (state_) {
    case FutureState::pending:
      return "<Future pending>";
    case FutureState::cancelled:
      return "<Future cancelled>";
    case FutureState::finished:
      return exception_ ? nullptr : "<Future finished>";
  }
  return nullptr;
}

std::string FutureBase::describe() const {
  if (const char* fixed = fixed_description()) return fixed;
  // Plain concatenation: the inspector describes every awaited future at each snapshot.
  std::string text = state_ == FutureState::pending     ? "<Future pending"
                     : state_ == FutureState::cancelled ? "<Future cancelled"
                                                        : "<Future finished";
  if (state_ == FutureState::finished && exception_) {
    ExceptionContext c("", exception_);
    text += " exception=";
    text += c.exception_text();
  }
  text += '>';
  return text;
}

}  // namespace eddy
