// A page of the wasm-threads build: run_in_executor jobs run on Web Workers while the page's own
// thread keeps driving the loop (it never blocks). Opened cross-origin isolated by
// web/tests/threads_test.mjs; the page's result is what main returns.
#include <emscripten.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "eddy/eddy.hpp"
#include "host/host_driver.hpp"

namespace {

// Each job sleeps, so that jobs overlap on several workers; while they run, the page's loop
// keeps firing a 5 ms timer. Returns the number of distinct worker threads, or a negative code.
eddy::Coro<int> app() {
  eddy::EventLoop& loop = eddy::get_running_loop();
  if (!loop.capabilities().supports("run_in_executor")) co_return -1;
  const std::thread::id page_thread = std::this_thread::get_id();
  std::atomic<int> on_page{0};
  std::vector<eddy::Future<std::thread::id>> jobs;
  for (int i = 0; i < 8; ++i) {
    jobs.push_back(loop.run_in_executor(nullptr, [&on_page, page_thread] {
      if (std::this_thread::get_id() == page_thread) ++on_page;
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
      return std::this_thread::get_id();
    }));
  }
  int ticks = 0;
  eddy::Handle ticker;
  std::function<void()> tick = [&] {
    ++ticks;
    ticker = loop.call_later(0.005, tick);
  };
  ticker = loop.call_later(0.005, tick);
  std::set<std::thread::id> workers;
  for (auto& job : jobs) workers.insert(co_await job);
  ticker.cancel();
  std::string failed;
  try {
    co_await loop.run_in_executor(nullptr,
                                  []() -> int { throw eddy::ValueError("from a worker"); });
  } catch (const eddy::ValueError& e) {
    failed = e.what();
  }
  co_await loop.shutdown_default_executor();
  if (on_page != 0) co_return -2;
  if (failed != "from a worker") co_return -3;
  if (ticks < 3) co_return -4;  // 8 jobs of 40 ms on 4 workers take 80 ms or more: 5 ms ticks
  EM_ASM({ Module.eddyTicks = $0; }, ticks);
  co_return static_cast<int>(workers.size());
}

}  // namespace

int main() {
  eddy::wasm::run_main(app());
}
