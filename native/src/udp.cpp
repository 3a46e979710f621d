// UDP for the native backend: a uv_udp_t bound and/or connected as asked, uv_udp_try_send first
// and uv_udp_send (with a copy) when the kernel would block. Frees itself in uv_close's callback;
// reports nothing after close(). AF_UNIX datagram sockets go to unix_datagram.cpp.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

namespace {

class UvUdpEndpoint final : public DatagramEndpoint {
 public:
  UvUdpEndpoint(uv_loop_t* loop, int family) {
    if (int rc = uv_udp_init_ex(loop, &udp_, family == AF_UNSPEC ? AF_UNSPEC : static_cast<unsigned>(family)))
      throw std::system_error(uv_error(rc), "uv_udp_init_ex");
    udp_.data = this;
  }
  uv_udp_t* udp() noexcept { return &udp_; }

  void set_events(DatagramEvents* events) noexcept override { events_ = events; }
  void receive_start() override {
    int rc = uv_udp_recv_start(
        &udp_,
        [](uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
          auto* self = static_cast<UvUdpEndpoint*>(h->data);
          buf->base = nullptr;
          buf->len = 0;
          if (self->closed_ || !self->events_) return;
          std::span<char> b = self->events_->receive_buffer(suggested);
          buf->base = b.data();
          buf->len = b.size();
        },
        [](uv_udp_t* u, ssize_t nread, const uv_buf_t*, const sockaddr* from, unsigned) {
          auto* self = static_cast<UvUdpEndpoint*>(u->data);
          if (self->closed_ || !self->events_) return;
          if (nread < 0) {
            if (nread != UV_ENOBUFS) self->events_->receive_failed(uv_error(static_cast<int>(nread)));
            return;
          }
          if (from == nullptr) return;  // nothing more to read this round
          self->events_->received(static_cast<std::size_t>(nread), to_socket_address(from));
        });
    if (rc && rc != UV_EALREADY) throw std::system_error(uv_error(rc), "recv_start");
  }
  void receive_stop() noexcept override {
    if (!closed_) uv_udp_recv_stop(&udp_);
  }
  bool try_send(std::string_view data, const SocketAddress* to, std::error_code& error) noexcept override {
    sockaddr_storage ss;
    const sockaddr* addr = nullptr;
    try {
      if (to) {
        destination(*to, ss);
        addr = reinterpret_cast<sockaddr*>(&ss);
      }
    } catch (const std::system_error& e) {
      error = e.code();
      return false;
    }
    uv_buf_t buf = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
    int rc = uv_udp_try_send(&udp_, &buf, 1, addr);
    if (rc >= 0) return true;
    if (rc != UV_EAGAIN) error = uv_error(rc);
    return false;
  }
  void send(std::string_view data, const SocketAddress* to) override {
    struct SendRequest {
      uv_udp_send_t req;
      std::string data;
    };
    sockaddr_storage ss;
    const sockaddr* addr = nullptr;
    if (to) {
      destination(*to, ss);
      addr = reinterpret_cast<sockaddr*>(&ss);
    }
    auto* r = new SendRequest{{}, std::string(data)};
    r->req.data = this;
    uv_buf_t buf = uv_buf_init(r->data.data(), static_cast<unsigned>(r->data.size()));
    int rc = uv_udp_send(&r->req, &udp_, &buf, 1, addr, [](uv_udp_send_t* req, int status) {
      auto* self = static_cast<UvUdpEndpoint*>(req->data);
      delete reinterpret_cast<SendRequest*>(req);
      if (self->closed_ || !self->events_) return;
      self->events_->send_done(status ? uv_error(status) : std::error_code());
    });
    if (rc) {
      delete r;
      throw std::system_error(uv_error(rc), "sendto");
    }
  }
  std::size_t queued_bytes() const noexcept override { return udp_.send_queue_size; }
  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    events_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&udp_), [](uv_handle_t* h) { delete static_cast<UvUdpEndpoint*>(h->data); });
  }
  std::any extra_info(std::string_view name) const override {
    auto* u = const_cast<uv_udp_t*>(&udp_);
    if (name == "socket") {
      uv_os_fd_t fd;
      if (uv_fileno(reinterpret_cast<uv_handle_t*>(u), &fd) == 0) return static_cast<int>(fd);
      return {};
    }
    if (name != "sockname" && name != "peername") return {};
    sockaddr_storage ss;
    int len = sizeof ss;
    int rc = name == "sockname" ? uv_udp_getsockname(u, reinterpret_cast<sockaddr*>(&ss), &len)
                                : uv_udp_getpeername(u, reinterpret_cast<sockaddr*>(&ss), &len);
    if (rc) return {};
    return to_socket_address(reinterpret_cast<sockaddr*>(&ss));
  }

 private:
  ~UvUdpEndpoint() override = default;

  // sendto's address: numeric as given; a name is resolved now, for this socket's family, as
  // Python's socket.sendto resolves it (blocking the caller, as there).
  void destination(const SocketAddress& to, sockaddr_storage& out) const {
    if (is_numeric_host(to)) {
      to_sockaddr(to, out);
      return;
    }
    sockaddr_storage local;
    int len = sizeof local;
    addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = uv_udp_getsockname(&udp_, reinterpret_cast<sockaddr*>(&local), &len) == 0
                          ? local.ss_family
                          : AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(to.port);
    if (int rc = ::getaddrinfo(to.host_c_str(), port.c_str(), &hints, &found))
      throw std::system_error(std::error_code(rc, resolver_category()), "sendto " + to.to_string());
    std::memset(&out, 0, sizeof out);
    std::memcpy(&out, found->ai_addr, found->ai_addrlen);
    ::freeaddrinfo(found);
  }
  static bool is_numeric_host(const SocketAddress& a) {
    unsigned char scratch[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, a.host_c_str(), scratch) == 1 ||
           ::inet_pton(AF_INET6, a.host_c_str(), scratch) == 1;
  }
  uv_udp_t udp_;
  DatagramEvents* events_ = nullptr;
  bool closed_ = false;
};

