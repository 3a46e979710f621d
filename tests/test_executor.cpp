#include <atomic>
#include <thread>

#include "support.hpp"

using namespace eddy;

LOOP_TEST("run_in_executor: result and exception come back to the loop", "[executor][threads]") {
  auto& loop = *this->loop;
  if (!this->threads()) {
    CHECK_THROWS_AS(loop.run_in_executor(nullptr, [] { return 1; }), NotSupportedError);
    CHECK_FALSE(loop.capabilities().supports("run_in_executor"));
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
