// Lock, Event, Condition, Semaphore, BoundedSemaphore and Barrier, with asyncio's wake-up rules:
// a waiter that is cancelled after being woken passes its turn on, and a waiter's future is
// removed from the queue by the waiter itself, whatever way its wait ended.
#include "eddy/locks.hpp"

#include <algorithm>

namespace eddy {
namespace detail {

EventLoop& LoopBound::bound_loop(const char* what) {
  EventLoop& loop = get_running_loop();
  if (!loop_) loop_ = &loop;
  if (loop_ != &loop) throw RuntimeError(std::string(what) + " is bound to a different event loop");
  return loop;
}

Future<void> Waiters::add(EventLoop& loop) {
  Future<void> f = loop.create_future<void>();
  queue_.push_back(f);
  return f;
}

Future<void> Waiters::add(EventLoop& loop, const SourceLocation& call) {
  Future<void> f = make_call_waiter(loop, call);
  add(f);
  return f;
}

void Waiters::remove(const FutureBase* f) noexcept {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [f](const Future<void>& w) { return w.base() == f; });
  if (it != queue_.end()) queue_.erase(it);
}

bool Waiters::wake_first() {
  return wake(1) == 1;
}

void Waiters::wake_head() {
  if (!queue_.empty() && !queue_.front().done()) queue_.front().set_result();
}

void Waiters::pop_and_wake_some() {
  while (!queue_.empty()) {
    Future<void> f = std::move(queue_.front());
    queue_.pop_front();
    if (!f.done()) {
      f.set_result();
      return;
    }
  }
}

std::size_t Waiters::wake(std::size_t n) {
  std::size_t woken = 0;
  for (auto& f : queue_) {
    if (woken >= n) break;
    if (!f.done()) {
      f.set_result();
      ++woken;
    }
  }
  return woken;
}

bool Waiters::any_live() const noexcept {
  return std::any_of(queue_.begin(), queue_.end(),
                     [](const Future<void>& f) { return !f.cancelled(); });
}

}  // namespace detail

// ---- Lock
// -----------------------------------------------------------------------------------------

// acquire() and hold() awaited inline: a free lock is taken at once; otherwise the one wait is
// made in the awaiting frame, with acquire()'s rules when it ends.
struct Lock::Quick {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>& waiting) {
    Lock& lock = call.object<Lock>();
    if (!lock.locked_ && !lock.waiters_.any_live()) return detail::QuickStart::ready;
    static constexpr SourceLocation kCall{__FILE__, "eddy::Lock::acquire", __LINE__};
    waiting = lock.waiters_.add(lock.bound_loop("Lock"), kCall).state();
    return detail::QuickStart::wait;
  }
  static void stop_waiting(detail::QuickCall& call, FutureBase& waited, bool failed) noexcept {
    Lock& lock = call.object<Lock>();
    lock.waiters_.remove(&waited);
    // Woken and cancelled in the same pass: the lock is free, hand it to the next in line.
    if (failed && !lock.locked_) lock.wake_up_first();
  }
  static void acquired(detail::QuickCall& call) { call.object<Lock>().locked_ = true; }
  static Held<Lock> held(detail::QuickCall& call) {
    acquired(call);
    return Held<Lock>(call.object<Lock>());
  }
  static Coro<void> acquire_coroutine(detail::QuickCall&& call) {
    return call.object<Lock>().acquire_coroutine();
  }
  static Coro<Held<Lock>> hold_coroutine(detail::QuickCall&& call) {
    return call.object<Lock>().hold_coroutine();
  }
  static constexpr detail::QuickOps<void> acquire{start, stop_waiting, acquired, acquire_coroutine};
  static constexpr detail::QuickOps<Held<Lock>> hold{start, stop_waiting, held, hold_coroutine};
};

Coro<void> Lock::acquire() {
  return Coro<void>::quick(Quick::acquire, detail::QuickCall::unowned(this));
}

Coro<Held<Lock>> Lock::hold() {
  return Coro<Held<Lock>>::quick(Quick::hold, detail::QuickCall::unowned(this));
}

Coro<void> Lock::acquire_coroutine() {
  if (!locked_ && !waiters_.any_live()) {
    locked_ = true;
    co_return;
  }
  Future<void> fut = waiters_.add(bound_loop("Lock"));
  std::exception_ptr error;
  try {
    co_await detail::awaiting_as("eddy::Lock::acquire", fut);
  } catch (...) {
    error = std::current_exception();
  }
  waiters_.remove(fut);
  if (error) {
    // Woken and cancelled in the same pass: the lock is free, hand it to the next in line.
    if (!locked_) wake_up_first();
    std::rethrow_exception(error);
  }
  locked_ = true;
}

void Lock::release() {
  if (!locked_) throw RuntimeError("Lock is not acquired.");
  locked_ = false;
  wake_up_first();
}

void Lock::wake_up_first() {
  waiters_.wake_head();
}

Coro<Held<Lock>> Lock::hold_coroutine() {
  co_await detail::awaiting_as("eddy::Lock::hold", acquire());
  co_return Held<Lock>(*this);
}

