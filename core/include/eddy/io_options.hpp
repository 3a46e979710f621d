// Keyword arguments of the loop's connection and server methods (asyncio's create_connection,
// create_server, ...), as option structs for designated initializers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "eddy/net.hpp"
#include "eddy/ref.hpp"

namespace eddy {

class BaseProtocol;
class Transport;
class Server;

using ProtocolFactory = std::function<std::shared_ptr<BaseProtocol>()>;
// What create_connection returns: asyncio's (transport, protocol) pair.
using Connection = std::pair<Ref<Transport>, std::shared_ptr<BaseProtocol>>;

// TLS settings (asyncio's ssl.SSLContext, reduced to what a loop needs). The files are read by
// the first connection that uses these settings, and again only when one of them changed on disk
// (a rotated certificate); connections with the same settings share what was read. The struct is
// the caller's and must outlive the calls that use it.
struct TlsContext {
  bool server = false;
  bool verify_peer = true;           // client: check the server's certificate and name
  std::string_view ca_file;          // trust anchors ("" = the system's)
  std::string_view cert_file;        // our certificate chain (PEM): servers, or client certs
  std::string_view key_file;         // its private key (PEM)
  int min_version = 0x0303;          // TLS 1.2; 0x0304 for TLS 1.3 only
  // Servers: whether clients are asked for a certificate (mutual TLS), checked against ca_file
  // (or the system's anchors): Python's verify_mode CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED.
  enum class ClientCertificates : std::uint8_t { none, optional, required };
  ClientCertificates client_certificates = ClientCertificates::none;
};

// get_extra_info("cipher") on a TLS transport: ssl.SSLSocket.cipher()'s (name, protocol, secret
// bits), e.g. {"TLS_AES_256_GCM_SHA384", "TLSv1.3", 256}.
struct TlsCipher {
  std::string name;
  std::string protocol;
  int secret_bits = 0;
};

// get_extra_info("peercert") on a TLS transport: ssl.SSLSocket.getpeercert(), field by field, with
// Python's texts ("commonName", "Dec  6 05:50:16 2026 GMT", ("IP Address", "127.0.0.1"), ...).
// As in Python, a certificate that this side did not verify (a client with verify_peer off, a
// server not asking for client_certificates) comes back empty (Python's {}); a peer that sent none
// gives no value at all (None).
struct PeerCertificate {
  using Attribute = std::pair<std::string, std::string>;  // {"commonName", "localhost"}
  // Relative distinguished names in order, each one or more attributes (Python's tuple of tuples).
  using Name = std::vector<std::vector<Attribute>>;
  Name subject, issuer;
  int version = 0;  // 3 for X.509 v3; 0 when empty
  std::string serial_number, not_before, not_after;
  std::vector<Attribute>
      subject_alt_name;  // {"DNS", ...}, {"IP Address", ...}, {"email", ...}, {"URI", ...}
  std::vector<std::string> ocsp, ca_issuers, crl_distribution_points;
  bool empty() const noexcept { return version == 0; }
};

struct ConnectionOptions {
  AddressFamily family = AddressFamily::unspec;
  std::optional<SocketAddress> local_addr;  // host/port to bind before connecting
  std::optional<int> sock;                  // an already connected socket to wrap
  std::optional<double> happy_eyeballs_delay;  // RFC 8305 staggered attempts
  std::optional<int> interleave;            // reorder addresses by family (1 = alternate)
  bool keep_alive = false;
  const TlsContext* ssl = nullptr;          // TLS over the connection
  std::optional<std::string_view> server_hostname;  // SNI and verification name (default: host)
  std::optional<double> ssl_handshake_timeout;  // seconds, only with ssl (default 60)
  std::optional<double> ssl_shutdown_timeout;   // seconds, only with ssl (default 30)
  bool all_errors = false;  // every address failed: raise ExceptionGroup of every error
};

struct ServerOptions {
  AddressFamily family = AddressFamily::unspec;
  int backlog = 100;
  std::optional<bool> reuse_address;  // default: true on POSIX, as asyncio
  bool reuse_port = false;
  bool start_serving = true;
  bool keep_alive = false;
  const TlsContext* ssl = nullptr;  // TLS for every accepted connection
  std::optional<double> ssl_handshake_timeout;  // seconds, only with ssl (default 60)
  std::optional<double> ssl_shutdown_timeout;   // seconds, only with ssl (default 30)
  bool cleanup_socket = true;  // Unix servers: remove the path on close (Python 3.13)
};

struct DatagramEndpointOptions {
  std::optional<SocketAddress> local_addr;   // host (name or numeric) and port to bind
  std::optional<SocketAddress> remote_addr;  // host and port to connect to (sendto without addr)
  AddressFamily family = AddressFamily::unspec;
  bool reuse_port = false;
  bool allow_broadcast = false;
  std::optional<int> sock;  // an existing datagram socket to wrap
};

// Kept trivially destructible on purpose: gcc 12 may destroy an aggregate temporary twice when
// it appears inside a co_await expression (`co_await loop.create_server(f, h, p, {.backlog = 5})`).
static_assert(std::is_trivially_destructible_v<ConnectionOptions>);
static_assert(std::is_trivially_destructible_v<ServerOptions>);
static_assert(std::is_trivially_destructible_v<DatagramEndpointOptions>);

// asyncio.subprocess's constants for stdin/stdout/stderr (any value >= 0 is an fd to use).
namespace subprocess {
inline constexpr int PIPE = -1;
inline constexpr int STDOUT = -2;  // stderr only: into the same place as stdout
inline constexpr int DEVNULL = -3;
inline constexpr int INHERIT = -4;  // Python's None: the child shares ours
}  // namespace subprocess

// subprocess_exec / subprocess_shell keyword arguments. cwd and env are read when the child is
// spawned, before the call first suspends (so temporaries in the co_await expression are fine).
struct SubprocessOptions {
  int stdin_ = subprocess::PIPE;
  int stdout_ = subprocess::PIPE;
  int stderr_ = subprocess::PIPE;
  std::optional<std::string_view> cwd;
  std::optional<std::span<const std::string_view>> env;  // "NAME=value" entries; nullopt: ours
  bool start_new_session = false;                        // Popen's: setsid() in the child
  std::optional<int> process_group;  // Popen's (3.11+): setpgid(0, n) in the child; 0: its own
};
static_assert(std::is_trivially_destructible_v<SubprocessOptions>);

class SubprocessTransport;
class SubprocessProtocol;
using SubprocessProtocolFactory = std::function<std::shared_ptr<SubprocessProtocol>()>;
using SubprocessConnection = std::pair<Ref<SubprocessTransport>, std::shared_ptr<SubprocessProtocol>>;
class ReadTransport;
class WriteTransport;
using ReadPipeConnection = std::pair<Ref<ReadTransport>, std::shared_ptr<BaseProtocol>>;
using WritePipeConnection = std::pair<Ref<WriteTransport>, std::shared_ptr<BaseProtocol>>;

struct StartTlsOptions {
  std::optional<std::string_view> server_hostname;
  double ssl_handshake_timeout = 60.0;
  std::optional<double> ssl_shutdown_timeout;  // seconds (default 30)
};
static_assert(std::is_trivially_destructible_v<StartTlsOptions>);

class DatagramTransport;
class DatagramProtocol;
using DatagramProtocolFactory = std::function<std::shared_ptr<DatagramProtocol>()>;
// create_datagram_endpoint's result.
using DatagramConnection = std::pair<Ref<DatagramTransport>, std::shared_ptr<DatagramProtocol>>;

}  // namespace eddy
