// The seam between the platform-free loop core and a platform. A backend waits for I/O with the
// core's timeout, reports completions by scheduling callbacks on the loop, and can be woken from
// any thread. It says up front, in a capability table, which loop methods its target supports.
// libuv (native/) and the emulated selector (wasm/) implement it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "eddy/endpoints.hpp"
#include "eddy/io_options.hpp"
#include "eddy/net.hpp"

namespace eddy {

class EventLoop;
class Executor;

// One row of the capability table: a loop method and whether this target can do it.
struct Capability {
  std::string method;
  bool supported = false;
  std::string note;  // why not, or what it does differently here
};

struct Capabilities {
  std::string target;  // e.g. "native (libuv 1.44.2)", "wasm (node)", "virtual-clock"
  std::vector<Capability> methods;

  const Capability* find(std::string_view method) const noexcept;
  bool supports(std::string_view method) const noexcept;
  // Throws NotSupportedError naming `method` and the target unless it is supported.
  void require(std::string_view method) const;
};

// The one list of loop methods the capability table covers (docs/targets.md mirrors it).
const std::vector<std::string_view>& capability_method_names();

class Backend {
 public:
  virtual ~Backend() = default;

  // Monotonic time in seconds; the loop's time().
  virtual double now() = 0;
  // A counter that runs at a constant rate alongside now() and is cheaper to read (the CPU's
  // invariant time-stamp counter), or 0 where there is none (and for clocks that are not real
  // time, like the virtual-clock loop's). The inspector times every callback with it, calibrating
  // its rate against now().
  virtual std::uint64_t ticks() noexcept { return 0; }
  // Wait for I/O for at most `timeout` seconds (negative: no limit, zero: just look) and report
  // what completed. Returns early after wakeup(). Only the loop's thread calls this.
  virtual void poll(double timeout) = 0;
  // Makes a blocked or future poll() return promptly. Any thread.
  virtual void wakeup() noexcept = 0;
  // Whether poll() may block the calling thread (false on a browser page's main thread).
  virtual bool can_block() const noexcept { return true; }
  // Seconds until poll() has I/O to report without waiting (0: now), if the backend knows it
  // (an emulated network does); nullopt: nothing pending or unknown. Host drivers use it.
  virtual std::optional<double> io_due_in() { return std::nullopt; }
  // The default executor for run_in_executor, or null when the target has none.
  virtual std::shared_ptr<Executor> make_default_executor();
  // Fills the capability table for this target.
  virtual void describe(Capabilities& caps) const = 0;
  // Called by EventLoop::close(); releases platform resources.
  virtual void close() {}

