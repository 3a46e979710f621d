#include "selector_backend.hpp"

#include <algorithm>
#include <chrono>

#include "eddy/detail/files.hpp"
#include "eddy/detail/tls.hpp"
#include "eddy/executor.hpp"
#include "virtual_sockets.hpp"

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
    : options_(std::move(options)),
      clock_(options_.clock.get()),
      waiter_(options_.waiter.get()),
      net_(std::make_shared<vnet::detail::NetworkCore>(options_.network,
                                                       [c = clock_] { return c->now(); })),
      network_(net_) {
  net_->on_host_io = [this] {
    if (loop_) loop_->notify_io();
  };
}

void SelectorBackend::poll(double timeout) {
  // Report what the network has due; wait only when nothing was, and never past its next event.
  if (net_->run() || timeout == 0) return;
  if (auto due = net_->due_in()) timeout = timeout < 0 ? *due : std::min(timeout, *due);
  if (timeout == 0) {
    net_->run();
    return;
  }
  if (options_.virtual_time && timeout > 0) {
    waiter_->wait(0);  // consume a wake-up that may already be pending
    static_cast<VirtualClock*>(clock_)->advance(timeout);
  } else {
    waiter_->wait(waiter_->can_block() ? timeout : 0);
  }
  net_->run();
}

void SelectorBackend::close() {
  net_->run();
}

std::optional<double> SelectorBackend::io_due_in() {
  return net_->due_in();
}

std::shared_ptr<Executor> SelectorBackend::make_default_executor() {
  if (!options_.has_threads) return nullptr;
  return std::make_shared<ThreadPoolExecutor>(options_.executor_workers);
}

void SelectorBackend::describe(Capabilities& caps) const {
  caps.target = options_.target;
  for (auto name : capability_method_names()) {
    Capability c{std::string(name), true, {}};
    if (name == "call_soon_threadsafe" && !options_.has_threads) {
      c.note = "single-threaded build: behaves as call_soon";
    } else if (name == "run_forever" || name == "run_until_complete") {
      c.supported = waiter_->can_block();
      if (!c.supported) c.note = options_.blocking_note;
    } else if (name == "run_in_executor") {
      c.supported = options_.has_threads;
      c.note = options_.executor_note;
      if (!c.supported && c.note.empty()) c.note = "this build has no threads";
    } else if (name == "add_signal_handler" || name == "remove_signal_handler" ||
               name == "subprocess_exec" || name == "subprocess_shell") {
      c.supported = false;
      c.note = "no signals or processes on this target";
    } else if (name == "sendfile" || name == "sock_sendfile") {
      c.note =
          "the virtual network copies the file into the socket as sendfile(2) would (in "
          "WebAssembly: files of Emscripten's file system)";
    } else if (name == "start_tls") {
      c.supported = platform::has_tls();
      c.note = c.supported ? "TLS over the virtual network's connections, as natively (OpenSSL)"
                           : "no TLS in WebAssembly (use a wss:// WebSocket in a browser)";
    } else if (name.starts_with("create_") || name.starts_with("sock_") ||
               name.ends_with("_reader") || name.ends_with("_writer") ||
               name.starts_with("connect_") || name.starts_with("getaddr") ||
               name.starts_with("getname")) {
      c.note = "on the loop's virtual network (eddy::vnet), not the host's";
    }
    caps.methods.push_back(std::move(c));
  }
}

// ---- The virtual network ---------------------------------------------------------------------

namespace {
using vnet::detail::Socket;

}  // namespace

StreamEndpointPtr SelectorBackend::connect_stream(const SocketAddress& remote,
                                                  const ConnectOptions& options,
                                                  StreamEndpoint::ConnectDone done) {
  const int fd = net_->open(Socket::Kind::stream, remote.family);
  try {
    if (options.local_addr) {
      try {
        net_->bind(fd, *options.local_addr);
      } catch (const std::system_error& e) {
        throw BindError(e.code(), "bind " + options.local_addr->to_string());
      }
    }
    net_->connect(fd, remote);
  } catch (...) {
    net_->close(fd);
    throw;
  }
  return vnet::detail::make_stream_endpoint(*net_, fd, std::move(done));
}

StreamListenerPtr SelectorBackend::bind_stream(const SocketAddress& local,
                                               const ListenOptions& options) {
  if (local.family == AddressFamily::unix_socket) net_->unlink_path(local.host());
  const int fd = net_->open(Socket::Kind::stream, local.family);
  try {
    net_->get(fd).reuse_port = options.reuse_port;
    net_->bind(fd, local);
  } catch (...) {
    net_->close(fd);
    throw;
  }
  return vnet::detail::make_listener(*net_, fd, options.backlog);
}

