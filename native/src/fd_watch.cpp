// add_reader/add_writer and the sock_* syscalls for the native backend: a uv_poll_t per watched
// fd (level-triggered), and plain non-blocking recv/send/accept4/connect.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

namespace {
struct FdPoll {
  uv_poll_t handle;
  std::function<void(bool, bool)> on_ready;
};

std::error_code last_error() { return {errno, std::generic_category()}; }

// What accept/recvfrom filled in: AF_UNIX by its length (abstract names, unnamed peers).
SocketAddress address_of(const sockaddr_storage& ss, socklen_t len) {
  if (ss.ss_family == AF_UNIX)
    return from_unix_sockaddr(reinterpret_cast<const sockaddr_un&>(ss), len);
  return to_socket_address(reinterpret_cast<const sockaddr*>(&ss));
}

socklen_t fill_sockaddr(const SocketAddress& a, sockaddr_storage& ss) {
  if (a.family == AddressFamily::unix_socket) {
    if (a.host().size() >= sizeof(sockaddr_un::sun_path))
      throw ValueError("unix socket path too long");
    socklen_t len = 0;
    std::error_code error;
    if (!to_unix_sockaddr(a, *reinterpret_cast<sockaddr_un*>(&ss), len, error))
      throw std::system_error(error);
    return len;
  }
  to_sockaddr(a, ss);
  return a.family == AddressFamily::inet6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}
}  // namespace

void UvBackend::watch_fd(int fd, bool readable, bool writable, std::function<void(bool, bool)> on_ready) {
  auto it = polls_.find(fd);
  FdPoll* p;
  if (it == polls_.end()) {
    p = new FdPoll{{}, {}};
    if (int rc = uv_poll_init(&loop_, &p->handle, fd)) {
      delete p;
      throw std::system_error(uv_error(rc), "add_reader");
    }
    p->handle.data = p;
    polls_[fd] = &p->handle;
  } else {
    p = static_cast<FdPoll*>(it->second->data);
  }
  p->on_ready = std::move(on_ready);
  const int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  int rc = uv_poll_start(&p->handle, events, [](uv_poll_t* h, int status, int ev) {
    auto* p = static_cast<FdPoll*>(h->data);
    // An error (e.g. EBADF) is reported as readiness: the callback's own call then fails.
    if (status < 0) ev = UV_READABLE | UV_WRITABLE;
    auto cb = p->on_ready;  // the callback may unwatch this fd
    cb((ev & UV_READABLE) != 0, (ev & UV_WRITABLE) != 0);
  });
  if (rc) throw std::system_error(uv_error(rc), "add_reader");
  fds_to_check_.push_back(fd);
}

void UvBackend::stop_watching_closed_fds() noexcept {
  for (int fd : fds_to_check_) {
    auto it = polls_.find(fd);
    if (it != polls_.end() && ::fcntl(fd, F_GETFD) == -1 && errno == EBADF)
      uv_poll_stop(it->second);
  }
  fds_to_check_.clear();
}

void UvBackend::unwatch_fd(int fd) noexcept {
  auto it = polls_.find(fd);
  if (it == polls_.end()) return;
  uv_poll_t* h = it->second;
  polls_.erase(it);
  uv_poll_stop(h);
  uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* h) { delete static_cast<FdPoll*>(h->data); });
}

std::size_t UvBackend::sock_recv(int fd, std::span<char> buffer, SocketAddress* from, std::error_code& error) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  ssize_t n = from ? ::recvfrom(fd, buffer.data(), buffer.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len)
                   : ::recv(fd, buffer.data(), buffer.size(), 0);
  if (n < 0) {
    error = last_error();
    return 0;
  }
  if (from && len > 0) *from = address_of(ss, len);
  return static_cast<std::size_t>(n);
}

std::size_t UvBackend::sock_send(int fd, std::string_view data, const SocketAddress* to, std::error_code& error) {
  ssize_t n;
  if (to) {
    sockaddr_storage ss;
    const socklen_t len = fill_sockaddr(*to, ss);
    n = ::sendto(fd, data.data(), data.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&ss), len);
  } else {
    n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  }
  if (n < 0) {
    error = last_error();
    return 0;
  }
  return static_cast<std::size_t>(n);
}

int UvBackend::sock_accept(int fd, SocketAddress* peer, std::error_code& error) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int conn = ::accept4(fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn < 0) {
    error = last_error();
    return -1;
  }
  if (peer) *peer = address_of(ss, len);
  return conn;
}

void UvBackend::sock_connect(int fd, const SocketAddress& address, std::error_code& error) {
  sockaddr_storage ss;
  const socklen_t len = fill_sockaddr(address, ss);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) error = last_error();
}

Backend::SocketFacts UvBackend::socket_facts(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    throw std::system_error(last_error());
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw std::system_error(last_error());
  const SocketKind kind = type == SOCK_STREAM  ? SocketKind::stream
                          : type == SOCK_DGRAM ? SocketKind::datagram
                                               : SocketKind::any;
  int domain = AF_UNSPEC;
  len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) domain = AF_UNSPEC;
  const AddressFamily family = domain == AF_INET    ? AddressFamily::inet
                               : domain == AF_INET6 ? AddressFamily::inet6
                               : domain == AF_UNIX  ? AddressFamily::unix_socket
                                                    : AddressFamily::unspec;
  return {kind, (flags & O_NONBLOCK) == 0, family};
}

std::error_code UvBackend::sock_connect_result(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return last_error();
  return {err, std::generic_category()};
}

}  // namespace eddy::native
