// The waiting rules of asyncio's queues: a woken getter or putter is popped from its queue; one
// that fails (is cancelled) after being woken wakes the next one if its condition still holds,
// so a cancellation never strands an item or a free slot.
#include "eddy/queues.hpp"

namespace eddy::detail {

// A woken waiter that fails (is cancelled) passes the wake-up on when what it waited for is
// still there; one cancelled before its wake-up only leaves the line.
void QueueTurn::failed() noexcept {
  turn_.cancel();
  waiters_->remove(turn_);
  if (!turn_.cancelled() && (putting_ ? !queue_->full() : !queue_->empty()))
    waiters_->pop_and_wake();
}

QueueTurn QueueCore::next_put_turn() {
  if (shutdown_) throw QueueShutDown();
  return QueueTurn(*this, putters_, true, putters_.add(bound_loop("Queue")));
}

QueueTurn QueueCore::next_get_turn() {
  if (shutdown_) throw QueueShutDown();
  return QueueTurn(*this, getters_, false, getters_.add(bound_loop("Queue")));
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
