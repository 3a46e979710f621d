#include <atomic>
#include <chrono>
#include <thread>

#include "support.hpp"

using namespace eddy;

LOOP_TEST("run_in_executor: result and exception come back to the loop", "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) {
    CHECK_THROWS_AS(loop.run_in_executor(nullptr, [] { return 1; }), NotSupportedError);
    CHECK_FALSE(loop.capabilities().supports("run_in_executor"));
    // An executor of the caller's cannot start workers either: the same error, not
    // std::system_error from std::thread.
    try {
      (void)loop.run_in_executor(std::make_shared<ThreadPoolExecutor>(1), [] { return 1; });
      FAIL("run_in_executor accepted a thread pool without threads");
    } catch (const NotSupportedError& e) {
      CHECK(e.method() == "run_in_executor");
      CHECK(e.target() == loop.capabilities().target);
    }
    return;
  }
  const auto loop_thread = std::this_thread::get_id();
  auto main_ = [&]() -> Coro<int> {
    auto& l = get_running_loop();
    std::thread::id job_thread;
    int v = co_await l.run_in_executor(nullptr, [&] {
      job_thread = std::this_thread::get_id();
      return 20;
    });
    CHECK(job_thread != loop_thread);
    try {
      co_await l.run_in_executor(nullptr, []() -> int { throw ValueError("in a thread"); });
    } catch (const ValueError& e) {
      CHECK(std::string(e.what()) == "in a thread");
      v += 1;
    }
    co_return v;
  };
  CHECK(loop.run_until_complete(main_()) == 21);
  loop.run_until_complete(loop.shutdown_default_executor());
  CHECK_THROWS_MATCHES(loop.run_in_executor(nullptr, [] {}), RuntimeError,
                       Catch::Matchers::Message("Executor shutdown has been called"));
}

LOOP_TEST("set_default_executor and an explicit executor", "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;
  auto pool = std::make_shared<ThreadPoolExecutor>(2);
  CHECK(pool->max_workers() == 2);
  loop.set_default_executor(pool);
  CHECK_THROWS_AS(loop.set_default_executor(nullptr), TypeError);
  std::atomic<int> count{0};
  auto main_ = [&]() -> Coro<void> {
    auto& l = get_running_loop();
    std::vector<Future<void>> jobs;
    for (int i = 0; i < 8; ++i) jobs.push_back(l.run_in_executor(nullptr, [&] { ++count; }));
    auto own = std::make_shared<ThreadPoolExecutor>(1);
    jobs.push_back(l.run_in_executor(own, [&] { ++count; }));
    for (auto& j : jobs) co_await j;
    own->shutdown();
  };
  loop.run_until_complete(main_());
  CHECK(count == 9);
  CHECK(pool->thread_count() <= 2);
  loop.run_until_complete(loop.shutdown_default_executor());
  CHECK_THROWS_AS(pool->submit([] {}), RuntimeError);
}

LOOP_TEST("a job whose future was cancelled finishes without touching it", "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;
  std::atomic<bool> release{false};
  auto fut = loop.run_in_executor(nullptr, [&] {
    while (!release) std::this_thread::yield();
    return 1;
  });
  fut.cancel();
  release = true;
  loop.run_until_complete(loop.shutdown_default_executor());
  CHECK(fut.cancelled());
}

// asyncio cancels the concurrent future it wraps: a job still queued never runs.
LOOP_TEST("cancelling a queued job's future means the job never runs", "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;
  loop.set_default_executor(std::make_shared<ThreadPoolExecutor>(1));
  std::atomic<bool> started{false}, release{false};
  std::atomic<int> second_ran{0};
  auto first = loop.run_in_executor(nullptr, [&] {
    started = true;
    while (!release) std::this_thread::yield();
  });
  auto second = loop.run_in_executor(nullptr, [&] { ++second_ran; });
  while (!started) std::this_thread::yield();  // the only worker is busy: `second` is queued
  CHECK(loop.stats().executor_jobs == 2);
  second.cancel();
  loop.run_until_complete(sleep(0));  // the cancellation's callback runs
  CHECK(loop.stats().executor_jobs == 1);
  release = true;
  loop.run_until_complete(first);
  loop.run_until_complete(loop.shutdown_default_executor());
  CHECK(second_ran == 0);
  CHECK(second.cancelled());
}

// Each shutdown_default_executor joins in a thread of its own: a second call while the first is
// still joining (past its timeout) must not block the loop.
LOOP_TEST("a second shutdown_default_executor does not block the loop", "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;
  HeldExecutorJob held(loop);
  loop.run_until_complete(loop.shutdown_default_executor(0.01));  // gives up waiting: a warning
  loop.run_until_complete(loop.shutdown_default_executor(0.01));
  CHECK_FALSE(held.released());  // both returned while the job still ran
  held.release();
  loop.run_until_complete(held.job());
}

