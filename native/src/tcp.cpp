// TCP for the native backend: connecting (with an optional local address), binding listeners
// (our own socket()+bind() so that EADDRINUSE is reported by create_server, not deferred to
// listen() as uv_tcp_bind does), and adopting connected sockets.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

StreamEndpointPtr connect_tcp(uv_loop_t* loop, const SocketAddress& remote, const ConnectOptions& options,
                              StreamEndpoint::ConnectDone done) {
  sockaddr_storage ss;
  to_sockaddr(remote, ss);
  auto* ep = new UvStreamEndpoint(loop, UvStreamEndpoint::Kind::tcp);
  StreamEndpointPtr owned(ep);
  if (options.local_addr) {
    // Our own socket()+bind(): uv_tcp_bind would defer EADDRINUSE to the connect, and the
    // caller must know a bind failure from a refused connection.
    sockaddr_storage local;
    to_sockaddr(*options.local_addr, local);
    const std::string what = "bind " + options.local_addr->to_string();
    int fd = ::socket(local.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    const socklen_t len = local.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len)) {
      const int e = errno;
      ::close(fd);
      throw BindError(e, std::generic_category(), what);
    }
    if (int rc = uv_tcp_open(ep->tcp(), fd)) {
      ::close(fd);
      throw std::system_error(uv_error(rc), "uv_tcp_open");
    }
  }
  ep->tune(options);
  ep->connect_tcp(reinterpret_cast<sockaddr*>(&ss), std::move(done));
  return owned;
}

StreamListenerPtr bind_tcp(uv_loop_t* loop, const SocketAddress& local, const ListenOptions& options) {
  sockaddr_storage ss;
  to_sockaddr(local, ss);
  const int family = ss.ss_family;
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  auto fail = [&](const char* what) {
    int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), what);
  };
  int one = 1;
  if (options.reuse_address && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)) fail("SO_REUSEADDR");
  if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) fail("SO_REUSEPORT");
  if (family == AF_INET6 && options.ipv6_only && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one))
    fail("IPV6_V6ONLY");
  const socklen_t len = family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len)) fail("bind");
  auto* l = new UvListener(loop, UvStreamEndpoint::Kind::tcp, options);
  StreamListenerPtr owned(l);
  if (int rc = uv_tcp_open(l->tcp(), fd)) {
    ::close(fd);
    throw std::system_error(uv_error(rc), "uv_tcp_open");
  }
  return owned;
}

StreamEndpointPtr adopt_tcp(uv_loop_t* loop, int fd, const ConnectOptions& options) {
  auto* ep = new UvStreamEndpoint(loop, UvStreamEndpoint::Kind::tcp);
  StreamEndpointPtr owned(ep);
  if (int rc = uv_tcp_open(ep->tcp(), fd)) throw std::system_error(uv_error(rc), "uv_tcp_open");
  ep->tune(options);
  return owned;
}

}  // namespace eddy::native
