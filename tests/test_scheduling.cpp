#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <thread>

#include "support.hpp"

using namespace eddy;

LOOP_TEST("call_soon runs callbacks in FIFO order", "[scheduling]") {
  auto& loop = *this->loop;
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) loop.call_soon([&order, i] { order.push_back(i); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  REQUIRE(order.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(order[i] == i);
}

LOOP_TEST("a callback scheduled by a callback runs in the next pass", "[scheduling]") {
  auto& loop = *this->loop;
  std::vector<std::pair<std::string, std::uint64_t>> seen;
  auto pass = [&] { return loop.stats().iterations; };
  loop.call_soon([&] {
    seen.emplace_back("first", pass());
    loop.call_soon([&] {
      seen.emplace_back("nested", pass());
      loop.stop();
    });
  });
  loop.call_soon([&] { seen.emplace_back("second", pass()); });
  loop.run_forever();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].first == "first");
  CHECK(seen[1].first == "second");
  CHECK(seen[1].second == seen[0].second);
  CHECK(seen[2].first == "nested");
  CHECK(seen[2].second == seen[0].second + 1);
}

LOOP_TEST("timers fire in deadline order, FIFO among equal deadlines, never early",
          "[scheduling][timers]") {
  auto& loop = *this->loop;
  std::vector<std::string> order;
  std::vector<double> lateness;
  const double base = loop.time();
  auto at = [&](double offset, std::string name) {
    const double when = base + offset;
    loop.call_at(when, [&, when, name] {
      lateness.push_back(loop.time() - when);
      order.push_back(name);
    });
  };
  at(0.0030, "c");
  at(0.0004, "a");  // sub-millisecond: libuv's timers are millisecond-grained
  at(0.0010, "b1");
  at(0.0010, "b2");
  at(0.0010, "b3");
  loop.call_later(0.005, [&] { loop.stop(); });
  loop.run_forever();
  CHECK(order == std::vector<std::string>{"a", "b1", "b2", "b3", "c"});
  for (double l : lateness) CHECK(l >= 0.0);
}

LOOP_TEST("TimerHandle: when, cancel, cancelled; cancel releases the callback at once",
          "[scheduling][timers]") {
  auto& loop = *this->loop;
  auto token = std::make_shared<int>(0);
  const double t0 = loop.time();
  TimerHandle h = loop.call_later(0.01, [token] { ++*token; });
  CHECK(h.when() >= t0 + 0.01);
  CHECK_FALSE(h.cancelled());
  CHECK(token.use_count() == 2);
  h.cancel();
  CHECK(h.cancelled());
  CHECK(token.use_count() == 1);
  h.cancel();  // idempotent
  Handle soon = loop.call_soon([token] { ++*token; });
  soon.cancel();
  loop.call_later(0.02, [&] { loop.stop(); });
  loop.run_forever();
  CHECK(*token == 0);
}

LOOP_TEST("a handle may cancel itself while running", "[scheduling]") {
  auto& loop = *this->loop;
  auto token = std::make_shared<int>(0);
  Handle self;
  self = loop.call_soon([&, token] {
    self.cancel();  // the running callback is released only after it returns
    *token += 1;
    loop.stop();
  });
  loop.run_forever();
  CHECK(*token == 1);
  CHECK(token.use_count() == 1);
  CHECK(self.cancelled());
}

LOOP_TEST("NaN deadlines are rejected; infinite ones never fire", "[scheduling][bad-input]") {
  auto& loop = *this->loop;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(loop.call_later(nan, [] {}), ValueError);
  CHECK_THROWS_AS(loop.call_at(nan, [] {}), ValueError);
  // asyncio.sleep refuses NaN too, in these words.
  CHECK_THROWS_WITH(loop.run_until_complete(sleep(nan)), "Invalid delay: NaN (not a number)");
  bool fired = false;
  TimerHandle never = loop.call_later(std::numeric_limits<double>::infinity(), [&] { fired = true; });
  loop.call_later(0.001, [&] { loop.stop(); });
  loop.run_forever();
  CHECK_FALSE(fired);
  never.cancel();
}

