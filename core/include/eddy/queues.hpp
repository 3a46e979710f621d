// asyncio's queues: Queue (FIFO), LifoQueue and PriorityQueue (smallest first), with put/get
// that wait, the _nowait forms that raise QueueFull/QueueEmpty, task_done/join, and shutdown
// (QueueShutDown). A maxsize <= 0 means unbounded, as in asyncio. The waiting rules live in
// QueueCore (queues.cpp); the templates only hold the items.
//
//   eddy::Queue<int> q(10);
//   co_await q.put(1);
//   int x = co_await q.get();
//   q.task_done();
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "eddy/locks.hpp"

namespace eddy {

// asyncio.QueueEmpty: get_nowait() on an empty queue.
class QueueEmpty : public std::runtime_error {
 public:
  QueueEmpty() : std::runtime_error("queue is empty") {}
};
// asyncio.QueueFull: put_nowait() on a full queue.
class QueueFull : public std::runtime_error {
 public:
  QueueFull() : std::runtime_error("queue is full") {}
};
// asyncio.QueueShutDown: put on a shut-down queue, or get once it is shut down and empty.
class QueueShutDown : public std::runtime_error {
 public:
  QueueShutDown() : std::runtime_error("queue is shut down") {}
};

namespace detail {

class QueueCore;
class GetterFuture;

// One wait for a queue's turn (an item to get, a slot to put into): awaits a waiter future in the
// caller's own frame, and when that wait fails (the task was cancelled) takes the waiter out and
// passes a wake-up it got on to the next waiter. An awaitable, not a coroutine, so a get or put
// that waits costs no frame of its own.
class QueueTurn {
 public:
  using eddy_awaitable = void;
  QueueTurn(QueueCore& queue, bool putting, Future<void> turn) noexcept
      : queue_(&queue), turn_(std::move(turn)), putting_(putting) {}

  struct Awaiter;
  Awaiter make_awaiter(PromiseBase* awaiting, SourceLocation where);

 private:
  void failed() noexcept;

  QueueCore* queue_;
  Future<void> turn_;
  bool putting_;
};

struct QueueTurn::Awaiter {
  FutureAwaiter<void> wait;
  QueueTurn turn;
  bool await_ready() const noexcept { return wait.await_ready(); }
  void await_suspend(coro::coroutine_handle<> h) {
    try {
      wait.await_suspend(h);
    } catch (...) {
      turn.failed();  // not in a task, or another loop's: the waiter never waited
      throw;
    }
  }
  void await_resume() {
    try {
      wait.await_resume();
    } catch (...) {
      turn.failed();
      throw;
    }
  }
};

inline QueueTurn::Awaiter QueueTurn::make_awaiter(PromiseBase* awaiting, SourceLocation where) {
  Ref<FutureBase> f = turn_.state();
  return Awaiter{FutureAwaiter<void>{std::move(f), awaiting, where}, std::move(*this)};
}

// Everything about a queue but its items: sizes, waiting getters and putters, unfinished tasks.
class QueueCore : public LoopBound {
 public:
  explicit QueueCore(long maxsize) : maxsize_(maxsize) {}
  long maxsize() const noexcept { return maxsize_; }
  std::size_t qsize() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  bool full() const noexcept {
    return maxsize_ > 0 && count_ >= static_cast<std::size_t>(maxsize_);
  }
  // ValueError when called more times than items were put.
  void task_done();
  // Waits until every item put has been marked task_done().
  Coro<void> join();
  std::size_t unfinished_tasks() const noexcept { return unfinished_; }
  bool is_shutdown() const noexcept { return shutdown_; }

 protected:
  friend class QueueTurn;
  friend class GetterFuture;
  // One wait for a free slot / an item (QueueShutDown at once if shut down); callers loop on
  // full() / empty(). A getter's wait re-checks on its wake-up (FutureBase::rechecks_on_wake),
  // so it ends with an item or the shutdown.
  QueueTurn next_put_turn();
  QueueTurn next_get_turn();
  Future<void> new_get_turn(bool in_callers_frame);  // (true: for get() awaited inline)
  // A wait that failed (its task was cancelled): out of the line, and a wake-up it got handed on.
  void turn_failed(FutureBase& turn, bool putting) noexcept;
  // A get() awaited inline got its item: its turn is kept for the next one that waits, which
  // takes it if nothing else holds it by then (a getter waits once per item a consumer outruns).
  void keep_spare_get_turn(FutureBase& turn) noexcept { spare_get_turn_ = Ref<FutureBase>(&turn); }
  void check_put() const;  // QueueShutDown, QueueFull
  void check_get() const;  // QueueShutDown (shut down and empty), QueueEmpty
  void added();            // after an item went in
  void removed();          // after an item came out
  // Marks the queue shut down; `dropped` items were discarded by an immediate shutdown.
  void shut_down(std::size_t dropped);

