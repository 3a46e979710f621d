// Queue, LifoQueue and PriorityQueue: order, the _nowait errors, waiting getters and putters
// (a woken waiter that is cancelled passes the item or slot on), task_done/join and shutdown.
// The expected traces are what Python 3.13's asyncio prints for the same scenarios.
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace eddy;

namespace {

Coro<void> getter(Queue<int>& q, std::string name, Trace* trace) {
  try {
    int v = co_await q.get();
    trace->push_back(name + " got " + std::to_string(v));
  } catch (const CancelledError&) {
    trace->push_back(name + " cancelled");
    throw;
  } catch (const QueueShutDown&) {
    trace->push_back(name + " shut down");
  }
}

Coro<void> putter(Queue<int>& q, std::string name, int v, Trace* trace) {
  try {
    co_await q.put(v);
    trace->push_back(name + " put " + std::to_string(v));
  } catch (const CancelledError&) {
    trace->push_back(name + " cancelled");
    throw;
  } catch (const QueueShutDown&) {
    trace->push_back(name + " shut down");
  }
}

template <class Q>
std::string drain_nowait(Q& q) {
  std::string s;
  while (!q.empty()) s += std::to_string(q.get_nowait()) + " ";
  return s;
}

Coro<void> orders() {
  Queue<int> fifo;
  LifoQueue<int> lifo;
  PriorityQueue<int> prio;
  PriorityQueue<std::pair<int, std::string>> jobs;
  PriorityQueue<int, std::greater<int>> largest_first;
  static constexpr int values[] = {3, 1, 4, 1, 5};
  for (int v : values) {
    co_await fifo.put(v);
    co_await lifo.put(v);
    co_await prio.put(v);
    largest_first.put_nowait(v);
  }
  jobs.put_nowait(std::make_pair(2, std::string("write")));
  jobs.put_nowait(std::make_pair(1, std::string("read")));
  CHECK(fifo.qsize() == 5);
  CHECK(drain_nowait(fifo) == "3 1 4 1 5 ");
  CHECK(drain_nowait(lifo) == "5 1 4 1 3 ");
  CHECK(drain_nowait(prio) == "1 1 3 4 5 ");
  CHECK(drain_nowait(largest_first) == "5 4 3 1 1 ");
  CHECK(jobs.get_nowait().second == "read");
  auto last = co_await jobs.get();
  CHECK(last.second == "write");
}

void nowait_errors() {
  Queue<int> q(2);
  CHECK(q.maxsize() == 2);
  CHECK(q.empty());
  CHECK_THROWS_AS(q.get_nowait(), QueueEmpty);
  q.put_nowait(1);
  q.put_nowait(2);
  CHECK(q.full());
  CHECK_THROWS_AS(q.put_nowait(3), QueueFull);
  CHECK(q.qsize() == 2);  // the refused item changed nothing
  CHECK(q.get_nowait() == 1);
  CHECK(q.get_nowait() == 2);
  // asyncio: maxsize <= 0 means unbounded.
  Queue<int> unbounded(-3);
  CHECK(unbounded.maxsize() == -3);
  for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
  CHECK_FALSE(unbounded.full());
  CHECK(unbounded.qsize() == 1000);
  for (int i = 0; i < 1000; ++i) unbounded.task_done();
  CHECK_THROWS_MATCHES(unbounded.task_done(), ValueError,
                       Catch::Matchers::Message("task_done() called too many times"));
}

Coro<void> blocking(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q(2);
  std::vector<Task<void>> tasks;
  tasks.push_back(loop.create_task(putter(q, "a", 0, trace)));
  tasks.push_back(loop.create_task(putter(q, "b", 1, trace)));
  tasks.push_back(loop.create_task(putter(q, "c", 2, trace)));
  tasks.push_back(loop.create_task(putter(q, "d", 3, trace)));
  co_await sleep(0);
  trace->push_back("size " + std::to_string(q.qsize()) + " full " + (q.full() ? "True" : "False"));
  tasks.push_back(loop.create_task(getter(q, "w", trace)));
  tasks.push_back(loop.create_task(getter(q, "x", trace)));
  tasks.push_back(loop.create_task(getter(q, "y", trace)));
  tasks.push_back(loop.create_task(getter(q, "z", trace)));
  for (auto& t : tasks) co_await t;
  CHECK(q.empty());
}

// CPython test_queues: put_nowait wakes getter a, a is cancelled before it runs; b must get
// the item rather than have it stranded in the queue.
Coro<void> woken_getter_cancelled(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q;
  auto a = loop.create_task(getter(q, "a", trace));
  auto b = loop.create_task(getter(q, "b", trace));
  co_await sleep(0);
  q.put_nowait(1);
  a.cancel();
  try {
    co_await a;
  } catch (const CancelledError&) {
  }
  co_await b;
  CHECK(q.qsize() == 0);
}

// A get() awaited inline keeps its finished wait, and the queue's next get() that has to wait
// takes it again instead of a new one. A wait taken again must behave as a new one: pending until
// a put, named in await chains, and cancelled without taking the item put after.
Coro<void> get_items(Queue<int>* q, int n, Trace* trace) {
  for (int i = 0; i < n + 1; ++i) {  // the last get waits until cancelled
    const int v = co_await q->get();
    trace->push_back("got " + std::to_string(v));
  }
}
Coro<void> waits_taken_again(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q;
  auto a = loop.create_task(get_items(&q, 3, trace));
  for (int i = 0; i < 3; ++i) {
    co_await sleep(0);  // a waits: a new wait, then the one it kept
    trace->push_back("waiting " + std::to_string(q.qsize()));
    q.put_nowait(i);
  }
  co_await sleep(0);
  co_await sleep(0);
  const std::vector<AwaitFrame> chain = a.await_chain();
  REQUIRE_FALSE(chain.empty());
  trace->push_back(chain.back().function + " > " + chain.back().awaiting);
  a.cancel();
  try {
    co_await a;
  } catch (const CancelledError&) {
    trace->push_back("a cancelled");
  }
  q.put_nowait(7);
  trace->push_back("left " + std::to_string(q.qsize()));
  auto b = loop.create_task(get_items(&q, 2, trace));  // takes 7 at once, waits for 8, waits
  co_await sleep(0);
  q.put_nowait(8);
  co_await sleep(0);  // b's wait (taken again, or new) ends with 8
  co_await sleep(0);
  b.cancel();
  try {
    co_await b;
  } catch (const CancelledError&) {
    trace->push_back("b cancelled");
  }
  CHECK(q.empty());
}

Coro<void> woken_putter_cancelled(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q(1);
  q.put_nowait(0);
  auto a = loop.create_task(putter(q, "a", 1, trace));
  auto b = loop.create_task(putter(q, "b", 2, trace));
  co_await sleep(0);
  trace->push_back("got " + std::to_string(q.get_nowait()));
  a.cancel();
  try {
    co_await a;
  } catch (const CancelledError&) {
  }
  co_await b;
  trace->push_back("left " + std::to_string(q.get_nowait()));
}

// A getter woken by a put whose item another takes before it runs waits again, at the end of the
// line (asyncio's `while self.empty()` loop); cancelled there, it leaves the line. Both forms of
// get: awaited inline (no frame of its own) and as a task of its own (a coroutine).
Coro<void> woken_getter_robbed(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q;
  auto a = loop.create_task(getter(q, "a", trace));
  auto b = loop.create_task(getter(q, "b", trace));
  co_await sleep(0);
  q.put_nowait(1);
  trace->push_back("took " + std::to_string(q.get_nowait()));
  co_await sleep(0);
  trace->push_back("size " + std::to_string(q.qsize()));
  q.put_nowait(2);
  q.put_nowait(3);
  co_await a;
  co_await b;

  auto c = loop.create_task(getter(q, "c", trace));
  auto d = loop.create_task(getter(q, "d", trace));
  co_await sleep(0);
  q.put_nowait(4);
  trace->push_back("took " + std::to_string(q.get_nowait()));
  co_await sleep(0);
  c.cancel();
  try {
    co_await c;
  } catch (const CancelledError&) {
  }
  q.put_nowait(5);
  co_await d;

  Task<int> x = loop.create_task(q.get());
  auto y = loop.create_task(getter(q, "y", trace));
  co_await sleep(0);
  q.put_nowait(6);
  trace->push_back("took " + std::to_string(q.get_nowait()));
  co_await sleep(0);
  q.put_nowait(7);
  co_await sleep(0);
  q.put_nowait(8);
  int got = co_await x;
  trace->push_back("x got " + std::to_string(got));
  co_await y;
  CHECK(q.empty());
}

Coro<void> join_waits(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<std::string> q;
  auto worker = [](Queue<std::string>& q, Trace* trace) -> Coro<void> {
    for (;;) {
      std::string job = co_await q.get();
      co_await sleep(0.01);
      trace->push_back("did " + job);
      q.task_done();
    }
  };
  co_await q.join();  // nothing unfinished: no wait
  auto w = loop.create_task(worker(q, trace));
  q.put_nowait("a");
  q.put_nowait("b");
  CHECK(q.unfinished_tasks() == 2);
  co_await q.join();
  trace->push_back("joined");
  w.cancel();
  try {
    co_await w;
  } catch (const CancelledError&) {
  }
}

Coro<void> shutdown_plain(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q(1);
  q.put_nowait(1);
  auto p = loop.create_task(putter(q, "p", 2, trace));
  co_await sleep(0);
  q.shutdown();
  CHECK(q.is_shutdown());
  co_await p;
  auto a = loop.create_task(getter(q, "a", trace));
  auto b = loop.create_task(getter(q, "b", trace));
  co_await a;
  co_await b;
  try {
    q.put_nowait(3);
  } catch (const QueueShutDown&) {
    trace->push_back("put_nowait shut down");
  }
  q.task_done();
  co_await q.join();
}

Coro<void> shutdown_immediate(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q;
  q.put_nowait(1);
  q.put_nowait(2);
  auto joiner = [](Queue<int>& q, Trace* trace) -> Coro<void> {
    co_await q.join();
    trace->push_back("joined");
  };
  auto j = loop.create_task(joiner(q, trace));
  co_await sleep(0);
  q.shutdown(true);
  trace->push_back("size " + std::to_string(q.qsize()));
  co_await j;
  try {
    q.get_nowait();
  } catch (const QueueShutDown&) {
    trace->push_back("get_nowait shut down");
  }
  try {
    q.task_done();
  } catch (const ValueError& e) {
    trace->push_back(e.what());
  }
}

Coro<void> shutdown_wakes_getters(Trace* trace) {
  auto& loop = get_running_loop();
  Queue<int> q;
  auto a = loop.create_task(getter(q, "a", trace));
  auto b = loop.create_task(getter(q, "b", trace));
  co_await sleep(0);
  q.shutdown();
  co_await a;
  co_await b;
}

}  // namespace

