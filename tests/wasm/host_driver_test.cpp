// Runs under Node: a program driven by the host's event loop through eddy::wasm::run_main, the
// non-blocking alternative to run_until_complete. Checks that a 10,000-step call_soon chain runs
// in a few batched host tasks, that a 300 ms sleep uses one host timer and almost no CPU, and that
// the result reaches JS through Module.eddyResult.
#include <emscripten.h>

#include <cstdio>

#include "eddy/eddy.hpp"
#include "host/host_driver.hpp"

// clang-format off
EM_JS(double, cpu_ms, (), { const u = process.cpuUsage(); return (u.user + u.system) / 1000; });
EM_JS(void, exit_when_settled, (), {
  Module.eddyResult.then(v => { console.log('main resolved with ' + v); process.exit(v); },
                         e => { console.error('main rejected: ' + e.message); process.exit(3); });
});
// clang-format on

using namespace eddy;

static int failures = 0;
#define EXPECT(cond)                                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::printf("FAILED: %s (line %d)\n", #cond, __LINE__);                \
      ++failures;                                                            \
    }                                                                        \
  } while (0)

static Coro<int> app() {
  EventLoop& loop = get_running_loop();
  // A chain of 10,000 callbacks, each scheduled by the previous one.
  int steps = 0;
  Future<void> chain_done = loop.create_future<void>();
  struct Step {
    EventLoop* loop;
    int* steps;
    Future<void>* done;
    void operator()() const {
      if (++*steps == 10000)
        done->set_result();
      else
        loop->call_soon(*this);
    }
  };
  auto before = wasm::driver_stats();
  loop.call_soon(Step{&loop, &steps, &chain_done});
  co_await chain_done;
  auto after = wasm::driver_stats();
  std::printf("chain: %d steps in %llu host tasks, %llu passes\n", steps,
              (unsigned long long)(after.host_tasks - before.host_tasks),
              (unsigned long long)(after.passes - before.passes));
  EXPECT(steps == 10000);
  EXPECT(after.host_tasks - before.host_tasks < 200);  // batched, not one host task per callback

  // Sleeping: one host timer, CPU idle.
  const double cpu0 = cpu_ms();
  const double t0 = loop.time();
  before = wasm::driver_stats();
  co_await sleep(0.3);
  after = wasm::driver_stats();
  const double cpu = cpu_ms() - cpu0;
  const double waited = loop.time() - t0;
  std::printf("sleep(0.3): waited %.3f s, cpu %.1f ms, %llu host timers, %llu host tasks\n", waited,
              cpu, (unsigned long long)(after.host_timers - before.host_timers),
              (unsigned long long)(after.host_tasks - before.host_tasks));
  EXPECT(waited >= 0.3);
  EXPECT(cpu < 100.0);
  EXPECT(after.host_timers - before.host_timers <= 2);
  co_return failures == 0 ? 0 : 1;
}

int main() {
  wasm::run_main(app());
  exit_when_settled();
  return 0;  // the runtime stays alive: the host's event loop now drives Eddy
}
