#include "selector_backend.hpp"

#include <chrono>

#include "eddy/executor.hpp"

namespace eddy::selector {

void ConditionWaiter::wait(double timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (timeout < 0) {
    cv_.wait(lock, [&] { return woken_; });
  } else if (timeout > 0 && !woken_) {
    cv_.wait_for(lock, std::chrono::duration<double>(timeout), [&] { return woken_; });
  }
  woken_ = false;
}

void ConditionWaiter::wake() noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

double SteadyClock::now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

SelectorBackend::SelectorBackend(SelectorOptions options)
    : options_(std::move(options)), clock_(options_.clock.get()), waiter_(options_.waiter.get()) {}

void SelectorBackend::poll(double timeout) {
  if (options_.virtual_time && timeout > 0) {
    waiter_->wait(0);  // consume a wake-up that may already be pending
    static_cast<VirtualClock*>(clock_)->advance(timeout);
    return;
  }
  if (!waiter_->can_block()) timeout = 0;
  waiter_->wait(timeout);
}

std::shared_ptr<Executor> SelectorBackend::make_default_executor() {
  if (!options_.has_threads) return nullptr;
  return std::make_shared<ThreadPoolExecutor>();
}

void SelectorBackend::describe(Capabilities& caps) const {
  caps.target = options_.target;
  for (auto name : capability_method_names()) {
    Capability c{std::string(name), false, {}};
    if (name == "run_once" || name == "call_soon_threadsafe" || name == "shutdown_asyncgens") {
      c.supported = true;
      if (!options_.has_threads && name == "call_soon_threadsafe")
        c.note = "single-threaded build: behaves as call_soon";
    } else if (name == "run_forever" || name == "run_until_complete") {
      c.supported = waiter_->can_block();
      if (!c.supported) c.note = options_.blocking_note;
    } else if (name == "run_in_executor") {
      c.supported = options_.has_threads;
      if (!c.supported) c.note = "this build has no threads (a Web Worker executor is planned)";
    } else if (name == "add_signal_handler" || name == "remove_signal_handler" ||
               name == "subprocess_exec" || name == "subprocess_shell") {
      c.note = "no signals or processes on this target";
    } else {
      c.note = "not implemented yet: the virtual network comes with the browser milestone";
    }
    caps.methods.push_back(std::move(c));
  }
}

}  // namespace eddy::selector

namespace eddy::testing {

LoopRef new_virtual_clock_loop() {
  selector::SelectorOptions o;
  o.target = "virtual-clock";
  o.clock = std::make_unique<selector::VirtualClock>();
  o.waiter = std::make_unique<selector::ConditionWaiter>();
  o.virtual_time = true;
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  o.has_threads = false;
#endif
  return LoopRef(new EventLoop(std::make_unique<selector::SelectorBackend>(std::move(o))));
}

static selector::SelectorBackend* virtual_backend(EventLoop& loop) {
  auto* b = dynamic_cast<selector::SelectorBackend*>(&loop.backend());
  if (!b || !dynamic_cast<selector::VirtualClock*>(&b->clock())) return nullptr;
  return b;
}

bool is_virtual_clock_loop(EventLoop& loop) { return virtual_backend(loop) != nullptr; }

void advance_virtual_clock(EventLoop& loop, double seconds) {
  auto* b = virtual_backend(loop);
  if (!b) throw ValueError("advance_virtual_clock: not a virtual-clock loop");
  static_cast<selector::VirtualClock&>(b->clock()).advance(seconds);
}

}  // namespace eddy::testing
