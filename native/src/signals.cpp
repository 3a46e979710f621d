// Signals for the native backend: one uv_signal_t per watched signal (libuv turns the OS handler
// into a pipe write, so the loop's callback never runs inside the signal handler). Removing the
// last watcher restores the default disposition, as asyncio does.
#include <csignal>
#include <map>

#include "uv_backend.hpp"

namespace eddy::native {

namespace {
struct SignalWatch {
  uv_signal_t handle;
  std::function<void()> on_signal;
};
}  // namespace

void UvBackend::check_signal(int sig) const {
  // Python's signal.valid_signals(): what sigfillset() includes, which leaves out the C
  // library's own real-time signals (32 and 33 with glibc).
  sigset_t all;
  sigfillset(&all);
  if (sig < 1 || sig >= NSIG || sigismember(&all, sig) != 1)
    throw ValueError("invalid signal number " + std::to_string(sig));
}

void UvBackend::watch_signal(int sig, std::function<void()> on_signal) {
  check_signal(sig);
  if (sig == SIGKILL || sig == SIGSTOP) throw RuntimeError("sig " + std::to_string(sig) + " cannot be caught");
  unwatch_signal(sig);
  auto* w = new SignalWatch{{}, std::move(on_signal)};
  uv_signal_init(&loop_, &w->handle);
  w->handle.data = w;
  int rc = uv_signal_start(&w->handle, [](uv_signal_t* h, int) { static_cast<SignalWatch*>(h->data)->on_signal(); }, sig);
  if (rc) {
    uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), [](uv_handle_t* h) { delete static_cast<SignalWatch*>(h->data); });
    if (rc == UV_EINVAL) throw RuntimeError("sig " + std::to_string(sig) + " cannot be caught");
    throw std::system_error(uv_error(rc), "signal");
  }
  signals_[sig] = &w->handle;
}

void UvBackend::unwatch_signal(int sig) noexcept {
  auto it = signals_.find(sig);
  if (it == signals_.end()) return;
  uv_signal_t* h = it->second;
  signals_.erase(it);
  uv_signal_stop(h);  // libuv restores the previous (default) disposition
  uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* h) { delete static_cast<SignalWatch*>(h->data); });
}

}  // namespace eddy::native