int native_family(AddressFamily f) {
  return f == AddressFamily::inet ? AF_INET : f == AddressFamily::inet6 ? AF_INET6 : AF_UNSPEC;
}


}  // namespace

// unix_datagram.cpp: libuv has no Unix datagram sockets.
DatagramEndpointPtr open_unix_datagram(uv_loop_t* loop, const DatagramOptions& options);
DatagramEndpointPtr adopt_unix_datagram(uv_loop_t* loop, int fd);

DatagramEndpointPtr UvBackend::open_datagram(const DatagramOptions& options) {
  if (options.family == AddressFamily::unix_socket ||
      (options.local && options.local->family == AddressFamily::unix_socket) ||
      (options.remote && options.remote->family == AddressFamily::unix_socket))
    return open_unix_datagram(&loop_, options);
  AddressFamily family = options.family;
  if (family == AddressFamily::unspec) family = options.local ? options.local->family : options.remote->family;
  auto* ep = new UvUdpEndpoint(&loop_, native_family(family));
  DatagramEndpointPtr owned(ep);
  if (options.reuse_port) {
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(ep->udp()), &fd) == 0)
      if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
        throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
  }
  if (options.local) {
    sockaddr_storage ss;
    to_sockaddr(*options.local, ss);
    if (int rc = uv_udp_bind(ep->udp(), reinterpret_cast<sockaddr*>(&ss), 0))
      throw std::system_error(uv_error(rc), "bind " + options.local->to_string());
  }
  if (options.allow_broadcast)
    if (int rc = uv_udp_set_broadcast(ep->udp(), 1)) throw std::system_error(uv_error(rc), "SO_BROADCAST");
  if (options.remote) {
    sockaddr_storage ss;
    to_sockaddr(*options.remote, ss);
    if (int rc = uv_udp_connect(ep->udp(), reinterpret_cast<sockaddr*>(&ss)))
      throw std::system_error(uv_error(rc), "connect " + options.remote->to_string());
  }
  return owned;
}

DatagramEndpointPtr UvBackend::adopt_datagram(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len))
    throw std::system_error(errno, std::generic_category(), "not a socket");
  int type = 0;
  len = sizeof type;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  if (type != SOCK_DGRAM)
    throw ValueError("A datagram socket was expected, got a socket of another type (fd " +
                     std::to_string(fd) + ")");
  if (domain == AF_UNIX) return adopt_unix_datagram(&loop_, fd);
  // libuv's uv_udp_open turns SO_REUSEADDR on; asyncio leaves a given socket's options alone
  // (it dropped reuse_address for datagrams: another socket could take over the port).
  int reuse = 0;
  len = sizeof reuse;
  ::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len);
  auto* ep = new UvUdpEndpoint(&loop_, AF_UNSPEC);
  DatagramEndpointPtr owned(ep);
  if (int rc = uv_udp_open(ep->udp(), fd)) throw std::system_error(uv_error(rc), "uv_udp_open");
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
  return owned;
}

}  // namespace eddy::native
