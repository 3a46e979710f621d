// Socket addresses and name resolution results, platform-free. An address is what asyncio's
// get_extra_info('peername') returns: host and port for IP (numeric host text), a path for Unix
// sockets. Backends convert to and from their native sockaddr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace eddy {

enum class AddressFamily : std::uint8_t { unspec, inet, inet6, unix_socket };
// "AF_INET", "AF_INET6", "AF_UNIX", "AF_UNSPEC": the names Python's socket module gives them.
const char* family_name(AddressFamily family) noexcept;
enum class SocketKind : std::uint8_t { any, stream, datagram };

// A plain value (trivially copyable, like sockaddr_storage): option structs that hold addresses
// stay trivially destructible, which also keeps them safe from gcc 12's double destruction of
// aggregate temporaries inside co_await expressions.
struct SocketAddress {
  static constexpr std::size_t kMaxHost = 255;  // a DNS name; Unix paths are shorter (108)

  AddressFamily family = AddressFamily::unspec;
  std::uint16_t port = 0;
  std::uint32_t flowinfo = 0;  // IPv6 only
  std::uint32_t scope_id = 0;  // IPv6 only

  // IP: "127.0.0.1", "::1" (or a name to resolve, in local_addr / remote_addr); for
  // unix_socket: the path ("" if unnamed).
  std::string_view host() const noexcept { return {host_, host_len_}; }
  const char* host_c_str() const noexcept { return host_; }
  void set_host(std::string_view host);  // ValueError if longer than kMaxHost

  // family from the text: inet6 if it contains ':', else inet (names resolve as inet here).
  static SocketAddress ip(std::string_view host, std::uint16_t port);
  static SocketAddress unix_path(std::string_view path);
  // "127.0.0.1:8888", "[::1]:8888", "/tmp/x.sock"
  std::string to_string() const;
  friend bool operator==(const SocketAddress&, const SocketAddress&) = default;

 private:
  std::uint16_t host_len_ = 0;
  char host_[kMaxHost + 1] = {};
};
static_assert(std::is_trivially_copyable_v<SocketAddress>);

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
