// The virtual network of the emulated selector: hosts, ports, stream and datagram sockets, pipes
// and socket pairs that live inside the program, with kernel-like bounded buffers and per-link
// latency, bandwidth, loss and resets. Every selector loop has one (WebAssembly's default loop,
// and the virtual-clock test loop on every target); create_server, create_connection,
// create_datagram_endpoint, the sock_* calls and add_reader use it there.
//
//   auto& net = eddy::vnet::network(*loop);
//   net.set_link("10.0.0.2", {.latency = 0.020, .bandwidth = 1e6});
//   net.add_host("server.example", "10.0.0.2");
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "eddy/net.hpp"

namespace eddy {
class EventLoop;
}

namespace eddy::vnet {

// What a link between two hosts does to what crosses it (each direction separately).
struct LinkOptions {
  double latency = 0.0;    // one-way delay, seconds
  double bandwidth = 0.0;  // bytes per second; 0: unlimited
  // Probability in [0, 1]: a datagram is dropped; a stream segment is resent after a
  // retransmission timeout (max(0.2 s, 2 × latency)), delaying it and everything behind it.
  double loss = 0.0;
  // Streams: the connection is reset once this many bytes crossed in one direction; 0: never.
  std::uint64_t reset_after = 0;
};

struct NetworkOptions {
  std::size_t send_buffer = 64 * 1024;      // per stream socket: accepted, not yet received
  std::size_t receive_buffer = 128 * 1024;  // per socket: received, not yet read
  std::size_t max_segment = 64 * 1024;      // the largest piece a stream moves at once
  std::uint64_t seed = 1;                   // loss decisions are reproducible
  LinkOptions link;                         // every link without options of its own
  std::string local_address = "192.0.2.1";  // our address towards hosts other than loopback
  // Set on loops that stand for a real host (WebAssembly's default loop): connecting to an
  // address nothing on the network owns is NotSupportedError naming this target (a browser has
  // no raw sockets), instead of ECONNREFUSED. Empty: the network is a world of its own.
  std::string foreign_hosts_target;
};

struct NetworkStats {
  std::size_t open_sockets = 0;
  std::uint64_t connections = 0;        // stream connections accepted
  std::uint64_t bytes_carried = 0;      // stream bytes that reached a receive buffer
  std::uint64_t segments = 0;           // stream pieces sent
  std::uint64_t stream_sends = 0;       // send calls that moved stream bytes (a kernel's writes)
  std::uint64_t retransmissions = 0;    // stream pieces that had to be resent
  std::uint64_t datagrams = 0;          // datagrams delivered
  std::uint64_t datagrams_dropped = 0;  // lost on a link, to a full buffer, or to nobody
  std::uint64_t resets = 0;             // connections reset
};

namespace detail {
class NetworkCore;
}

// One loop's network. Sockets are virtual file descriptors (numbered from kFirstFd), valid only
// on this loop: pass them to the loop's sock_* calls, add_reader/add_writer,
// connect_accepted_socket, create_connection(sock=) or connect_read_pipe/connect_write_pipe.
class Network {
 public:
  static constexpr int kFirstFd = 4096;

  explicit Network(std::shared_ptr<detail::NetworkCore> core) : core_(std::move(core)) {}

  // Names: getaddrinfo resolves `name` to `address` ("localhost" and numeric addresses always
  // resolve). Several calls add several addresses.
  void add_host(const std::string& name, const std::string& address);
  // Links: `host` is the address (or Unix socket path) of the listening or receiving side;
  // the options apply to connections and datagrams to and from it, including live ones.
  void set_link(const std::string& host, const LinkOptions& options);
  void set_default_link(const LinkOptions& options);
  LinkOptions link(const std::string& host) const;
  // Resets every open stream connection to or from `host` (all of them if empty); returns how many.
  std::size_t reset_connections(const std::string& host = {});

  // Real servers: stream connections to `host`:`port` are carried by a WebSocket to `url`
  // ("ws://..." or "wss://..."), each connection one WebSocket whose binary messages carry the
  // bytes (what is written becomes messages; what arrives is concatenated). `host` may be a name
  // (it then resolves to an address in 198.18.0.0/15) or a numeric address. write_eof closes the
  // WebSocket once flushed (it cannot half-close). Connecting raises NotSupportedError where the
  // host has no WebSocket (see has_gateway()).
  void route_websocket(const std::string& host, std::uint16_t port, const std::string& url);
  bool has_gateway() const noexcept;

  // Raw sockets, as socket.socket / socket.socketpair / os.pipe. system_error with asyncio's
  // errno on failure (EADDRINUSE, EBADF, EINVAL...).
  int socket(AddressFamily family, SocketKind kind);
  std::pair<int, int> socketpair();  // two connected stream sockets (AF_UNIX)
  std::pair<int, int> pipe();        // (read end, write end)
  void bind(int fd, const SocketAddress& address);
  void listen(int fd, int backlog = 100);
  void shutdown_write(int fd);
  void close(int fd);
  SocketAddress getsockname(int fd) const;
  SocketAddress getpeername(int fd) const;

  NetworkStats stats() const;
  const NetworkOptions& options() const;
  // Changes the buffer sizes of sockets created from now on.
  void set_buffer_sizes(std::size_t send_buffer, std::size_t receive_buffer);

  detail::NetworkCore& core() noexcept { return *core_; }

 private:
  std::shared_ptr<detail::NetworkCore> core_;
};

// The loop's network; NotSupportedError naming the target when the loop has none (libuv loops
// use the operating system's network).
Network& network(EventLoop& loop);
Network* find_network(EventLoop& loop) noexcept;

}  // namespace eddy::vnet
