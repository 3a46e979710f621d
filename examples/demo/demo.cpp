// A tour of the loop core: call_soon, timers, tasks awaiting each other, cancellation, and a
// blocking job on the thread pool, printing what happens and when.
#include <chrono>
#include <cstdio>
#include <thread>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

using namespace eddy;

static double t0 = 0;
static void say(const char* what) {
  std::printf("[%7.3f s] %s\n", get_running_loop().time() - t0, what);
  std::fflush(stdout);
}

static Coro<int> worker(const char* name, double delay, int value) {
  std::printf("[%7.3f s] task %s: sleeping %.2f s\n", get_running_loop().time() - t0, name, delay);
  co_await sleep(delay);
  std::printf("[%7.3f s] task %s: done -> %d\n", get_running_loop().time() - t0, name, value);
  co_return value;
}

static Coro<int> demo() {
  EventLoop& loop = get_running_loop();
  t0 = loop.time();
  std::printf("Eddy %s on %s\n", version, loop.capabilities().target.c_str());

  loop.call_soon([] { say("call_soon: first"); });
  loop.call_soon([] { say("call_soon: second (FIFO)"); });
  loop.call_later(0.20, [] { say("call_later(0.20) fired"); });
  loop.call_later(0.05, [] { say("call_later(0.05) fired"); });
  TimerHandle never = loop.call_later(0.10, [] { say("this timer was cancelled: never printed"); });
  never.cancel();

  auto a = loop.create_task(worker("a", 0.15, 1), "a");
  auto b = loop.create_task(worker("b", 0.10, 2), "b");
  auto slow = loop.create_task(worker("slow", 10.0, 3), "slow");
  loop.call_later(0.12, [slow]() mutable {
    say("cancelling task 'slow'");
    slow.cancel("demo is over");
  });

  say("running a blocking job on the thread pool");
  int from_thread = co_await loop.run_in_executor(nullptr, [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    return 40;
  });
  std::printf("[%7.3f s] thread-pool job returned %d\n", loop.time() - t0, from_thread);

  int sum = co_await a + co_await b;
  try {
    co_await slow;
  } catch (const CancelledError& e) {
    std::printf("[%7.3f s] task 'slow' was cancelled: %s\n", loop.time() - t0, e.message().c_str());
  }
  co_await sleep(0.1);  // let the 0.20 s timer fire
  std::printf("[%7.3f s] result: %d + %d = %d\n", loop.time() - t0, sum, from_thread, sum + from_thread);
  co_return sum + from_thread == 43 ? 0 : 1;
}

int main() {
  return examples::run_example([] { return run(demo()); });
}