StreamEndpointPtr SelectorBackend::adopt_stream(int fd, const ConnectOptions&) {
  Socket& s = net_->get(fd);
  if (s.kind != Socket::Kind::stream || !s.connected)
    throw std::system_error(std::make_error_code(std::errc::not_connected),
                            "adopt: a connected stream socket");
  if (s.owner)
    throw RuntimeError("virtual socket " + std::to_string(fd) + " is already used by a transport");
  return vnet::detail::make_stream_endpoint(*net_, fd);
}

void SelectorBackend::refuse_host_descriptor(int fd, const char* method) const {
  throw NotSupportedError(method, net_->options.foreign_hosts_target,
                          "descriptor " + std::to_string(fd) +
                              " is Emscripten's (stdin or another device), which WebAssembly "
                              "cannot wait on; only the virtual network's pipes and sockets "
                              "(eddy::vnet) can be watched");
}

StreamEndpointPtr SelectorBackend::adopt_pipe(int fd, const char* method) {
  if (!net_->find(fd) && platform::is_open_file(fd)) {
    // A descriptor of the file system. A regular file: asyncio's check on the file's mode. A
    // device (stdin, say): in WebAssembly nothing can wait for it to be readable or writable.
    if (platform::is_regular_file(fd))
      throw ValueError("Pipe transport is for pipes/sockets only.");
    if (!net_->options.foreign_hosts_target.empty()) refuse_host_descriptor(fd, method);
  }
  Socket& s = net_->get(fd);
  if (s.owner)
    throw RuntimeError("virtual socket " + std::to_string(fd) + " is already used by a transport");
  return vnet::detail::make_stream_endpoint(*net_, fd);
}

void SelectorBackend::getaddrinfo(const std::string& host, const std::string& service,
                                  const AddrInfoOptions& options, ResolveDone done) {
  std::error_code ec;
  auto result = net_->resolve(host, service, options, ec);
  // A page or Node module has no DNS: a name the virtual network does not know may well exist,
  // so "Name or service not known" would mislead. The virtual-clock loop is a world of its own,
  // where an unknown name is that C library error.
  const std::string& target = net_->options.foreign_hosts_target;
  if (ec && ec.value() == -2 && !target.empty() && !host.empty() &&
      !(options.flags & kNumericHostFlag))
    throw NotSupportedError("getaddrinfo", target,
                            "no DNS: \"" + host +
                                "\" is no name on the virtual network (name an address with "
                                "eddy::vnet::Network::add_host, or reach a real server through a "
                                "WebSocket route: route_websocket)");
  net_->at(net_->now(), [done = std::move(done), result = std::move(result), ec]() mutable {
    done(std::move(result), ec);
  });
}

void SelectorBackend::getnameinfo(const SocketAddress& address, int flags, NameInfoDone done) {
  std::error_code ec;
  NameInfo info = net_->name_of(address, flags, ec);
  net_->at(net_->now(), [done = std::move(done), info = std::move(info), ec]() mutable {
    done(std::move(info), ec);
  });
}

DatagramEndpointPtr SelectorBackend::open_datagram(const DatagramOptions& options) {
  AddressFamily family = options.family;
  if (options.local) family = options.local->family;
  if (options.remote) family = options.remote->family;
  if (options.local && options.local->family == AddressFamily::unix_socket)
    net_->unlink_path(options.local->host());
  const int fd = net_->open(Socket::Kind::datagram, family);
  try {
    net_->get(fd).reuse_port = options.reuse_port;
    net_->get(fd).broadcast = options.allow_broadcast;
    if (options.local) net_->bind(fd, *options.local);
    if (options.remote) net_->connect(fd, *options.remote, "create_datagram_endpoint");
  } catch (...) {
    net_->close(fd);
    throw;
  }
  return vnet::detail::make_datagram_endpoint(*net_, fd);
}

DatagramEndpointPtr SelectorBackend::adopt_datagram(int fd) {
  Socket& s = net_->get(fd);
  if (s.kind != Socket::Kind::datagram)
    throw ValueError("A datagram socket was expected, got a socket of another type (fd " +
                     std::to_string(fd) + ")");
  if (s.owner)
    throw RuntimeError("virtual socket " + std::to_string(fd) + " is already used by a transport");
  return vnet::detail::make_datagram_endpoint(*net_, fd);
}

