// The WebAssembly default loop: the emulated selector with the host's clock. Under Node, and in a
// cross-origin-isolated Web Worker, a wait sleeps the thread with Atomics.wait (no busy loop); on
// a browser page's main thread nothing may block, so run_forever/run_until_complete are
// unsupported there and the host driver runs the loop. A build with threads (the wasm-threads
// preset) runs executor jobs on Web Workers and lets them wake the loop.
#include <emscripten.h>
#ifdef __EMSCRIPTEN_PTHREADS__
#include <emscripten/threading.h>
#endif

#include <atomic>

#include "../selector/selector_backend.hpp"
#include "../selector/virtual_sockets.hpp"

// clang-format off
// 0: a page (cannot block); 1: Node; 2: a Web Worker that may sleep with Atomics.wait.
EM_JS(int, eddy_js_host_kind, (), {
  if (typeof process === 'object' && process.versions && typeof process.versions.node === 'string') return 1;
  if (typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope &&
      typeof SharedArrayBuffer === 'function') return 2;
  return 0;
});
EM_JS(void, eddy_js_sleep_ms, (double ms), {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
});
// clang-format on

#ifdef __EMSCRIPTEN_PTHREADS__
extern "C" void eddy_host_wake();  // host_driver.cpp: runs a pass soon, on the page's thread
#endif

namespace eddy::selector {
namespace {

// Waits without threads: Node can sleep its thread; a page cannot block at all. With threads, a
// page still cannot block, but a worker's wake-up must reach the host driver: it is posted to the
// page's thread, which then runs a pass.
class HostWaiter final : public Waiter {
 public:
  explicit HostWaiter(bool node) : node_(node) {}
  void wait(double timeout) override {
    if (woken_.exchange(false) || timeout == 0 || !node_) return;
    if (timeout < 0)
      throw RuntimeError("deadlock: nothing scheduled and no thread can wake the loop");
    eddy_js_sleep_ms(timeout * 1000.0);
  }
  void wake() noexcept override {
    woken_ = true;
#ifdef __EMSCRIPTEN_PTHREADS__
    if (!emscripten_is_main_runtime_thread())
      emscripten_async_run_in_main_runtime_thread(EM_FUNC_SIG_V, eddy_host_wake);
#endif
  }
  bool can_block() const noexcept override { return node_; }

 private:
  bool node_;
  std::atomic<bool> woken_ = false;
};

}  // namespace
}  // namespace eddy::selector

namespace eddy::vnet::detail {
std::unique_ptr<Gateway> make_websocket_gateway(NetworkCore& net);
}

namespace eddy::platform {

std::unique_ptr<Backend> new_default_backend() {
  const int kind = eddy_js_host_kind();
  const bool node = kind != 0;  // may block: Node or a worker
  selector::SelectorOptions o;
  o.target = kind == 1 ? "wasm (node)" : kind == 2 ? "wasm (browser worker)" : "wasm (browser)";
  o.clock = std::make_unique<selector::SteadyClock>();
#ifdef __EMSCRIPTEN_PTHREADS__
  // Node and workers sleep on a condition variable (Atomics.wait on the shared heap) that an
  // executor's worker can signal; a page's thread never sleeps.
  if (node)
    o.waiter = std::make_unique<selector::ConditionWaiter>();
  else
    o.waiter = std::make_unique<selector::HostWaiter>(false);
  o.executor_note = "ThreadPoolExecutor on Web Workers (Emscripten pthreads; a pool of " +
                    std::to_string(selector::default_executor_workers) +
                    " started with the module)";
#else
  o.waiter = std::make_unique<selector::HostWaiter>(node);
  o.has_threads = false;
  o.executor_note =
      "this build is single-threaded; the wasm-threads build runs executor jobs on Web Workers "
      "(it needs a cross-origin-isolated page, or Node)";
#endif
  o.network.foreign_hosts_target = o.target;
  o.blocking_note =
      "a browser page's thread cannot block; drive the loop with eddy::wasm::run_main or "
      "eddy::wasm::drive (wasm/host/host_driver.hpp)";
  auto backend = std::make_unique<selector::SelectorBackend>(std::move(o));
  auto& net = backend->network().core();
  net.set_gateway(vnet::detail::make_websocket_gateway(net));  // null where there is no WebSocket
  return backend;
}

}  // namespace eddy::platform