// asyncio's set_default_executor only swaps the reference: the executor replaced finishes its
// jobs on its own. Dropping it on the loop's thread used to join its threads there, blocking
// the loop until its running jobs ended.
LOOP_TEST("set_default_executor does not wait for the jobs of the executor it replaces",
          "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;
  std::atomic<bool> started{false}, release{false};
  auto job = loop.run_in_executor(nullptr, [&] {
    started = true;
    while (!release) std::this_thread::yield();
    return 7;
  });
  while (!started) std::this_thread::yield();
  // Lets the job go after 2 s whatever happens, so a blocked loop fails below instead of hanging.
  std::thread watchdog([&] {
    for (int i = 0; i < 200 && !release; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    release = true;
  });
  loop.set_default_executor(std::make_shared<ThreadPoolExecutor>(1));
  CHECK_FALSE(release);  // returned while the old executor's job still ran
  CHECK(loop.run_until_complete(loop.run_in_executor(nullptr, [] { return 1; })) == 1);
  release = true;
  watchdog.join();
  CHECK(loop.run_until_complete(job) == 7);  // its result still comes back
  loop.run_until_complete(loop.shutdown_default_executor());
}

// The timeout of shutdown_default_executor ends with the join (asyncio's `async with
// timeout()`): a join that finished in time used to leave its timer armed until it expired.
LOOP_TEST("shutdown_default_executor leaves no timer behind once the join is done",
          "[executor][threads]") {
  auto& loop = *this->loop;
  // A virtual clock jumps to the timeout while the join runs in real time.
  if (!this->threads() || TestType::virtual_time) return;
  CHECK(loop.run_until_complete(loop.run_in_executor(nullptr, [] { return 3; })) == 3);
  loop.run_until_complete(loop.shutdown_default_executor(30.0));
  loop.run_until_complete(sleep(0));  // a cancelled timer leaves the heap at the next pass
  CHECK(loop.stats().timers == 0);
}

// A threads build's WebAssembly module has a fixed pool of Web Workers for its threads. Shutting
// the executor down used to join it on one more thread than the pool has, and a worker joined off
// the main thread comes back only when the JavaScript event loop runs: the end of the first run
// hung once its jobs had used the whole pool, and a second run found no worker left.
TEST_CASE("runs one after another each get all their executor's workers", "[executor][threads]") {
  constexpr int workers = 4;
  for (int round = 0; round < 3; ++round) {
    std::atomic<int> arrived{0};
    auto main_ = [&]() -> Coro<int> {
      auto& loop = get_running_loop();
      if (!loop.capabilities().supports("run_in_executor")) co_return workers;
      loop.set_default_executor(std::make_shared<ThreadPoolExecutor>(workers));
      auto rendezvous = [&] {  // each job waits until every worker holds one
        ++arrived;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (arrived < workers && std::chrono::steady_clock::now() < deadline)
          std::this_thread::yield();
        return arrived >= workers ? 1 : 0;
      };
      std::vector<Future<int>> jobs;
      for (int i = 0; i < workers; ++i) jobs.push_back(loop.run_in_executor(nullptr, rendezvous));
      int together = 0;
      for (auto& job : jobs) together += co_await job;
      co_return together;
    };
    INFO("round " << round);
    CHECK(eddy::run(main_()) == workers);
  }
}

namespace {
// An executor of a user's own that cannot say when it is done (no shutdown_then): a thread per job.
class ThreadPerJobExecutor final : public Executor {
 public:
  ~ThreadPerJobExecutor() override { shutdown(); }
  void submit(detail::UniqueFunction job) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) throw RuntimeError("cannot schedule new futures after shutdown");
    threads_.emplace_back(std::move(job));
  }
  void shutdown(bool wait = true, bool = false) override {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      if (wait) threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    if (wait) ++joins;
  }
  std::atomic<int> joins{0};

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
  bool closed_ = false;
};
}  // namespace

LOOP_TEST("shutdown_default_executor waits for an executor without shutdown_then too",
          "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) return;
  auto mine = std::make_shared<ThreadPerJobExecutor>();
  loop.set_default_executor(mine);
  std::atomic<bool> release{false};
  auto job = loop.run_in_executor(nullptr, [&] {
    while (!release) std::this_thread::yield();
    return 5;
  });
  auto shutdown = loop.shutdown_default_executor();
  loop.run_until_complete(sleep(0.01));
  CHECK_FALSE(shutdown.done());  // its job still runs
  release = true;
  loop.run_until_complete(shutdown);
  CHECK(mine->joins >= 1);
  CHECK(loop.run_until_complete(job) == 5);
}
