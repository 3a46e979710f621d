// Socket addresses and name resolution results, platform-free. An address is what asyncio's
// get_extra_info('peername') returns: host and port for IP (numeric host text), a path for Unix
// sockets. Backends convert to and from their native sockaddr.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace eddy {

enum class AddressFamily : std::uint8_t { unspec, inet, inet6, unix_socket };
enum class SocketKind : std::uint8_t { any, stream, datagram };

struct SocketAddress {
  AddressFamily family = AddressFamily::unspec;
  std::string host;  // "127.0.0.1", "::1"; for unix_socket: the path ("" if unnamed)
  std::uint16_t port = 0;
  std::uint32_t flowinfo = 0;  // IPv6 only
  std::uint32_t scope_id = 0;  // IPv6 only

  static SocketAddress ip(std::string host, std::uint16_t port);  // family from the text
  static SocketAddress unix_path(std::string path);
  // "127.0.0.1:8888", "[::1]:8888", "/tmp/x.sock"
  std::string to_string() const;
  friend bool operator==(const SocketAddress&, const SocketAddress&) = default;
};

// One result of getaddrinfo (asyncio's (family, type, proto, canonname, sockaddr) tuple).
struct AddrInfo {
  AddressFamily family = AddressFamily::unspec;
  SocketKind kind = SocketKind::any;
  int protocol = 0;
  std::string canonname;
  SocketAddress address;
};

// getaddrinfo's flags, as Eddy's own bits (backends map them to the platform's AI_* values).
enum AddrInfoFlag : int {
  kPassiveFlag = 1,      // AI_PASSIVE: an empty host means all interfaces
  kCanonNameFlag = 2,    // AI_CANONNAME
  kNumericHostFlag = 4,  // AI_NUMERICHOST
  kNumericServFlag = 8,  // AI_NUMERICSERV
};

// getaddrinfo's keyword arguments.
struct AddrInfoOptions {
  AddressFamily family = AddressFamily::unspec;
  SocketKind kind = SocketKind::any;
  int protocol = 0;
  int flags = 0;
};

// getnameinfo's result.
struct NameInfo {
  std::string host;
  std::string service;
};

}  // namespace eddy
