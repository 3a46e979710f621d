// The emulated selector backend, platform-free so it builds on every target: in WebAssembly it is
// the default loop's backend (with the host's clock), and with a virtual clock it is the
// deterministic test loop on every target. Waiting is delegated to a Waiter: a condition variable
// natively, the host's sleep under Node, and nothing at all on a browser page, where the host's
// event loop drives Eddy instead (see wasm/host/host_driver.hpp).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "eddy/backend.hpp"
#include "eddy/loop.hpp"
#include "virtual_network.hpp"

namespace eddy::selector {

// How poll() waits when nothing is due.
class Waiter {
 public:
  virtual ~Waiter() = default;
  // Blocks for at most `timeout` seconds (negative: until woken); returns at once if woken since
  // the last call.
  virtual void wait(double timeout) = 0;
  virtual void wake() noexcept = 0;
  virtual bool can_block() const noexcept { return true; }
};

// A condition variable (native targets, and WebAssembly builds with threads).
class ConditionWaiter final : public Waiter {
 public:
  void wait(double timeout) override;
  void wake() noexcept override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double now() = 0;
};

class SteadyClock final : public Clock {
 public:
  double now() override;
};

// Time that moves only when the loop would otherwise wait: a wait of `t` seconds is skipped and
// the clock advanced by `t`. Tests can also advance it by hand.
class VirtualClock final : public Clock {
 public:
  double now() override { return now_; }
  void advance(double seconds) { now_ += seconds; }

 private:
  double now_ = 0.0;
};

#ifdef EDDY_WASM_WORKERS
// WebAssembly with threads: the Web Workers Emscripten starts with the module
// (-sPTHREAD_POOL_SIZE). Executors stay within them, since a thread beyond the pool starts only
// once the page's thread yields to the browser.
inline constexpr std::size_t default_executor_workers = EDDY_WASM_WORKERS;
#else
inline constexpr std::size_t default_executor_workers = 0;
#endif

struct SelectorOptions {
  std::string target;
  std::unique_ptr<Clock> clock;
  std::unique_ptr<Waiter> waiter;
  bool virtual_time = false;     // skip timed waits by advancing the clock
  bool has_threads = true;       // run_in_executor and cross-thread wakeups available
  std::size_t executor_workers =
      default_executor_workers;  // the default executor's threads (0: asyncio's)
  std::string blocking_note;     // why run_forever is unavailable, if the waiter cannot block
  std::string executor_note;     // where run_in_executor runs, or why it cannot
  vnet::NetworkOptions network;  // the loop's virtual network
};

class SelectorBackend final : public Backend {
 public:
  explicit SelectorBackend(SelectorOptions options);
  double now() override { return clock_->now(); }
  void poll(double timeout) override;
  void wakeup() noexcept override { waiter_->wake(); }
  bool can_block() const noexcept override { return waiter_->can_block(); }
  std::optional<double> io_due_in() override;
  std::shared_ptr<Executor> make_default_executor() override;
  void describe(Capabilities& caps) const override;
  void close() override;
  Clock& clock() noexcept { return *clock_; }
  vnet::Network& network() noexcept { return network_; }

  // The virtual network behind the stream, datagram, name and raw-socket calls.
  StreamEndpointPtr connect_stream(const SocketAddress& remote, const ConnectOptions& options,
                                   StreamEndpoint::ConnectDone done) override;
  StreamListenerPtr bind_stream(const SocketAddress& local, const ListenOptions& options) override;
  StreamEndpointPtr adopt_stream(int fd, const ConnectOptions& options) override;
  StreamEndpointPtr adopt_pipe(int fd, const char* method) override;
  // NotSupportedError for a device descriptor of Emscripten's (WebAssembly only).
  [[noreturn]] void refuse_host_descriptor(int fd, const char* method) const;
  void getaddrinfo(const std::string& host, const std::string& service,
                   const AddrInfoOptions& options, ResolveDone done) override;
  void getnameinfo(const SocketAddress& address, int flags, NameInfoDone done) override;
  DatagramEndpointPtr open_datagram(const DatagramOptions& options) override;
  DatagramEndpointPtr adopt_datagram(int fd) override;
  void watch_fd(int fd, bool readable, bool writable,
                std::function<void(bool, bool)> on_ready) override;
  void unwatch_fd(int fd) noexcept override;
  std::size_t sock_recv(int fd, std::span<char> buffer, SocketAddress* from,
                        std::error_code& error) override;
  std::size_t sock_send(int fd, std::string_view data, const SocketAddress* to,
                        std::error_code& error) override;
  int sock_accept(int fd, SocketAddress* peer, std::error_code& error) override;
  void sock_connect(int fd, const SocketAddress& address, std::error_code& error) override;
  std::error_code sock_connect_result(int fd) override;
  SocketFacts socket_facts(int fd) override;
  std::size_t sendfile_chunk(int sock, int file, std::uint64_t offset, std::size_t count,
                             std::error_code& error) override;

 private:
  SelectorOptions options_;
  Clock* clock_;
  Waiter* waiter_;
  std::shared_ptr<vnet::detail::NetworkCore> net_;
  vnet::Network network_;
  std::vector<char> sendfile_buffer_;
};

}  // namespace eddy::selector

namespace eddy::testing {

// A loop on the emulated selector with a virtual clock: timers fire in order without sleeping.
LoopRef new_virtual_clock_loop();
// Advances a virtual-clock loop's time by hand (e.g. to make a callback look slow).
void advance_virtual_clock(EventLoop& loop, double seconds);
bool is_virtual_clock_loop(EventLoop& loop);

}  // namespace eddy::testing
