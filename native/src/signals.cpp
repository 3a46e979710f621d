// Signals for the native backend: one uv_signal_t per watched signal (libuv turns the OS handler
// into a pipe write, so the loop's callback never runs inside the signal handler). Removing the
// last watcher restores the default disposition, as asyncio does. Runner's Ctrl-C watch has a
// handler of its own: its second SIGINT must end the process even when the loop is stuck.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

// ---- Runner's Ctrl-C ---------------------------------------------------------------------------

namespace {
std::atomic<int> interrupt_count{0};
std::atomic<uv_async_t*> interrupt_wakeup{nullptr};

// Async-signal-safe: uv_async_send is, and so are signal() and raise().
extern "C" void on_interrupt(int) {
  const int saved_errno = errno;
  if (interrupt_count.fetch_add(1) == 0) {
    if (uv_async_t* wakeup = interrupt_wakeup.load()) uv_async_send(wakeup);
  } else {
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
  }
  errno = saved_errno;
}

class UvInterruptWatch final : public Backend::InterruptWatch {
 public:
  UvInterruptWatch(uv_loop_t* loop, std::function<void()> first)
      : first_(std::move(first)), wakeup_(new uv_async_t) {
    uv_async_init(loop, wakeup_, [](uv_async_t* a) {
      if (auto* self = static_cast<UvInterruptWatch*>(a->data)) {
        try {
          self->first_();
        } catch (...) {
        }
      }
    });
    wakeup_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(wakeup_));  // keeps no loop running
    interrupt_count = 0;
    interrupt_wakeup = wakeup_;
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
  }
  ~UvInterruptWatch() override {
    struct sigaction now {};
    // Only our own handler goes: one the program installed meanwhile stays, as in asyncio.
    if (::sigaction(SIGINT, nullptr, &now) == 0 && now.sa_handler == on_interrupt)
      ::signal(SIGINT, SIG_DFL);
    interrupt_wakeup = nullptr;
    wakeup_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(wakeup_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  }
  int interrupts() const noexcept override { return interrupt_count.load(); }

 private:
  std::function<void()> first_;
  uv_async_t* wakeup_;
};
}  // namespace

std::unique_ptr<Backend::InterruptWatch> UvBackend::watch_interrupt(std::function<void()> first) {
  if (::getpid() != static_cast<pid_t>(::syscall(SYS_gettid)))
    return nullptr;  // not the main thread
  struct sigaction now {};
  if (::sigaction(SIGINT, nullptr, &now) != 0 || now.sa_handler != SIG_DFL) return nullptr;
  if (interrupt_wakeup.load() != nullptr) return nullptr;  // an outer run on another loop has it
  return std::make_unique<UvInterruptWatch>(&loop_, std::move(first));
}

}  // namespace eddy::native