LOOP_TEST("Queue: FIFO, LIFO and priority order; custom comparators", "[queues]") {
  this->loop->run_until_complete(orders());
}

LOOP_TEST("Queue: QueueEmpty, QueueFull, negative maxsize, task_done too often",
          "[queues][faults]") {
  nowait_errors();
}

LOOP_TEST("Queue: blocked putters and getters are served in FIFO order", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(blocking(&trace));
  CHECK(joined(trace) ==
        "a put 0;b put 1;size 2 full True;w got 0;x got 1;c put 2;d put 3;y got 2;z got 3;");
}

LOOP_TEST("Queue: a woken getter that is cancelled passes the item to the next", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(woken_getter_cancelled(&trace));
  CHECK(joined(trace) == "a cancelled;b got 1;");
}

LOOP_TEST("Queue: a woken putter that is cancelled passes the free slot to the next", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(woken_putter_cancelled(&trace));
  CHECK(joined(trace) == "got 0;a cancelled;b put 2;left 2;");
}

LOOP_TEST("Queue: a getter's wait taken again by its next get behaves as a new one", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(waits_taken_again(&trace));
  CHECK(joined(trace) ==
        "waiting 0;got 0;waiting 0;got 1;waiting 0;got 2;eddy::Queue::get > <Future pending>;"
        "a cancelled;left 1;got 7;got 8;b cancelled;");
}