LOOP_TEST("cancelled timers are purged once they dominate the heap", "[scheduling][timers]") {
  auto& loop = *this->loop;
  std::vector<TimerHandle> handles;
  for (int i = 0; i < 1000; ++i) handles.push_back(loop.call_later(100.0 + i, [] {}));
  for (int i = 0; i < 900; ++i) handles[i].cancel();
  CHECK(loop.stats().cancelled_timers == 900);
  loop.stop();
  loop.run_forever();  // one pass computes its timeout, which purges
  CHECK(loop.stats().timers == 100);
  CHECK(loop.stats().cancelled_timers == 0);
  for (auto& h : handles) h.cancel();
}

LOOP_TEST("call_soon_threadsafe wakes a loop blocked in its backend", "[scheduling][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) {
    // Single-threaded WebAssembly: it is call_soon, and the capability table says so.
    CHECK(loop.capabilities().find("call_soon_threadsafe")->note.find("single-threaded") !=
          std::string::npos);
    loop.call_soon_threadsafe([&] { loop.stop(); });
    loop.run_forever();
    return;
  }
  std::atomic<bool> ran{false};
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    loop.call_soon_threadsafe([&] {
      ran = true;
      loop.stop();
    });
  });
  loop.run_forever();  // nothing scheduled: blocks in the backend until the other thread posts
  other.join();
  CHECK(ran);
}

// asyncio's call_soon_threadsafe appends to the same ready queue as call_soon: from the loop's
// thread, and before the loop runs, the two keep call order. (Eddy used to queue it for the next
// pass's inbox drain, after the callbacks of later call_soons.)
LOOP_TEST("call_soon_threadsafe keeps call order with call_soon", "[scheduling]") {
  auto& loop = *this->loop;
  std::vector<std::string> trace;
  auto note = [&trace](const char* what) { return [&trace, what] { trace.push_back(what); }; };
  loop.call_soon_threadsafe(note("a"));  // the loop is not running yet
  loop.call_soon(note("b"));
  loop.call_soon([&] {
    loop.call_soon_threadsafe(note("c"));  // from the running loop's thread
    loop.call_soon(note("d"));
    loop.call_soon_threadsafe([&] {
      trace.push_back("e");
      loop.stop();
    });
  });
  loop.run_forever();
  CHECK(trace == std::vector<std::string>{"a", "b", "c", "d", "e"});
}

// As asyncio, which keeps a handle's source traceback only in debug mode: outside it, a small
// callback (kept in the ready queue, with no record) has a name but no place.
LOOP_TEST("handles report their callback's name, and in debug mode where they were scheduled",
          "[scheduling][debug]") {
  auto& loop = *this->loop;
  Handle plain = loop.call_soon([] {});
  CHECK(std::string(plain.where().file).empty());
  CHECK(plain.where().line == 0);
  CHECK(std::string(plain.callback_name()).find("lambda") != std::string::npos);
  plain.cancel();
  CHECK(std::string(plain.callback_name()) == "<no callback>");
  loop.set_debug(true);
  Handle h = loop.call_soon([] {});
  CHECK(std::string(h.where().file).find("test_scheduling.cpp") != std::string::npos);
  CHECK(h.where().line == __LINE__ - 2);
  CHECK(std::string(h.callback_name()).find("lambda") != std::string::npos);
  h.cancel();
  loop.set_debug(false);
}

