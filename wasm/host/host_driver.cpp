#include "host_driver.hpp"

#include <emscripten.h>

#include <string>

#include "selector/virtual_network.hpp"
#include "selector/virtual_sockets.hpp"

// clang-format off
EM_JS(void, eddy_js_schedule, (double delay_ms), {
  const host = Module.__eddyHost || (Module.__eddyHost = { immediate: false, timer: null, due: 0 });
  if (delay_ms <= 0) {
    if (host.immediate) return;
    host.immediate = true;
    const run = () => { host.immediate = false; Module._eddy_host_tick(0); };
    if (typeof setImmediate === 'function') setImmediate(run);
    else {
      if (!host.channel) { host.channel = new MessageChannel(); host.channel.port1.onmessage = () => host.pending(); }
      host.pending = run; host.channel.port2.postMessage(0);
    }
    return;
  }
  const due = performance.now() + delay_ms;
  if (host.timer !== null && host.due <= due) return;
  if (host.timer !== null) clearTimeout(host.timer);
  host.due = due;
  host.timer = setTimeout(() => { host.timer = null; Module._eddy_host_tick(1); }, Math.ceil(delay_ms));
});
EM_JS(void, eddy_js_cancel_timer, (), {
  const host = Module.__eddyHost;
  if (host && host.timer !== null) { clearTimeout(host.timer); host.timer = null; }
});
EM_JS(void, eddy_js_init_result, (), {
  if (!Module.eddyResult) Module.eddyResult = new Promise((res, rej) => { Module.__eddyResolve = res; Module.__eddyReject = rej; });
});
EM_JS(void, eddy_js_resolve, (int ok, int value, const char* error), {
  if (ok) Module.__eddyResolve(value); else Module.__eddyReject(new Error(UTF8ToString(error)));
});
// clang-format on

namespace eddy::wasm {

namespace {

class Driver final : public HostDriver {
 public:
  void schedule(double delay) override { eddy_js_schedule(delay * 1000.0); }
  EventLoop* loop = nullptr;
  DriverStats stats;
};

Driver g_driver;
LoopRef g_main_loop;
struct MainOutcome {
  bool done = false;
  bool ok = true;
  int value = 0;
  std::string error;
} g_outcome;

// Called between passes once run_main's task is done: close its loop and settle the Promise.
void finish_main() {
  MainOutcome outcome = std::move(g_outcome);
  g_outcome = {};
  stop_driving();
  LoopRef loop = std::move(g_main_loop);
  loop->close();
  eddy_js_resolve(outcome.ok, outcome.value, outcome.error.c_str());
}

}  // namespace

void drive(EventLoop& loop) {
  g_driver.loop = &loop;
  loop.set_host_driver(&g_driver);
  vnet::network(loop).core().host_driven = true;  // WebSocket routes can work now
}

void stop_driving() {
  if (g_driver.loop) {
    g_driver.loop->set_host_driver(nullptr);
    vnet::network(*g_driver.loop).core().host_driven = false;
  }
  g_driver.loop = nullptr;
  eddy_js_cancel_timer();
}

DriverStats driver_stats() { return g_driver.stats; }

void run_main(Coro<int> main) {
  eddy_js_init_result();
  g_main_loop = new_event_loop();
  EventLoop& loop = *g_main_loop;
  drive(loop);
  Task<int> task = loop.create_task(std::move(main), {.name = "main"});
  task.add_done_callback([](Task<int> t) {
    int value = 0;
    std::string error;
    bool ok = true;
    try {
      value = t.result();
    } catch (const std::exception& e) {
      ok = false;
      error = e.what();
    } catch (const BaseException& e) {
      ok = false;
      error = std::string("CancelledError: ") + e.what();
    }
    // The loop cannot be closed from inside its own pass: the driver finishes after it.
    g_outcome = {true, ok, value, error};
  });
}

}  // namespace eddy::wasm

// A wake-up from another thread (an executor job done), posted to the page's thread: the loop
// has something in its inbox, so a pass runs as soon as the host allows.
extern "C" EMSCRIPTEN_KEEPALIVE void eddy_host_wake() {
  if (eddy::wasm::g_driver.loop) eddy::wasm::g_driver.schedule(0);
}

extern "C" EMSCRIPTEN_KEEPALIVE void eddy_host_tick(int from_timer) {
  using namespace eddy::wasm;
  if (!g_driver.loop) return;
  eddy::EventLoop& loop = *g_driver.loop;
  if (from_timer)
    ++g_driver.stats.host_timers;
  else
    ++g_driver.stats.host_tasks;
  // Run passes in one host task while work is ready, for at most ~8 ms, then yield to the host.
  const double budget_end = loop.time() + 0.008;
  do {
    loop.run_once(0);
    ++g_driver.stats.passes;
    if (g_outcome.done && &loop == g_main_loop.get()) {
      finish_main();
      return;
    }
    auto next = loop.time_until_work();
    if (!next || *next > 0) break;
  } while (loop.time() < budget_end);
}