 private:
  Waiters getters_;
  Waiters putters_;
  Ref<FutureBase> spare_get_turn_;
  Event finished_;
  std::size_t count_ = 0;
  std::size_t unfinished_ = 0;
  long maxsize_;
  bool shutdown_ = false;
};

template <class T>
struct FifoStore {
  std::deque<T> items;
  void push(T&& v) { items.push_back(std::move(v)); }
  T pop() {
    T v = std::move(items.front());
    items.pop_front();
    return v;
  }
  void clear() { items.clear(); }
};

template <class T>
struct LifoStore {
  std::vector<T> items;
  void push(T&& v) { items.push_back(std::move(v)); }
  T pop() {
    T v = std::move(items.back());
    items.pop_back();
    return v;
  }
  void clear() { items.clear(); }
};

// A binary heap giving the smallest item first (Python's heapq); ties in no particular order.
template <class T, class Compare>
struct HeapStore {
  std::vector<T> items;
  struct Greater {
    bool operator()(const T& a, const T& b) const { return Compare{}(b, a); }
  };
  void push(T&& v) {
    items.push_back(std::move(v));
    std::push_heap(items.begin(), items.end(), Greater{});
  }
  T pop() {
    std::pop_heap(items.begin(), items.end(), Greater{});
    T v = std::move(items.back());
    items.pop_back();
    return v;
  }
  void clear() { items.clear(); }
};

}  // namespace detail

template <class T, class Store>
class BasicQueue : public detail::QueueCore {
 public:
  explicit BasicQueue(long maxsize = 0) : QueueCore(maxsize) {}

  // Waits while the queue is full; QueueShutDown if it is (or gets) shut down.
  Coro<void> put(T item) {
    while (full()) co_await detail::awaiting_as("eddy::Queue::put", next_put_turn());
    put_nowait(std::move(item));
  }
  void put_nowait(T item) {
    check_put();
    store_.push(std::move(item));
    added();
  }
  // Waits while the queue is empty; QueueShutDown once it is shut down and empty. Awaited inline
  // it needs no coroutine frame (detail::QuickOps): it takes an item there, or waits for its turn
  // in the awaiting frame. The queue is looked at when the call is awaited.
  Coro<T> get() { return Coro<T>::quick(QuickGet::ops, detail::QuickCall::unowned(this)); }
  T get_nowait() {
    check_get();
    T v = store_.pop();
    removed();
    return v;
  }
  // Further puts raise QueueShutDown; waiting getters and putters are woken to see it. With
  // `immediate`, the items left are dropped (and count as done for join()).
  void shutdown(bool immediate = false) {
    std::size_t dropped = 0;
    if (immediate) {
      dropped = qsize();
      store_.clear();
    }
    shut_down(dropped);
  }

 private:
  struct QuickGet {
    static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>& waiting) {
      BasicQueue& queue = call.object<BasicQueue>();
      if (!queue.empty()) return detail::QuickStart::ready;
      waiting = queue.new_get_turn(true).take_state();
      return detail::QuickStart::wait;
    }
    static void stop_waiting(detail::QuickCall& call, FutureBase& turn, bool failed) noexcept {
      if (failed)
        call.object<BasicQueue>().turn_failed(turn, false);
      else
        call.object<BasicQueue>().keep_spare_get_turn(turn);
    }
    // (Woken with the queue still empty only when it was shut down: get_nowait raises that.)
    static T finish(detail::QuickCall& call) { return call.object<BasicQueue>().get_nowait(); }
    static Coro<T> coroutine(detail::QuickCall&& call) {
      return call.object<BasicQueue>().get_coroutine();
    }
    static constexpr detail::QuickOps<T> ops{start, stop_waiting, finish, coroutine};
  };
  Coro<T> get_coroutine() {
    while (empty()) co_await detail::awaiting_as("eddy::Queue::get", next_get_turn());
    co_return get_nowait();
  }
  Store store_;
};

template <class T>
using Queue = BasicQueue<T, detail::FifoStore<T>>;
template <class T>
using LifoQueue = BasicQueue<T, detail::LifoStore<T>>;
template <class T, class Compare = std::less<T>>
using PriorityQueue = BasicQueue<T, detail::HeapStore<T, Compare>>;

}  // namespace eddy
