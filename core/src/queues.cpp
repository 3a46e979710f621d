// The waiting rules of asyncio's queues: a woken getter or putter is popped from its queue; one
// that fails (is cancelled) after being woken wakes the next one if its condition still holds,
// so a cancellation never strands an item or a free slot.
#include "eddy/queues.hpp"

namespace eddy::detail {

// A woken waiter that fails (is cancelled) passes the wake-up on when what it waited for is
// still there; one cancelled before its wake-up only leaves the line.
void QueueCore::turn_failed(FutureBase& turn, bool putting) noexcept {
  turn.cancel();
  Waiters& waiters = putting ? putters_ : getters_;
  waiters.remove(&turn);
  if (!turn.cancelled() && (putting ? !full() : !empty())) waiters.pop_and_wake();
}

void QueueTurn::failed() noexcept {
  queue_->turn_failed(*turn_.base(), putting_);
}

// A getter's turn. Woken by a put, its task may find the item taken by another before it runs
// (a get_nowait, or a get that found it there); it then goes back to the end of the line without
// resuming, where asyncio's get() loop would append a new waiter.
// `call` names get() in await chains when it waits in the caller's frame (the coroutine form's
// frame names itself).
class GetterFuture final : public CallWaiter {
 public:
  GetterFuture(EventLoop& loop, QueueCore& queue, const SourceLocation* call)
      : CallWaiter(loop, call), queue_(&queue) {
    rechecks_on_wake_ = true;
  }
  bool wait_again(TaskBase& task) override {
    if (state() != FutureState::finished || failed() || !queue_->empty() || queue_->shutdown_)
      return false;
    rearm();
    queue_->getters_.add(Future<void>(Ref<FutureBase>(this)));
    add_task_wakeup(&task);
    return true;
  }

 private:
  QueueCore* queue_;
};

QueueTurn QueueCore::next_put_turn() {
  if (shutdown_) throw QueueShutDown();
  return QueueTurn(*this, true, putters_.add(bound_loop("Queue")));
}

Future<void> QueueCore::new_get_turn(bool in_callers_frame) {
  if (shutdown_) throw QueueShutDown();
  static constexpr SourceLocation kGet{__FILE__, "eddy::Queue::get", __LINE__};
  EventLoop& loop = bound_loop("Queue");
  Ref<FutureBase> turn = std::move(spare_get_turn_);  // kept by get() awaited inline only
  if (!in_callers_frame || !turn || &turn->get_loop() != &loop ||
      !static_cast<GetterFuture*>(turn.get())->rearm_if_unused())
    turn = Ref<FutureBase>(new GetterFuture(loop, *this, in_callers_frame ? &kGet : nullptr));
  Future<void> waiter(std::move(turn));
  getters_.add(waiter);
  return waiter;
}

QueueTurn QueueCore::next_get_turn() {
  return QueueTurn(*this, false, new_get_turn(false));
}

void QueueCore::check_put() const {
  if (shutdown_) throw QueueShutDown();
  if (full()) throw QueueFull();
}

void QueueCore::check_get() const {
  if (count_ == 0) {
    if (shutdown_) throw QueueShutDown();
    throw QueueEmpty();
  }
}

void QueueCore::added() {
  ++count_;
  ++unfinished_;
  finished_.clear();
  getters_.pop_and_wake();
}

void QueueCore::removed() {
  --count_;
  putters_.pop_and_wake();
}

void QueueCore::task_done() {
  if (unfinished_ == 0) throw ValueError("task_done() called too many times");
  if (--unfinished_ == 0) finished_.set();
}

Coro<void> QueueCore::join() {
  if (unfinished_ > 0) co_await detail::awaiting_as("eddy::Queue::join", finished_.wait());
}

void QueueCore::shut_down(std::size_t dropped) {
  shutdown_ = true;
  if (dropped > 0) {
    count_ = 0;
    unfinished_ = unfinished_ > dropped ? unfinished_ - dropped : 0;
    if (unfinished_ == 0) finished_.set();
  }
  // Every waiter re-checks its condition and sees the shutdown.
  while (!getters_.empty()) getters_.pop_and_wake();
  while (!putters_.empty()) putters_.pop_and_wake();
}

}  // namespace eddy::detail
