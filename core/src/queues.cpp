// The waiting rules of asyncio's queues: a woken getter or putter is popped from its queue; one
// that fails (is cancelled) after being woken wakes the next one if its condition still holds,
// so a cancellation never strands an item or a free slot.
#include "eddy/queues.hpp"

namespace eddy::detail {

// One wait in a queue of waiters. A woken waiter that fails (is cancelled) passes the wake-up on
// when what it waited for is still there. (Kept out of the callers' loops: Emscripten 3.1.6
// mishandles an exception raised at a co_await inside a try inside a loop.)
Coro<void> QueueCore::wait_turn(Waiters& waiters, bool putting) {
  Future<void> turn = waiters.add(bound_loop("Queue"));
  std::exception_ptr error;
  try {
    co_await turn;
  } catch (...) {
    error = std::current_exception();
  }
  if (!error) co_return;
  turn.cancel();
  waiters.remove(turn);
  if (!turn.cancelled() && (putting ? !full() : !empty())) waiters.pop_and_wake();
  std::rethrow_exception(error);
}

Coro<void> QueueCore::next_put_turn() {
  if (shutdown_) throw QueueShutDown();
  return wait_turn(putters_, true);
}

Coro<void> QueueCore::next_get_turn() {
  if (shutdown_) throw QueueShutDown();
  return wait_turn(getters_, false);
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
  if (unfinished_ > 0) co_await finished_.wait();
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
