// add_reader / add_writer and asyncio's sock_* coroutines: try the non-blocking call, and when it
// would block, wait for readiness with a one-shot reader or writer (removed again on success,
// error or cancellation), then retry. The backend supplies readiness and the syscalls.
#include "eddy/errors.hpp"
#include "eddy/loop.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"

namespace eddy {

namespace {
bool would_block(const std::error_code& ec) {
  return ec == std::errc::operation_would_block || ec == std::errc::resource_unavailable_try_again ||
         ec == std::errc::interrupted;
}
}  // namespace

void EventLoop::rewatch_fd(int fd, const FdWatch& w) {
  backend_->watch_fd(fd, bool(w.callbacks[0]), bool(w.callbacks[1]), [this, fd](bool readable, bool writable) {
    auto it = fd_watches_.find(fd);
    if (it == fd_watches_.end()) return;
    // asyncio: readiness adds the handles to the ready queue of this very pass; removing the
    // reader or writer cancels a handle that has not run yet (only the watch owns the callback).
    using Run = detail::RunRepeatingCallback<std::weak_ptr<detail::RepeatingCallback>>;
    for (int which : {0, 1}) {
      const auto& callback = it->second.callbacks[which];
      if ((which == 0 ? readable : writable) && callback)
        call_soon(Run{callback, callback->name}, callback->where);
    }
  });
}

void EventLoop::socket_transport_opened(int fd, const BaseTransport* transport) {
  socket_transports_[fd] = transport;
}

void EventLoop::socket_transport_released(int fd, const BaseTransport* transport) noexcept {
  auto it = socket_transports_.find(fd);
  if (it != socket_transports_.end() && it->second == transport) socket_transports_.erase(it);
}

// asyncio's _ensure_fd_no_transport: a transport's descriptor is the transport's, until it closes.
void EventLoop::ensure_fd_no_transport(int fd) const {
  if (socket_transports_.empty()) return;
  auto it = socket_transports_.find(fd);
  if (it == socket_transports_.end() || it->second->is_closing()) return;
  std::string what = "a transport";
  if (auto* probe = dynamic_cast<const inspect::TransportProbe*>(it->second)) {
    inspect::TransportInfo info;
    const void* server = nullptr;
    probe->describe(info, server);
    what = "<" + info.kind + " transport" + (info.peer.empty() ? "" : " to " + info.peer) + ">";
  }
  throw RuntimeError("File descriptor " + std::to_string(fd) + " is used by transport " + what);
}

void EventLoop::add_fd_callback(int fd, int which,
                                std::shared_ptr<detail::RepeatingCallback> callback) {
  check_closed();
  capabilities_.require(which == 0 ? "add_reader" : "add_writer");
  if (fd < 0) throw ValueError("Invalid file descriptor: " + std::to_string(fd));
  FdWatch& w = fd_watches_[fd];
  w.callbacks[which] = std::move(callback);
  try {
    rewatch_fd(fd, w);
  } catch (...) {
    w.callbacks[which].reset();
    if (!w.callbacks[0] && !w.callbacks[1]) fd_watches_.erase(fd);
    throw;
  }
}

bool EventLoop::remove_fd_callback(int fd, int which) {
  if (closed_) return false;
  // asyncio's selector cannot look a negative fd up: ValueError, not "nothing registered".
  if (fd < 0) throw ValueError("Invalid file descriptor: " + std::to_string(fd));
  auto it = fd_watches_.find(fd);
  if (it == fd_watches_.end() || !it->second.callbacks[which]) return false;
  it->second.callbacks[which].reset();
  FdWatch& w = it->second;
  if (!w.callbacks[0] && !w.callbacks[1]) {
    fd_watches_.erase(it);
    backend_->unwatch_fd(fd);
  } else {
    rewatch_fd(fd, w);
  }
  return true;
}

// asyncio's debug mode refuses a blocking socket in every sock_* call: the call would block the
// whole loop. (A transport's socket is refused only when the call has to wait: see wait_fd.)
SocketKind EventLoop::check_sock(int fd, bool need_kind) {
  if (!debug_ && !need_kind) return SocketKind::any;
  const Backend::SocketFacts facts = backend().socket_facts(fd);
  if (debug_ && facts.blocking) throw ValueError("the socket must be non-blocking");
  return facts.kind;
}

// As asyncio's sock_* calls, which try the system call first and check that no transport owns
// the socket only when they must wait for it: a transport's socket with data (or room) at hand
// is served at once, and one that would make the call wait is refused.
Coro<void> EventLoop::wait_fd(int fd, int which) {
  ensure_fd_no_transport(fd);
  Future<void> ready = create_future<void>();
  auto wake = [ready]() mutable {
    if (!ready.done()) ready.set_result();
  };
  add_fd_callback(fd, which, detail::RepeatingCallback::make(wake, SourceLocation::current()));
  try {
    co_await ready;
  } catch (...) {
    remove_fd_callback(fd, which);
    throw;
  }
  remove_fd_callback(fd, which);
}

Coro<std::size_t> EventLoop::sock_recv_into(int fd, std::span<char> buffer) {
  capabilities().require("sock_recv_into");
  check_sock(fd);
  for (;;) {
    std::error_code ec;
    const std::size_t n = backend().sock_recv(fd, buffer, nullptr, ec);
    if (!ec) co_return n;
    if (!would_block(ec)) throw std::system_error(ec, "recv");
    co_await wait_fd(fd, 0);
  }
}

Coro<std::string> EventLoop::sock_recv(int fd, std::size_t nbytes) {
  capabilities().require("sock_recv");
  if (nbytes == 0) {  // as Python's socket.recv(0): no system call
    check_sock(fd);
    co_return std::string();
  }
  std::string data(nbytes, '\0');  // sock_recv_into checks the socket
  const std::size_t n = co_await sock_recv_into(fd, std::span<char>(data.data(), data.size()));
  data.resize(n);
  co_return data;
}

Coro<std::pair<std::size_t, SocketAddress>> EventLoop::sock_recvfrom_into(int fd, std::span<char> buffer) {
  capabilities().require("sock_recvfrom_into");
  check_sock(fd);
  for (;;) {
    std::error_code ec;
    SocketAddress from;
    const std::size_t n = backend().sock_recv(fd, buffer, &from, ec);
    if (!ec) {
      std::pair<std::size_t, SocketAddress> result{n, from};
      co_return result;
    }
    if (!would_block(ec)) throw std::system_error(ec, "recvfrom");
    co_await wait_fd(fd, 0);
  }
}

Coro<std::pair<std::string, SocketAddress>> EventLoop::sock_recvfrom(int fd, std::size_t bufsize) {
  capabilities().require("sock_recvfrom");
  std::string data(bufsize, '\0');  // sock_recvfrom_into checks the socket
  std::pair<std::size_t, SocketAddress> r = co_await sock_recvfrom_into(fd, std::span<char>(data.data(), data.size()));
  data.resize(r.first);
  std::pair<std::string, SocketAddress> result{std::move(data), r.second};
  co_return result;
}

Coro<void> EventLoop::sock_sendall(int fd, std::string_view data) {
  capabilities().require("sock_sendall");
  check_sock(fd);
  while (!data.empty()) {
    std::error_code ec;
    const std::size_t n = backend().sock_send(fd, data, nullptr, ec);
    if (ec && !would_block(ec)) throw std::system_error(ec, "send");
    data.remove_prefix(ec ? 0 : n);
    if (!data.empty()) co_await wait_fd(fd, 1);
  }
}

namespace {
// Whether an IP address's host is a literal (IPv4 digits and dots, or IPv6, the only hosts with a
// colon), which needs no resolver; anything else is a name.
bool literal_host(const SocketAddress& a) noexcept {
  const std::string_view host = a.host();
  if (host.find(':') != std::string_view::npos) return true;
  return !host.empty() && host.find_first_not_of("0123456789.") == std::string_view::npos;
}

// `address` resolved as asyncio's sock_* calls resolve it: for the socket's family when it is an
// IP one (so "localhost" on an IPv6 socket is ::1, and an IPv4 address there is gaierror), else
// for the address's own.
Coro<SocketAddress> resolved_for_socket(EventLoop& loop, SocketAddress address,
                                        AddressFamily socket_family, SocketKind kind) {
  AddrInfoOptions ai;
  ai.family = socket_family == AddressFamily::inet || socket_family == AddressFamily::inet6
                  ? socket_family
                  : address.family;
  ai.kind = kind;
  std::vector<AddrInfo> r =
      co_await loop.getaddrinfo(std::string(address.host()), std::to_string(address.port), ai);
  if (r.empty())
    throw std::system_error(std::make_error_code(std::errc::host_unreachable),
                            "getaddrinfo() returned empty list");
  co_return r.front().address;
}
}  // namespace

Coro<std::size_t> EventLoop::sock_sendto(int fd, std::string_view data, SocketAddress address) {
  capabilities().require("sock_sendto");
  check_sock(fd);
  if ((address.family == AddressFamily::inet || address.family == AddressFamily::inet6) &&
      !literal_host(address)) {
    // Python's socket.sendto resolves a name (blocking); here the resolver runs off the loop.
    address = co_await resolved_for_socket(*this, address, backend().socket_facts(fd).family,
                                           SocketKind::datagram);
  }
  for (;;) {
    std::error_code ec;
    const std::size_t n = backend().sock_send(fd, data, &address, ec);
    if (!ec) co_return n;
    if (!would_block(ec)) throw std::system_error(ec, "sendto");
    co_await wait_fd(fd, 1);
  }
}

Coro<void> EventLoop::sock_connect(int fd, SocketAddress address) {
  capabilities().require("sock_connect");
  check_sock(fd);
  if (address.family == AddressFamily::inet || address.family == AddressFamily::inet6) {
    // As asyncio: a name is resolved first (a numeric host resolves to itself).
    address = co_await resolved_for_socket(*this, address, backend().socket_facts(fd).family,
                                           SocketKind::any);
  }
  std::error_code ec;
  backend().sock_connect(fd, address, ec);
  if (!ec) co_return;
  if (ec != std::errc::operation_in_progress && !would_block(ec))
    throw std::system_error(ec, "Connect call failed " + address.to_string());
  co_await wait_fd(fd, 1);
  ec = backend().sock_connect_result(fd);
  if (ec) throw std::system_error(ec, "Connect call failed " + address.to_string());
}

Coro<std::pair<int, SocketAddress>> EventLoop::sock_accept(int fd) {
  capabilities().require("sock_accept");
  check_sock(fd);
  for (;;) {
    std::error_code ec;
    SocketAddress peer;
    const int conn = backend().sock_accept(fd, &peer, ec);
    if (!ec) {
      std::pair<int, SocketAddress> result{conn, peer};
      co_return result;
    }
    if (!would_block(ec)) throw std::system_error(ec, "accept");
    co_await wait_fd(fd, 0);
  }
}

}  // namespace eddy