// Timers and callbacks too big for the ready queue have records: a record keeps its place only
// when scheduled in debug mode, and a record used again outside debug mode has none (records
// keep their files apart, per block, and the line says whether one is kept).
LOOP_TEST("timers and records keep where they were scheduled in debug mode only",
          "[scheduling][debug]") {
  auto& loop = *this->loop;
  const std::string big(40, 'x');  // too big for a queue entry: a record
  TimerHandle plain_timer = loop.call_later(10, [] {});
  Handle plain_record = loop.call_soon([big] {});
  CHECK(plain_timer.where().line == 0);
  CHECK(std::string(plain_timer.where().file).empty());
  CHECK(plain_record.where().line == 0);
  plain_timer.cancel();
  plain_record.cancel();
  loop.run_until_complete(sleep(0));

  loop.set_debug(true);
  const std::uint32_t timer_line = __LINE__ + 1;
  TimerHandle timer = loop.call_later(10, [] {});
  const std::uint32_t record_line = __LINE__ + 1;
  Handle record = loop.call_soon([big] {});
  CHECK(std::string(timer.where().file).find("test_scheduling.cpp") != std::string::npos);
  CHECK(timer.where().line == timer_line);
  CHECK(std::string(record.where().file).find("test_scheduling.cpp") != std::string::npos);
  CHECK(record.where().line == record_line);
  timer.cancel();
  record.cancel();
  timer = TimerHandle();
  record = Handle();
  loop.run_until_complete(sleep(0));  // the records go back to the pool

  loop.set_debug(false);
  std::vector<TimerHandle> again;  // reuses the records that kept a place
  for (int i = 0; i < 8; ++i) again.push_back(loop.call_later(10, [] {}));
  for (auto& t : again) {
    CHECK(t.where().line == 0);
    CHECK(std::string(t.where().file).empty());
    t.cancel();
  }
  loop.run_until_complete(sleep(0));
}

// A small callback waits in the ready queue itself and its Handle names that entry. Everything
// asyncio lets a caller do with the Handle still holds: cancel it while queued, copy it (the
// copies are one handle), compare it, keep it after it ran, or after its loop is gone.
LOOP_TEST("a small callback's handle: cancel, copies, equality and order, as a record's",
          "[scheduling]") {
  auto& loop = *this->loop;
  std::vector<int> ran;
  std::vector<int>* out = &ran;
  Handle a = loop.call_soon([out] { out->push_back(1); });
  Handle b = loop.call_soon([out] { out->push_back(2); });
  Handle c = loop.call_soon([out] { out->push_back(3); });
  Handle d = loop.call_soon([out] { out->push_back(4); });
  Handle b2 = b;  // a copy while queued: one handle, still in its place in the queue
  CHECK(b2 == b);
  CHECK_FALSE(b2 == a);
  b2.cancel();
  CHECK(b.cancelled());
  Handle c2 = c;  // copied, not cancelled: runs where it was
  c.cancel();
  c.cancel();  // twice is fine
  CHECK(c2.cancelled());
  CHECK_FALSE(d.cancelled());
  Handle d2 = d;
  loop.run_until_complete(sleep(0));
  CHECK(ran == std::vector<int>{1, 4});
  CHECK_FALSE(a.cancelled());
  CHECK(std::string(a.callback_name()) == "<no callback>");
  a.cancel();  // after it ran: marked, as asyncio's Handle.cancel() does
  CHECK(a.cancelled());
  Handle a2 = a;  // copied after it ran
  CHECK(a2.cancelled());
  CHECK(a2 == a);
  CHECK(d2 == d);
  CHECK_FALSE(d2.cancelled());
}

namespace scheduling_queue {
std::vector<int>* ran_into = nullptr;  // where the small callbacks below write: they capture an int
}  // namespace scheduling_queue

