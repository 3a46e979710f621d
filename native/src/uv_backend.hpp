// The native backend's class, shared by the files that implement its parts: the loop's wait and
// wakeup (uv_backend.cpp), TCP (tcp.cpp), Unix sockets (unix_socket.cpp), names (dns.cpp).
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "eddy/backend.hpp"
#include "eddy/errors.hpp"
#include "eddy/policy.hpp"

namespace eddy::native {

// A write to a reset socket must fail with EPIPE, not kill the process: like Python and Node,
// the first native loop sets SIGPIPE to SIG_IGN (unless the program installed a handler).
void ignore_sigpipe() noexcept;
// libuv takes descriptors 0-2 for its own and then asserts when closing them: like Node, each
// native loop first opens /dev/null on any of them the program had closed (a daemon's stdin).
void ensure_stdio_open() noexcept;
// Per-read buffers must not cost page faults: the first native loop raises glibc's heap
// thresholds the way glibc itself does after a large block is freed (see uv_backend.cpp).
void keep_freed_read_buffers() noexcept;

class UvBackend final : public Backend {
 public:
  UvBackend() {
    ignore_sigpipe();
    ensure_stdio_open();
    keep_freed_read_buffers();
    if (int rc = uv_loop_init(&loop_)) throw std::system_error(-rc, std::generic_category(), "uv_loop_init");
    uv_async_init(&loop_, &async_, [](uv_async_t*) {});
    uv_timer_init(&loop_, &timer_);
    // The wakeup handle does not keep libuv alive by itself: with nothing else registered, a
    // zero-timeout poll has nothing to report and is skipped (see poll()).
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  }
  ~UvBackend() override { close(); }

  double now() override { return static_cast<double>(uv_hrtime()) * 1e-9; }
  std::uint64_t ticks() noexcept override;

  void poll(double timeout) override {
    if (EDDY_UNLIKELY(!fds_to_check_.empty())) stop_watching_closed_fds();
    if (timeout == 0) {
      // No transport, server, signal or request is registered: no I/O can be ready, and a
      // cross-thread wakeup is seen through the core's inbox, so the syscall would only cost.
      if (!closed_ && uv_loop_alive(&loop_)) uv_run(&loop_, UV_RUN_NOWAIT);
      return;
    }
    if (!closed_) wait(timeout);
  }

  void wakeup() noexcept override { uv_async_send(&async_); }

  void describe(Capabilities& caps) const override {
    caps.target = std::string("native (libuv ") + uv_version_string() + ")";
    for (auto name : capability_method_names()) {
      Capability c{std::string(name), false, {}};
      if (name == "run_forever" || name == "run_until_complete" || name == "run_once" ||
          name == "call_soon_threadsafe" || name == "run_in_executor" || name == "create_connection" ||
          name == "create_server" || name == "create_unix_connection" || name == "create_unix_server" ||
          name == "connect_accepted_socket" || name == "getaddrinfo" || name == "getnameinfo" ||
          name == "create_datagram_endpoint" || name == "add_signal_handler" ||
          name == "remove_signal_handler" || name == "connect_read_pipe" || name == "connect_write_pipe" ||
          name == "subprocess_exec" || name == "subprocess_shell" || name == "add_reader" ||
          name == "remove_reader" || name == "add_writer" || name == "remove_writer" || name == "sock_recv" ||
          name == "sock_recv_into" || name == "sock_recvfrom" || name == "sock_recvfrom_into" ||
          name == "sock_sendall" || name == "sock_sendto" || name == "sock_connect" || name == "sock_accept" || name == "sock_sendfile" ||
          name == "sendfile" || name == "start_tls" || name == "shutdown_asyncgens") {
        c.supported = true;
      } else {
        c.note = "not implemented yet on the native backend (see docs/targets.md)";
      }
      caps.methods.push_back(std::move(c));
    }
  }

  StreamEndpointPtr connect_stream(const SocketAddress& remote, const ConnectOptions& options,
                                   StreamEndpoint::ConnectDone done) override;
  StreamListenerPtr bind_stream(const SocketAddress& local, const ListenOptions& options) override;
  StreamEndpointPtr adopt_stream(int fd, const ConnectOptions& options) override;
  void getaddrinfo(const std::string& host, const std::string& service, const AddrInfoOptions& options,
                   ResolveDone done) override;
  void getnameinfo(const SocketAddress& address, int flags, NameInfoDone done) override;
  DatagramEndpointPtr open_datagram(const DatagramOptions& options) override;
  StreamEndpointPtr adopt_pipe(int fd, const char* method) override;
  SpawnedProcess spawn_process(const ProcessSpec& spec, std::function<void(int)> on_exit) override;
  void watch_fd(int fd, bool readable, bool writable, std::function<void(bool, bool)> on_ready) override;
  void unwatch_fd(int fd) noexcept override;
  std::size_t sock_recv(int fd, std::span<char> buffer, SocketAddress* from, std::error_code& error) override;
  std::size_t sock_send(int fd, std::string_view data, const SocketAddress* to, std::error_code& error) override;
  int sock_accept(int fd, SocketAddress* peer, std::error_code& error) override;
  void sock_connect(int fd, const SocketAddress& address, std::error_code& error) override;
  std::error_code sock_connect_result(int fd) override;
  SocketFacts socket_facts(int fd) override;
  std::unique_ptr<InterruptWatch> watch_interrupt(std::function<void()> first) override;
  std::size_t sendfile_chunk(int sock, int file, std::uint64_t offset, std::size_t count,
                             std::error_code& error) override;
  void watch_signal(int sig, std::function<void()> on_signal) override;
  void unwatch_signal(int sig) noexcept override;
  void check_signal(int sig) const override;
  DatagramEndpointPtr adopt_datagram(int fd) override;
  uv_loop_t* uv() noexcept { return &loop_; }

  void close() override {
    if (closed_) return;
    closed_ = true;
    while (!signals_.empty()) unwatch_signal(signals_.begin()->first);
    while (!polls_.empty()) unwatch_fd(polls_.begin()->first);
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

 private:
  // poll() with a timeout: blocks in libuv until I/O, wakeup() or the timeout (< 0: none).
  void wait(double timeout);

  uv_loop_t loop_;
  uv_async_t async_;
  uv_timer_t timer_;
  bool closed_ = false;
  std::map<int, uv_signal_t*> signals_;
  std::map<int, uv_poll_t*> polls_;
  // fds whose watch started or changed since the last poll. libuv registers them with epoll only
  // when it next polls, and aborts the process if one was closed meanwhile (epoll_ctl: EBADF);
  // asyncio's selector just never reports such an fd. Those are stopped before polling.
  std::vector<int> fds_to_check_;
  void stop_watching_closed_fds() noexcept;
};


// Binding a Unix socket path first removes a stale socket file there, as asyncio does (never
// another kind of file).
void remove_stale_unix_socket(const std::string& path);

// libuv status codes as std::error_code: errno values in the generic category (so they compare
// equal to std::errc), resolver (EAI) failures in a category of their own.
std::error_code uv_error(int status) noexcept;
const std::error_category& resolver_category() noexcept;

}  // namespace eddy::native