std::string Lock::describe() const {
  std::string s = locked_ ? "<Lock [locked" : "<Lock [unlocked";
  if (!waiters_.empty()) s += ", waiters:" + std::to_string(waiters_.size());
  return s + "]>";
}

// ---- Event
// ----------------------------------------------------------------------------------------

// wait() awaited inline: at once when set, else the one wait in the awaiting frame.
struct Event::Quick {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>& waiting) {
    Event& event = call.object<Event>();
    if (event.value_) return detail::QuickStart::ready;
    static constexpr SourceLocation kCall{__FILE__, "eddy::Event::wait", __LINE__};
    waiting = event.waiters_.add(event.bound_loop("Event"), kCall).state();
    return detail::QuickStart::wait;
  }
  static void stop_waiting(detail::QuickCall& call, FutureBase& waited, bool) noexcept {
    call.object<Event>().waiters_.remove(&waited);
  }
  static void done(detail::QuickCall&) {}
  static Coro<void> coroutine(detail::QuickCall&& call) {
    return call.object<Event>().wait_coroutine();
  }
  static constexpr detail::QuickOps<void> wait{start, stop_waiting, done, coroutine};
};

Coro<void> Event::wait() {
  return Coro<void>::quick(Quick::wait, detail::QuickCall::unowned(this));
}

Coro<void> Event::wait_coroutine() {
  if (value_) co_return;
  Future<void> fut = waiters_.add(bound_loop("Event"));
  std::exception_ptr error;
  try {
    co_await detail::awaiting_as("eddy::Event::wait", fut);
  } catch (...) {
    error = std::current_exception();
  }
  waiters_.remove(fut);
  if (error) std::rethrow_exception(error);
}

void Event::set() {
  if (value_) return;
  value_ = true;
  waiters_.wake(waiters_.size());
}

namespace {

// Acquires `lock`, storing a CancelledError in `cancelled` and any other error in `failed`
// instead of raising them. (A separate coroutine because Emscripten 3.1.6 mishandles an
// exception raised at a co_await inside a try inside a loop.)
Coro<void> acquire_noting_errors(Lock& lock, std::exception_ptr* cancelled,
                                 std::exception_ptr* failed) {
  try {
    co_await detail::awaiting_as("eddy::Condition::wait", lock.acquire());
  } catch (const CancelledError&) {
    *cancelled = std::current_exception();
  } catch (...) {
    *failed = std::current_exception();
  }
}

}  // namespace

// ---- Condition
// ------------------------------------------------------------------------------------

Coro<Held<Condition>> Condition::hold() {
  co_await detail::awaiting_as("eddy::Condition::hold", acquire());
  co_return Held<Condition>(*this);
}

Coro<void> Condition::wait() {
  if (!locked()) throw RuntimeError("cannot wait on un-acquired lock");
  EventLoop& loop = bound_loop("Condition");
  release();
  std::exception_ptr error;
  {
    Future<void> fut = waiters_.add(loop);
    try {
      co_await detail::awaiting_as("eddy::Condition::wait", fut);
    } catch (...) {
      error = std::current_exception();
    }
    waiters_.remove(fut);
  }
  // The lock is reacquired even when the wait is cancelled; the latest cancellation wins. Any
  // other error there ends the attempt, without the lock, as asyncio only retries cancellation.
  std::exception_ptr cancelled;
  std::exception_ptr failed;
  for (;;) {
    std::exception_ptr this_time;
    co_await detail::awaiting_as("eddy::Condition::wait",
                                 acquire_noting_errors(*lock_, &this_time, &failed));
    if (!this_time || failed) break;
    cancelled = this_time;
  }
  if (cancelled) error = cancelled;
  if (failed) error = failed;
  if (error) {
    // We may have been notified before the error reached us (while waiting, or while taking
    // the lock back): notify someone else instead, as asyncio 3.13 does. A spurious wake-up is
    // allowed; a lost one is not.
    wake(1);
    std::rethrow_exception(error);
  }
}

void Condition::notify(std::size_t n) {
  if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
  wake(n);
}

// ---- Semaphore
// ------------------------------------------------------------------------------------

Semaphore::Semaphore(int value) : value_(value) {
  if (value < 0) throw ValueError("Semaphore initial value must be >= 0");
}

bool Semaphore::locked() const noexcept {
  // Waiters that are still queued keep their turn even if a release made value_ positive.
  return value_ == 0 || waiters_.any_live();
}

