// Name resolution for the native backend: uv_getaddrinfo / uv_getnameinfo on libuv's thread
// pool, reported from poll(). Resolver failures carry the resolver category (gaierror).
#include <netdb.h>

#include <cstring>
#include <memory>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

namespace {

int to_native_flags(int flags) {
  int f = 0;
  if (flags & kPassiveFlag) f |= AI_PASSIVE;
  if (flags & kCanonNameFlag) f |= AI_CANONNAME;
  if (flags & kNumericHostFlag) f |= AI_NUMERICHOST;
  if (flags & kNumericServFlag) f |= AI_NUMERICSERV;
  return f;
}

int to_native_family(AddressFamily f) {
  switch (f) {
    case AddressFamily::inet: return AF_INET;
    case AddressFamily::inet6: return AF_INET6;
    case AddressFamily::unix_socket: return AF_UNIX;
    default: return AF_UNSPEC;
  }
}

struct ResolveRequest {
  uv_getaddrinfo_t req;
  Backend::ResolveDone done;
};

struct NameRequest {
  uv_getnameinfo_t req;
  Backend::NameInfoDone done;
};

}  // namespace

void UvBackend::getaddrinfo(const std::string& host, const std::string& service, const AddrInfoOptions& options,
                            ResolveDone done) {
  // libuv refuses this with EINVAL; the C library's answer (and so Python's) is EAI_NONAME.
  if (host.empty() && service.empty())
    throw std::system_error(std::error_code(EAI_NONAME, resolver_category()), "getaddrinfo");
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = to_native_family(options.family);
  hints.ai_socktype = options.kind == SocketKind::stream ? SOCK_STREAM : options.kind == SocketKind::datagram ? SOCK_DGRAM : 0;
  hints.ai_protocol = options.protocol;
  hints.ai_flags = to_native_flags(options.flags);
  auto* r = new ResolveRequest{{}, std::move(done)};
  int rc = uv_getaddrinfo(
      &loop_, &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<ResolveRequest> r(reinterpret_cast<ResolveRequest*>(req));
        std::vector<AddrInfo> out;
        if (status == 0) {
          for (addrinfo* a = res; a; a = a->ai_next) {
            AddrInfo i;
            i.address = to_socket_address(a->ai_addr);
            i.family = i.address.family;
            i.kind = a->ai_socktype == SOCK_STREAM ? SocketKind::stream
                     : a->ai_socktype == SOCK_DGRAM ? SocketKind::datagram
                                                    : SocketKind::any;
            i.protocol = a->ai_protocol;
            if (a->ai_canonname) i.canonname = a->ai_canonname;
            if (i.family != AddressFamily::unspec) out.push_back(std::move(i));
          }
        }
        uv_freeaddrinfo(res);
        r->done(std::move(out), status ? uv_error(status) : std::error_code());
      },
      host.empty() ? nullptr : host.c_str(), service.empty() ? nullptr : service.c_str(), &hints);
  if (rc) {
    std::unique_ptr<ResolveRequest> owned(r);
    throw std::system_error(uv_error(rc), "getaddrinfo");
  }
}

void UvBackend::getnameinfo(const SocketAddress& address, int flags, NameInfoDone done) {
  sockaddr_storage ss;
  to_sockaddr(address, ss);
  auto* r = new NameRequest{{}, std::move(done)};
  int rc = uv_getnameinfo(
      &loop_, &r->req,
      [](uv_getnameinfo_t* req, int status, const char* host, const char* service) {
        std::unique_ptr<NameRequest> r(reinterpret_cast<NameRequest*>(req));
        NameInfo info;
        if (status == 0) {
          info.host = host ? host : "";
          info.service = service ? service : "";
        }
        r->done(std::move(info), status ? uv_error(status) : std::error_code());
      },
      reinterpret_cast<sockaddr*>(&ss), flags);
  if (rc) {
    std::unique_ptr<NameRequest> owned(r);
    throw std::system_error(uv_error(rc), "getnameinfo");
  }
}

}  // namespace eddy::native