void SelectorBackend::watch_fd(int fd, bool readable, bool writable,
                               std::function<void(bool, bool)> on_ready) {
  // A file of the file system cannot be polled: EPERM, as epoll answers for a regular file. Nor
  // can a device in WebAssembly.
  if (!net_->find(fd) && platform::is_open_file(fd)) {
    if (!platform::is_regular_file(fd) && !net_->options.foreign_hosts_target.empty())
      refuse_host_descriptor(fd, readable ? "add_reader" : "add_writer");
    throw std::system_error(std::make_error_code(std::errc::operation_not_permitted),
                            readable ? "add_reader" : "add_writer");
  }
  net_->watch(fd, readable, writable, std::move(on_ready));
}

void SelectorBackend::unwatch_fd(int fd) noexcept {
  net_->unwatch(fd);
}

std::size_t SelectorBackend::sock_recv(int fd, std::span<char> buffer, SocketAddress* from,
                                       std::error_code& error) {
  return net_->recv(fd, buffer, from, error);
}

std::size_t SelectorBackend::sock_send(int fd, std::string_view data, const SocketAddress* to,
                                       std::error_code& error) {
  if (to) {
    if (Socket* s = net_->find(fd); s && s->kind == Socket::Kind::datagram)
      net_->check_datagram_destination(*to, "sock_sendto");
  }
  return net_->send(fd, data, to, error);
}

int SelectorBackend::sock_accept(int fd, SocketAddress* peer, std::error_code& error) {
  return net_->accept(fd, peer, error);
}

void SelectorBackend::sock_connect(int fd, const SocketAddress& address, std::error_code& error) {
  try {
    Socket& s = net_->get(fd);
    net_->connect(fd, address, "sock_connect");
    if (s.kind == Socket::Kind::stream)
      error = std::make_error_code(std::errc::operation_in_progress);
  } catch (const std::system_error& e) {
    error = e.code();
  }
}

std::error_code SelectorBackend::sock_connect_result(int fd) {
  Socket* s = net_->find(fd);
  if (!s) return std::make_error_code(std::errc::bad_file_descriptor);
  return s->connect_result;
}

// The network's sendfile(2): the file's bytes from `offset` go into the socket's send buffer, as
// many as it has room for (would_block when it has none), read at their offset, so the file
// position stays. As Linux, a file without offsets (a pipe) is refused with EINVAL.
std::size_t SelectorBackend::sendfile_chunk(int sock, int file, std::uint64_t offset,
                                            std::size_t count, std::error_code& error) {
  constexpr std::size_t kMaxChunk = 256 * 1024;
  Socket* s = net_->find(sock);
  if (!s || s->kind != Socket::Kind::stream) {
    error = std::make_error_code(s ? std::errc::invalid_argument : std::errc::bad_file_descriptor);
    return 0;
  }
  const std::size_t space = s->out ? s->out->send_space() : 0;
  if (space == 0) {
    net_->send(sock, {}, nullptr, error);  // the socket's error, or would_block
    return 0;
  }
  sendfile_buffer_.resize(std::min({count, space, kMaxChunk}));
  const std::size_t n = platform::read_file_at(file, offset, sendfile_buffer_, error);
  if (error == std::errc::invalid_seek) error = std::make_error_code(std::errc::invalid_argument);
  if (error || n == 0) return 0;
  return net_->send(sock, std::string_view(sendfile_buffer_.data(), n), nullptr, error);
}

// Virtual sockets never block.
Backend::SocketFacts SelectorBackend::socket_facts(int fd) {
  Socket* s = net_->find(fd);
  if (!s) throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor));
  switch (s->kind) {
    case Socket::Kind::stream:
    case Socket::Kind::listener:
      return {SocketKind::stream, false, s->family};
    case Socket::Kind::datagram:
      return {SocketKind::datagram, false, s->family};
    default:
      throw std::system_error(std::make_error_code(std::errc::not_a_socket));
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

bool is_virtual_clock_loop(EventLoop& loop) {
  return virtual_backend(loop) != nullptr;
}

void advance_virtual_clock(EventLoop& loop, double seconds) {
  auto* b = virtual_backend(loop);
  if (!b) throw ValueError("advance_virtual_clock: not a virtual-clock loop");
  static_cast<selector::VirtualClock&>(b->clock()).advance(seconds);
}

}  // namespace eddy::testing