LOOP_TEST("Queue: a woken getter whose item was taken waits again at the end of the line",
          "[queues]") {
  Trace trace;
  this->loop->run_until_complete(woken_getter_robbed(&trace));
  CHECK(joined(trace) ==
        "took 1;size 0;b got 2;a got 3;took 4;c cancelled;d got 5;took 6;y got 7;x got 8;");
}

LOOP_TEST("Queue: join waits for task_done of every item", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(join_waits(&trace));
  CHECK(joined(trace) == "did a;did b;joined;");
}

LOOP_TEST("Queue: shutdown refuses puts, lets getters drain, then raises QueueShutDown",
          "[queues]") {
  Trace trace;
  this->loop->run_until_complete(shutdown_plain(&trace));
  CHECK(joined(trace) == "p shut down;a got 1;b shut down;put_nowait shut down;");
}

LOOP_TEST("Queue: shutdown(immediate) drops the items and releases join", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(shutdown_immediate(&trace));
  CHECK(joined(trace) == "size 0;joined;get_nowait shut down;task_done() called too many times;");
}

LOOP_TEST("Queue: shutdown wakes every waiting getter", "[queues]") {
  Trace trace;
  this->loop->run_until_complete(shutdown_wakes_getters(&trace));
  CHECK(joined(trace) == "a shut down;b shut down;");
}
