// asyncio's synchronisation primitives: Lock, Event, Condition, Semaphore, BoundedSemaphore and
// Barrier. Each binds to the running loop the first time it has to wait (asyncio's
// _LoopBoundMixin), keeps its waiters in FIFO order, and hands a wake-up on when the waiter it
// was meant for was cancelled, so a cancellation never swallows another task's turn.
//
//   eddy::Lock lock;
//   {
//     auto held = co_await lock.hold();   // `async with lock:`; released when `held` goes
//     ...
//   }
//   co_await lock.acquire(); ...; lock.release();   // or by hand
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <utility>

#include "eddy/errors.hpp"
#include "eddy/task.hpp"

namespace eddy {

// asyncio.BrokenBarrierError.
class BrokenBarrierError : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

namespace detail {

// Binds a primitive to the first loop it waits on (RuntimeError on any other loop after that).
class LoopBound {
 public:
  LoopBound() = default;
  LoopBound(const LoopBound&) = delete;
  LoopBound& operator=(const LoopBound&) = delete;

 protected:
  EventLoop& bound_loop(const char* what);

 private:
  EventLoop* loop_ = nullptr;
};

// A FIFO of waiter futures (asyncio's collections.deque of futures).
class Waiters {
 public:
  Future<void> add(EventLoop& loop);
  // A waiter for a call awaited without a frame, named `call` in await chains.
  Future<void> add(EventLoop& loop, const SourceLocation& call);
  void add(Future<void> waiter) { queue_.push_back(std::move(waiter)); }
  void remove(const Future<void>& f) noexcept { remove(f.base()); }
  void remove(const FutureBase* f) noexcept;
  // Sets the first waiter that is not done; false if there was none.
  bool wake_first();
  // Sets the head waiter unless it is done already (woken, or cancelled: its task then hands the
  // turn on when it sees the cancellation, as asyncio's Lock._wake_up_first relies on).
  void wake_head();
  // Queue style: pops waiters until one that is not done, and sets it.
  void pop_and_wake() {
    if (!queue_.empty()) pop_and_wake_some();
  }
  // Sets up to `n` waiters that are not done, in order; returns how many.
  std::size_t wake(std::size_t n);
  bool any_live() const noexcept;
  std::size_t size() const noexcept { return queue_.size(); }
  bool empty() const noexcept { return queue_.empty(); }

 private:
  void pop_and_wake_some();
  std::deque<Future<void>> queue_;
};

}  // namespace detail

// Releases a held primitive when it goes out of scope (asyncio's `async with`).
template <class Primitive>
class [[nodiscard]] Held {
 public:
  explicit Held(Primitive& p) noexcept : p_(&p) {}
  Held(Held&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Held& operator=(Held&&) = delete;
  // A destructor cannot throw: a release that fails here (the primitive was already released
  // by hand) is ignored. Call release() to see asyncio's error from `async with`'s exit.
  ~Held() {
    try {
      release();
    } catch (...) {
    }
  }
  // Releases early, as asyncio's __aexit__ does: the primitive's error (RuntimeError "Lock is
  // not acquired.", ValueError "BoundedSemaphore released too many times") reaches the caller.
  // The destructor then does nothing.
  void release() {
    if (p_) std::exchange(p_, nullptr)->release();
  }

 private:
  Primitive* p_;
};

// asyncio.Lock: not reentrant; FIFO; release() of an unlocked lock is a RuntimeError.
class Lock : public detail::LoopBound {
 public:
  Coro<void> acquire();
  void release();
  bool locked() const noexcept { return locked_; }
  Coro<Held<Lock>> hold();
  std::string describe() const;  // <Lock [locked, waiters:1]>