LOOP_TEST("small callbacks keep their order and their handles while the queue grows and wraps",
          "[scheduling]") {
  using scheduling_queue::ran_into;
  auto& loop = *this->loop;
  // Enough entries for the queue to outgrow a huge page (where it grows in place), after a
  // first pass has moved its head, so that entries wrap around its end. Every thousandth
  // callback is too big for the queue and gets a record.
  constexpr int kFirst = 700, kMany = 300000;
  std::vector<int> ran;
  ran.reserve(kFirst + kMany);
  ran_into = &ran;
  std::vector<Handle> handles;
  handles.reserve(kFirst + kMany);
  struct Big {
    std::vector<int>* out;
    std::int64_t i;
    void operator()() const { out->push_back(static_cast<int>(i)); }
  };
  static_assert(sizeof(Big) > 8);
  for (int i = 0; i < kFirst; ++i)
    handles.push_back(loop.call_soon([i] { ran_into->push_back(i); }));
  loop.run_until_complete(sleep(0));
  REQUIRE(ran.size() == std::size_t(kFirst));
  ran.clear();
  for (int i = kFirst; i < kFirst + kMany; ++i) {
    if (i % 1000 == 999)
      handles.push_back(loop.call_soon(Big{&ran, i}));
    else
      handles.push_back(loop.call_soon([i] { ran_into->push_back(i); }));
    if (i % 7 == 3) handles.back().cancel();
  }
  Handle copied = handles[kFirst + 5];  // copied after the queue grew: it keeps its place
  Handle copied_late = handles[kFirst + kMany - 2];
  copied_late.cancel();
  loop.run_until_complete(sleep(0));
  std::vector<int> expected;
  for (int i = kFirst; i < kFirst + kMany; ++i)
    if (i % 7 != 3 && i != kFirst + kMany - 2) expected.push_back(i);
  CHECK(ran.size() == expected.size());
  CHECK(ran == expected);
  CHECK(handles[kFirst + kMany - 2].cancelled());
  CHECK(copied == handles[kFirst + 5]);
  ran_into = nullptr;
}

// A ticket names its entry by the loop's slot and a sequence number that carries on from one loop
// to the next in that slot: a Handle kept after its loop is gone names nothing in the next loop.
TEST_CASE("a small callback's handle outlives its loop and never touches the next one",
          "[scheduling]") {
  Handle old_handle;
  {
    LoopRef first = testing::new_virtual_clock_loop();
    old_handle = first->call_soon([] {});
    first->close();
  }
  LoopRef second = testing::new_virtual_clock_loop();
  bool ran = false;
  bool* flag = &ran;
  Handle fresh = second->call_soon([flag] { *flag = true; });
  CHECK_FALSE(old_handle == fresh);
  old_handle.cancel();  // names the closed loop's entry, not the new loop's
  CHECK(old_handle.cancelled());
  CHECK(std::string(old_handle.callback_name()) == "<no callback>");
  Handle copy = old_handle;
  CHECK(copy.cancelled());
  second->run_until_complete(sleep(0));
  CHECK(ran);
  CHECK_FALSE(fresh.cancelled());
  second->close();
}

namespace scheduling_names {
Coro<std::string> lambda_in_coroutine(int n) {
  Handle h = get_running_loop().call_soon([n] { (void)n; });
  std::string name = h.callback_name();
  h.cancel();
  co_return name;
}
}  // namespace scheduling_names