  // ---- Streams and names (TCP, Unix sockets, pipes, DNS). The defaults throw
  // NotSupportedError; the capability table says which a target has. -----------------------
  // Starts connecting; `done` is called once from poll() unless the endpoint is closed first.
  virtual StreamEndpointPtr connect_stream(const SocketAddress& remote, const ConnectOptions& options,
                                           StreamEndpoint::ConnectDone done);
  // Binds (system_error on failure); the listener accepts once listen() is called.
  virtual StreamListenerPtr bind_stream(const SocketAddress& local, const ListenOptions& options);
  // Takes over a connected stream socket or pipe fd (connect_accepted_socket, sock=).
  virtual StreamEndpointPtr adopt_stream(int fd, const ConnectOptions& options);
  using ResolveDone = std::function<void(std::vector<AddrInfo>, std::error_code)>;
  // `done` is called once from poll(). Errors use the platform's resolver category.
  virtual void getaddrinfo(const std::string& host, const std::string& service,
                           const AddrInfoOptions& options, ResolveDone done);
  // A bound and/or connected datagram socket (system_error on failure).
  virtual DatagramEndpointPtr open_datagram(const DatagramOptions& options);
  virtual DatagramEndpointPtr adopt_datagram(int fd);
  // Pipes: takes over a pipe, socket or character-device fd for `method` (connect_read_pipe or
  // connect_write_pipe, which errors name).
  virtual StreamEndpointPtr adopt_pipe(int fd, const char* method);
  // Starts a child; `on_exit(returncode)` is called once from poll() (negative: killed by that
  // signal, as asyncio reports it) unless the process endpoint is closed first.
  virtual SpawnedProcess spawn_process(const ProcessSpec& spec, std::function<void(int)> on_exit);
  // Readiness watching for add_reader/add_writer (level-triggered): `on_ready(readable,
  // writable)` is called from poll(). Calling again for the same fd changes the interest.
  virtual void watch_fd(int fd, bool readable, bool writable, std::function<void(bool, bool)> on_ready);
  virtual void unwatch_fd(int /*fd*/) noexcept {}
  // Non-blocking socket calls for sock_*: `error` is std::errc::operation_would_block when the
  // call must wait for readiness. sock_accept returns the new fd; sock_connect may report
  // operation_in_progress, after which sock_connect_result gives SO_ERROR.
  virtual std::size_t sock_recv(int fd, std::span<char> buffer, SocketAddress* from, std::error_code& error);
  virtual std::size_t sock_send(int fd, std::string_view data, const SocketAddress* to, std::error_code& error);
  virtual int sock_accept(int fd, SocketAddress* peer, std::error_code& error);
  virtual void sock_connect(int fd, const SocketAddress& address, std::error_code& error);
  virtual std::error_code sock_connect_result(int fd);
  // What the sock_* calls check first: the socket's kind, and whether its calls block (asyncio's
  // debug mode refuses blocking sockets). Throws std::system_error for a descriptor that is no
  // socket (EBADF, ENOTSOCK).
  struct SocketFacts {
    SocketKind kind;
    bool blocking;
    AddressFamily family = AddressFamily::unspec;  // the socket's (sock_connect resolves with it)
  };
  virtual SocketFacts socket_facts(int fd);
  // Files for sendfile: zero-copy from `file` at `offset` to the socket (what the kernel took
  // now; would_block when full), pread for the fallback, and the file position afterwards.
  virtual std::size_t sendfile_chunk(int sock, int file, std::uint64_t offset, std::size_t count,
                                     std::error_code& error);
  // The last two are the platform's file access (eddy/detail/files.hpp) unless overridden.
  virtual std::size_t read_file(int file, std::uint64_t offset, std::span<char> buffer, std::error_code& error);
  virtual void seek_file(int file, std::uint64_t offset) noexcept;
  // TLS: wraps a connected endpoint; `done` reports the handshake's outcome once (from poll()),
  // unless the returned endpoint is closed first. Errors carry a readable message.
  using HandshakeDone = std::function<void(std::error_code, std::string)>;
  virtual StreamEndpointPtr wrap_tls(StreamEndpointPtr inner, const TlsContext& context,
                                     std::string_view server_hostname, HandshakeDone done);
  // Signals: `on_signal` is called from poll() after each delivery of `sig`. ValueError for an
  // invalid number, RuntimeError for an uncatchable one.
  virtual void watch_signal(int sig, std::function<void()> on_signal);
  virtual void unwatch_signal(int /*sig*/) noexcept {}
  // Throws what watch_signal would for a bad number (remove_signal_handler validates too).
  virtual void check_signal(int sig) const;
  // Ctrl-C for Runner::run, as asyncio's Runner takes it: where this thread may (the main thread,
  // SIGINT at its default disposition, a platform with signals), SIGINT is caught until the watch
  // is destroyed, which puts the default back. The first SIGINT calls `first` from the loop; a
  // second one ends the process at once, as the default would, even if the loop is stuck.
  // Null where SIGINT is left alone.
  class InterruptWatch {
   public:
    virtual ~InterruptWatch() = default;
    virtual int interrupts() const noexcept = 0;  // SIGINTs caught so far
  };
  virtual std::unique_ptr<InterruptWatch> watch_interrupt(std::function<void()> first);
  using NameInfoDone = std::function<void(NameInfo, std::error_code)>;
  virtual void getnameinfo(const SocketAddress& address, int flags, NameInfoDone done);

  void attach(EventLoop* loop) noexcept { loop_ = loop; }

 protected:
  EventLoop* loop_ = nullptr;
};

}  // namespace eddy