 private:
  struct Quick;  // acquire() and hold() without a frame (detail::QuickOps)
  Coro<void> acquire_coroutine();
  Coro<Held<Lock>> hold_coroutine();
  void wake_up_first();
  detail::Waiters waiters_;
  bool locked_ = false;
};

// asyncio.Event.
class Event : public detail::LoopBound {
 public:
  Coro<void> wait();
  void set();
  void clear() noexcept { value_ = false; }
  bool is_set() const noexcept { return value_; }

 private:
  struct Quick;  // wait() without a frame (detail::QuickOps)
  Coro<void> wait_coroutine();
  detail::Waiters waiters_;
  bool value_ = false;
};

// asyncio.Condition: with its own Lock, or sharing one given at construction.
class Condition : public detail::LoopBound {
 public:
  Condition() : lock_(&own_lock_) {}
  explicit Condition(Lock& lock) : lock_(&lock) {}

  Coro<void> acquire() { return lock_->acquire(); }
  void release() { lock_->release(); }
  bool locked() const noexcept { return lock_->locked(); }
  Coro<Held<Condition>> hold();
  // Releases the lock, waits for a notify, reacquires the lock (even when cancelled) and
  // returns. RuntimeError if the lock is not held.
  Coro<void> wait();
  // Waits until `predicate()` is truthy; returns its last value.
  template <class Predicate>
  auto wait_for(Predicate predicate) -> Coro<decltype(predicate())>;
  // Wakes up to `n` waiters. RuntimeError if the lock is not held.
  void notify(std::size_t n = 1);
  void notify_all() { notify(waiters_.size()); }

 private:
  void wake(std::size_t n) { waiters_.wake(n); }
  Lock own_lock_;
  Lock* lock_;
  detail::Waiters waiters_;
};

// asyncio.Semaphore: ValueError for a negative initial value.
class Semaphore : public detail::LoopBound {
 public:
  explicit Semaphore(int value = 1);
  Coro<void> acquire();
  virtual void release();
  // The class's name, for errors ("BoundedSemaphore is bound to a different event loop").
  virtual const char* kind() const noexcept { return "Semaphore"; }
  // True if acquire() would wait.
  bool locked() const noexcept;
  Coro<Held<Semaphore>> hold();
  int value() const noexcept { return value_; }
  virtual ~Semaphore() = default;

 protected:
  struct Quick;  // acquire() and hold() without a frame (detail::QuickOps)
  Coro<void> acquire_coroutine();
  Coro<Held<Semaphore>> hold_coroutine();
  bool wake_up_next();
  void end_wait(FutureBase& waited, bool failed) noexcept;
  detail::Waiters waiters_;
  int value_;
};

// asyncio.BoundedSemaphore: release() past the initial value is a ValueError.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(int value = 1) : Semaphore(value), bound_(value) {}
  void release() override;
  const char* kind() const noexcept override { return "BoundedSemaphore"; }

 private:
  int bound_;
};

// asyncio.Barrier: `parties` tasks meet at wait(); each gets its arrival index.
class Barrier : public detail::LoopBound {
 public:
  explicit Barrier(int parties);
  // Waits until `parties` tasks are waiting; BrokenBarrierError if the barrier is (or gets)
  // aborted or reset meanwhile.
  Coro<int> wait();
  // Back to the empty state; tasks waiting get BrokenBarrierError.
  Coro<void> reset();
  // Puts the barrier in the broken state: waiting and future wait() calls fail.
  Coro<void> abort();
  int parties() const noexcept { return parties_; }
  int n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
  bool broken() const noexcept { return state_ == State::broken; }

 private:
  enum class State { filling, draining, resetting, broken };
  Coro<void> block();
  Coro<void> wait_released();
  void exit();
  Condition cond_;
  int parties_;
  int count_ = 0;
  State state_ = State::filling;
};

template <class Predicate>
auto Condition::wait_for(Predicate predicate) -> Coro<decltype(predicate())> {
  auto result = predicate();
  while (!result) {
    co_await detail::awaiting_as("eddy::Condition::wait_for", wait());
    result = predicate();
  }
  co_return result;
}

}  // namespace eddy