// A lambda scheduled from a coroutine (the common case) was named with the coroutine frame's
// mangled name in gcc: "ns::f(f(int)::_ZN2ns1fEi.Frame*)::<lambda()>".
LOOP_TEST(
    "callback names read as their scope: no frame names, parameter lists or anonymous "
    "namespaces",
    "[scheduling][debug]") {
  std::string name = this->loop->run_until_complete(scheduling_names::lambda_in_coroutine(1));
  INFO(name);
  CHECK(name.find("lambda") != std::string::npos);
  CHECK(name.find("Frame") == std::string::npos);
  CHECK(name.find("_Z") == std::string::npos);
#if defined(__GNUC__) && !defined(__clang__)
  CHECK(name == "scheduling_names::lambda_in_coroutine::<lambda()>");
#endif
  // The rules, on each compiler's spelling.
  using detail::type_name_from_signature;
  const char* g = "const char* eddy::detail::raw_type_signature() [with T = ";
  CHECK(type_name_from_signature((std::string(g) +
                                  "app::echo_client(echo_client(int, std::string)::_ZN3app11echo_"
                                  "clientEiNSt7__cxx1112basic_stringIcEE.Frame*)::<lambda()>]")
                                     .c_str()) == "app::echo_client::<lambda()>");
  CHECK(type_name_from_signature(
            (std::string(g) +
             "app::{anonymous}::Reader::data_received(std::string_view)::<lambda()>]")
                .c_str()) == "app::Reader::data_received::<lambda()>");
  CHECK(
      type_name_from_signature(
          (std::string(g) + "app::Box<int>::run(app::Box<int>::run()::_ZN3app3BoxIiE3runEv.Frame*)"
                            "::<lambda()>]")
              .c_str()) == "app::Box<int>::run::<lambda()>");
  CHECK(type_name_from_signature((std::string(g) + "main()::<lambda()>::operator()() const::"
                                                   "<lambda(int)>]")
                                     .c_str()) == "main::<lambda()>::operator()::<lambda(int)>");
  CHECK(type_name_from_signature((std::string(g) + "std::function<void(int)>]").c_str()) ==
        "std::function<void(int)>");
  CHECK(type_name_from_signature((std::string(g) + "(anonymous namespace)::Named]").c_str()) ==
        "Named");
  CHECK(type_name_from_signature("const char *eddy::detail::raw_type_signature() [T = (lambda at "
                                 "/src/a.cpp:3:5)]") == "(lambda at /src/a.cpp:3:5)");
}

// 600k entries take the ready ring and the timer heap past 2 MiB, where their blocks come from
// allocate_pages aligned to a huge page (and may be backed by huge pages natively).
LOOP_TEST("a ready queue and a timer heap of several huge pages keep their order",
          "[scheduling][timers]") {
  auto& loop = *this->loop;
  constexpr int kCount = 600000;
  int next = 0, out_of_order = 0;
  std::vector<Handle> cancelled;
  for (int i = 0; i < kCount; ++i) {
    Handle h = loop.call_soon([&next, &out_of_order, i] {
      if (i != next) ++out_of_order;
      next = i + 1 + (i % 1000 == 998);  // its successor was cancelled
    });
    if (i % 1000 == 999) cancelled.push_back(std::move(h));
  }
  for (auto& h : cancelled) h.cancel();
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  CHECK(out_of_order == 0);
  CHECK(next == kCount);

  // Deadlines already due, in reverse order of scheduling: they fire by deadline.
  const double base = loop.time() - 1.0;
  double last = -std::numeric_limits<double>::infinity();
  int fired = 0, early_or_unordered = 0;
  for (int i = 0; i < kCount; ++i)
    loop.call_at(base - i * 1e-7, [&, i] {
      const double when = base - i * 1e-7;
      if (when < last) ++early_or_unordered;
      last = when;
      ++fired;
    });
  loop.call_later(0, [&] { loop.stop(); });
  loop.run_forever();
  CHECK(early_or_unordered == 0);
  CHECK(fired == kCount);
}

// A ring of 2^19 entries fills while its front has been run and its newest entries have wrapped
// around to the start of the buffer; it then doubles (natively in place, inside its reservation
// of address space, moving only the wrapped entries). Every entry still runs in scheduling order.
LOOP_TEST("a ready ring that fills after wrapping around grows without reordering",
          "[scheduling]") {
  constexpr int kFirst = 300000;  // past 2^18, so the ring holds 2^19 slots
  struct Chain {
    EventLoop* loop;
    int scheduled = 0, next = 0, out_of_order = 0;
    void schedule() {
      loop->call_soon([this, seq = scheduled++] {
        if (seq != next) ++out_of_order;
        next = seq + 1;
        // Each of the first entries queues two more, so the ring grows by one per entry run.
        if (seq < kFirst) {
          schedule();
          schedule();
        }
      });
    }
  } chain{this->loop.get()};
  while (chain.scheduled < kFirst) chain.schedule();
  while (chain.next < chain.scheduled) this->loop->run_until_complete(sleep(0));
  CHECK(chain.out_of_order == 0);
  CHECK(chain.next == 3 * kFirst);
}