// acquire() and hold() awaited inline: a free unit is taken at once (in `start`); otherwise the
// one wait is made in the awaiting frame (the waker takes the unit for us), with acquire()'s
// rules when it ends.
struct Semaphore::Quick {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>& waiting) {
    Semaphore& sem = call.object<Semaphore>();
    if (!sem.locked()) {
      --sem.value_;
      return detail::QuickStart::ready;
    }
    static constexpr SourceLocation kCall{__FILE__, "eddy::Semaphore::acquire", __LINE__};
    waiting = sem.waiters_.add(sem.bound_loop(sem.kind()), kCall).state();
    return detail::QuickStart::wait;
  }
  static void stop_waiting(detail::QuickCall& call, FutureBase& waited, bool failed) noexcept {
    call.object<Semaphore>().end_wait(waited, failed);
  }
  static void acquired(detail::QuickCall&) {}
  static Held<Semaphore> held(detail::QuickCall& call) {
    return Held<Semaphore>(call.object<Semaphore>());
  }
  static Coro<void> acquire_coroutine(detail::QuickCall&& call) {
    return call.object<Semaphore>().acquire_coroutine();
  }
  static Coro<Held<Semaphore>> hold_coroutine(detail::QuickCall&& call) {
    return call.object<Semaphore>().hold_coroutine();
  }
  static constexpr detail::QuickOps<void> acquire{start, stop_waiting, acquired, acquire_coroutine};
  static constexpr detail::QuickOps<Held<Semaphore>> hold{start, stop_waiting, held,
                                                          hold_coroutine};
};

Coro<void> Semaphore::acquire() {
  return Coro<void>::quick(Quick::acquire, detail::QuickCall::unowned(this));
}

Coro<Held<Semaphore>> Semaphore::hold() {
  return Coro<Held<Semaphore>>::quick(Quick::hold, detail::QuickCall::unowned(this));
}

Coro<void> Semaphore::acquire_coroutine() {
  if (!locked()) {
    --value_;
    co_return;
  }
  Future<void> fut = waiters_.add(bound_loop(kind()));
  std::exception_ptr error;
  try {
    co_await detail::awaiting_as("eddy::Semaphore::acquire", fut);
  } catch (...) {
    error = std::current_exception();
  }
  end_wait(*fut.base(), static_cast<bool>(error));
  if (error) std::rethrow_exception(error);
}

// How a wait in acquire() ends, however it ended (`failed`: cancelled).
void Semaphore::end_wait(FutureBase& waited, bool failed) noexcept {
  waiters_.remove(&waited);
  // Woken (value_ already taken for us) but cancelled before running: give the unit back.
  if (failed && waited.done() && !waited.cancelled()) ++value_;
  // Waiters that arrived meanwhile had to queue behind us: wake as many as value_ allows.
  try {
    while (value_ > 0 && wake_up_next()) {
    }
  } catch (...) {
    // Setting a pending future's result cannot fail.
  }
}

void Semaphore::release() {
  ++value_;
  wake_up_next();
}

bool Semaphore::wake_up_next() {
  if (waiters_.empty()) return false;
  if (!waiters_.wake_first()) return false;
  --value_;  // the woken waiter's unit
  return true;
}

Coro<Held<Semaphore>> Semaphore::hold_coroutine() {
  co_await detail::awaiting_as("eddy::Semaphore::hold", acquire());
  co_return Held<Semaphore>(*this);
}

void BoundedSemaphore::release() {
  if (value_ >= bound_) throw ValueError("BoundedSemaphore released too many times");
  Semaphore::release();
}

// ---- Barrier
// --------------------------------------------------------------------------------------

Barrier::Barrier(int parties) : parties_(parties) {
  if (parties < 1) throw ValueError("parties must be > 0");
}

Coro<void> Barrier::block() {
  // Wait while the barrier drains or resets from a previous cycle.
  co_await detail::awaiting_as("eddy::Barrier::wait", cond_.wait_for([this] {
    return state_ != State::draining && state_ != State::resetting;
  }));
  if (state_ == State::broken) throw BrokenBarrierError("Barrier aborted");
}

Coro<void> Barrier::wait_released() {
  co_await detail::awaiting_as("eddy::Barrier::wait",
                               cond_.wait_for([this] { return state_ != State::filling; }));
  if (state_ == State::broken || state_ == State::resetting)
    throw BrokenBarrierError("Abort or reset of barrier");
}

void Barrier::exit() {
  if (count_ == 0) {
    if (state_ == State::resetting || state_ == State::draining) state_ = State::filling;
    cond_.notify_all();
  }
}

Coro<int> Barrier::wait() {
  co_await detail::awaiting_as("eddy::Barrier::wait", cond_.acquire());
  std::exception_ptr error;
  int index = 0;
  bool counted = false;
  try {
    co_await detail::awaiting_as("eddy::Barrier::wait", block());
    index = count_++;
    counted = true;
    if (index + 1 == parties_) {
      state_ = State::draining;  // the last to arrive releases everyone
      cond_.notify_all();
    } else {
      co_await detail::awaiting_as("eddy::Barrier::wait", wait_released());
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (counted) {
    --count_;
    exit();
  }
  cond_.release();
  if (error) std::rethrow_exception(error);
  co_return index;
}

Coro<void> Barrier::reset() {
  co_await detail::awaiting_as("eddy::Barrier::reset", cond_.acquire());
  if (count_ > 0)
    state_ = State::resetting;
  else
    state_ = State::filling;
  cond_.notify_all();
  cond_.release();
}

Coro<void> Barrier::abort() {
  co_await detail::awaiting_as("eddy::Barrier::abort", cond_.acquire());
  state_ = State::broken;
  cond_.notify_all();
  cond_.release();
}

}  // namespace eddy
