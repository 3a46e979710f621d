// Inside the virtual network: sockets, the flows that carry stream bytes between them, and the
// timed events that move bytes across links. Streams model TCP's buffers: a writer's send
// buffer holds what is unsent or in flight, a reader's receive buffer what arrived unread, and
// nothing is sent beyond the reader's free space, so a slow reader stalls its writer exactly as a
// kernel would. Private to the selector.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "eddy/endpoints.hpp"
#include "virtual_network.hpp"

namespace eddy::vnet::detail {

// Bytes in arrival order, kept as the chunks they came in (moved, not copied, where possible).
class ByteQueue {
 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  void push(std::string_view data);
  void push(std::string&& data);
  std::size_t read(std::span<char> out);  // copies and consumes up to out.size()
  std::string take(std::size_t n);        // consumes n <= size() bytes
  void clear() noexcept;

 private:
  std::deque<std::string> chunks_;
  std::size_t head_ = 0;  // consumed bytes of chunks_.front()
  std::size_t size_ = 0;
};

// One direction of a stream connection or pipe.
struct Flow {
  struct Segment {
    double arrive_at = 0;
    std::string data;
    bool fin = false;
  };
  ByteQueue unsent;               // in the writer's send buffer, not yet on the wire
  std::deque<Segment> in_flight;  // on the wire (also counted in the writer's send buffer)
  std::size_t in_flight_bytes = 0;
  ByteQueue received;  // in the reader's receive buffer
  std::size_t send_capacity = 0;
  std::size_t receive_capacity = 0;
  bool fin_queued = false;  // the writer shut down: FIN follows the unsent bytes
  bool fin_sent = false;
  bool eof = false;           // FIN arrived at the reader
  bool reader_gone = false;   // the reader closed: arriving bytes reset the connection
  bool dead = false;          // reset: nothing moves any more
  double wire_free_at = 0;    // when the link can start sending the next byte
  std::uint64_t crossed = 0;  // bytes sent so far (for LinkOptions::reset_after)
  std::string link_host;      // whose LinkOptions apply
  bool external = false;      // carried by the host's gateway (a WebSocket), not the network
  int writer = -1;            // fds, -1 once closed
  int reader = -1;

  std::size_t send_space() const noexcept {
    const std::size_t used = unsent.size() + in_flight_bytes;
    return used < send_capacity ? send_capacity - used : 0;
  }
};

// What the network reports to when something happens on a socket (an endpoint).
class SocketOwner {
 public:
  virtual ~SocketOwner() = default;
  // Delivers whatever is due; returns whether any event was reported. Called from poll().
  virtual bool pump() = 0;
};

// The host's way out of the virtual network: stream connections to routed addresses are carried
// by it (a WebSocket in a page). It reports back through NetworkCore::gateway_*().
class Gateway {
 public:
  virtual ~Gateway() = default;
  virtual void open(int fd, const std::string& url) = 0;
  virtual void send(int fd, std::string_view data) = 0;
  virtual std::size_t buffered(int fd) = 0;  // sent, not yet on the wire
  virtual void close(int fd) = 0;
  virtual std::string name() const = 0;
};

struct Datagram {
  SocketAddress from;
  std::string data;
};

struct Socket {
  enum class Kind { stream, listener, datagram, pipe_read, pipe_write };
  int fd = -1;
  Kind kind = Kind::stream;
  AddressFamily family = AddressFamily::inet;
  SocketAddress local, peer;
  bool bound = false;
  bool connected = false;
  bool connecting = false;
  bool reuse_port = false;
  bool path_unlinked = false;      // Unix: a later server or endpoint took its path (unlink_path)
  bool broadcast = false;          // SO_BROADCAST (allow_broadcast)
  double wire_free_at = 0;         // datagrams: when the link can send the next one
  std::error_code connect_result;  // SO_ERROR after a connect
  std::error_code error;           // pending: reported after the received bytes
  std::shared_ptr<Flow> in, out;
  // Listeners.
  bool listening = false;
  int backlog = 0;
  std::deque<int> accept_queue;
  // Datagram sockets.
  std::deque<Datagram> datagrams;
  std::size_t datagram_bytes = 0;
  std::size_t receive_capacity = 0;
  // AF_UNIX datagram senders that found this socket's queue full (EAGAIN): woken when it drains.
  std::vector<int> blocked_senders;
  // Who hears about it.
  SocketOwner* owner = nullptr;
  bool watch_readable = false, watch_writable = false;
  std::function<void(bool, bool)> on_ready;
  bool dirty = false;
};

class NetworkCore {
 public:
  NetworkCore(NetworkOptions options, std::function<double()> now);
  ~NetworkCore();

  // ---- Sockets ----------------------------------------------------------------------------
  int open(Socket::Kind kind, AddressFamily family);
  Socket* find(int fd) noexcept;
  Socket& get(int fd);  // system_error(EBADF)
  void bind(int fd, SocketAddress address);
  void listen(int fd, int backlog);
  // Streams: starts connecting (completion marks the socket); datagrams: sets the peer.
  // `method` is what a NotSupportedError names (an address off the network, a route without a
  // WebSocket).
  void connect(int fd, const SocketAddress& remote, const char* method = "create_connection");
  // On a loop that stands for a real host (options.foreign_hosts_target): NotSupportedError
  // naming `method` for a datagram to a numeric address nothing on the network has (a browser
  // has no UDP), instead of sending it nowhere. Names are resolved, and refused, by the send.
  void check_datagram_destination(const SocketAddress& to, const char* method) const;
  // The removal of a stale socket file that create_unix_server and create_datagram_endpoint make
  // (asyncio's, before they bind): sockets bound to `path` keep working through their fds but can
  // no longer be reached by it.
  void unlink_path(std::string_view path);
  std::pair<int, int> socketpair();
  std::pair<int, int> pipe();
  // Non-blocking I/O: would_block when nothing can move now.
  std::size_t send(int fd, std::string_view data, const SocketAddress* to, std::error_code& error);
  std::size_t recv(int fd, std::span<char> out, SocketAddress* from, std::error_code& error);
  int accept(int fd, SocketAddress* peer, std::error_code& error);
  void shutdown_write(int fd);
  void close(int fd, bool reset = false) noexcept;
  bool readable(const Socket& s) const noexcept;
  bool writable(const Socket& s) const noexcept;
  void watch(int fd, bool readable, bool writable, std::function<void(bool, bool)> on_ready);
  void unwatch(int fd) noexcept;
  void set_owner(int fd, SocketOwner* owner) noexcept;
  // Owners whose close() ran inside a delivery are freed at the next poll.
  void retire(std::unique_ptr<SocketOwner> owner);
  void mark(int fd) noexcept;  // something may be due on fd

  // ---- Time --------------------------------------------------------------------------------
  double now() { return now_(); }
  void at(double when, std::function<void()> action);
  // Runs due events and reports to the sockets marked so far; true if anything was reported.
  // The loop polls every pass, so the idle case is one inline test and reads no clock.
  bool run() { return may_have_work_ && run_pending(); }
  // Seconds until run() has something to do (0: now); nullopt when nothing is pending.
  std::optional<double> due_in();

  // ---- Names and links ---------------------------------------------------------------------
  std::vector<AddrInfo> resolve(const std::string& host, const std::string& service,
                                const AddrInfoOptions& options, std::error_code& error) const;
  NameInfo name_of(const SocketAddress& address, int flags, std::error_code& error) const;
  LinkOptions link_for(const std::string& host) const;
  std::size_t reset_connections(const std::string& host);

  // ---- The gateway (WebSocket routes) --------------------------------------------------------
  void set_gateway(std::unique_ptr<Gateway> gateway) { gateway_ = std::move(gateway); }
  Gateway* gateway() const noexcept { return gateway_.get(); }
  void add_route(const std::string& address, std::uint16_t port, std::string url);
  const std::string* route(const SocketAddress& a) const;
  // From the host, outside poll(): each wakes the loop through on_host_io.
  void gateway_opened(int fd, std::error_code error);
  void gateway_data(int fd, std::string_view data);
  void gateway_closed(int fd, bool clean);
  std::function<void()> on_host_io;
  // The host's event loop drives this loop (eddy::wasm::drive): gateway events can arrive. A
  // blocking run never gives the host a turn, so a route is refused without it.
  bool host_driven = false;

  NetworkOptions options;
  std::map<std::string, LinkOptions> links;
  std::multimap<std::string, std::string> hosts;
  NetworkStats stats;

 private:
  bool run_pending();  // run() when something may be due
  bool idle() const noexcept {
    return dirty_.empty() && events_.empty() && external_.empty() && retired_.empty() &&
           closed_sockets_.empty();
  }
  // Set whenever work is queued, cleared by run_pending() once it finds none: idle() without
  // looking at five containers.
  bool may_have_work_ = false;
  struct Timed {
    double when;
    std::uint64_t seq;
    std::function<void()> action;
  };
  struct Later {
    bool operator()(const Timed& a, const Timed& b) const {
      return a.when != b.when ? a.when > b.when : a.seq > b.seq;
    }
  };

  std::uint16_t ephemeral_port(Socket::Kind kind, AddressFamily family);
  bool port_in_use(const Socket& s, const SocketAddress& a) const;
  void auto_bind(Socket& s, const SocketAddress& towards);
  Socket* find_listener(const SocketAddress& remote);
  bool owned(const SocketAddress& a) const;  // an address the network knows (bound, named, linked)
  Socket* find_receiver(const SocketAddress& to);
  std::size_t send_local_datagram(int fd, Socket& s, const SocketAddress& dest,
                                  std::string_view data, std::error_code& error);
  void arrive_syn(int client, SocketAddress remote);
  std::shared_ptr<Flow> new_flow(const std::string& link_host, int writer, int reader);
  void transmit(const std::shared_ptr<Flow>& flow);
  void deliver_due(const std::shared_ptr<Flow>& flow);
  void reset_flow_pair(const std::shared_ptr<Flow>& flow, double when);
  void reset_socket(int fd);
  double random01();  // uniform in [0, 1), reproducible from options.seed

  std::unique_ptr<Gateway> gateway_;
  std::map<std::pair<std::string, std::uint16_t>, std::string> routes_;
  std::vector<int> external_;  // sockets carried by the gateway
  std::function<double()> now_;
  std::unordered_map<int, std::unique_ptr<Socket>> sockets_;
  std::vector<std::unique_ptr<Socket>> closed_sockets_;  // freed at the next run()
  std::vector<std::unique_ptr<SocketOwner>> retired_;
  std::priority_queue<Timed, std::vector<Timed>, Later> events_;
  std::uint64_t seq_ = 0;
  std::vector<int> dirty_, delivering_;
  int next_fd_ = Network::kFirstFd;
  std::uint16_t next_port_ = 49152;
  int next_route_host_ = 1;

 public:
  std::string route_name_address();  // 198.18.0.x for a routed name

 private:
  std::uint64_t rng_;
};

// Endpoints over virtual sockets (virtual_stream.cpp, virtual_datagram.cpp); the network
// outlives them (it belongs to the loop's backend, which every transport keeps alive).
StreamEndpointPtr make_stream_endpoint(NetworkCore& net, int fd,
                                       StreamEndpoint::ConnectDone connect_done = {});
// `fd` is bound; it listens (and connections to it are accepted, not refused) from listen().
StreamListenerPtr make_listener(NetworkCore& net, int fd, int backlog);
DatagramEndpointPtr make_datagram_endpoint(NetworkCore& net, int fd);

// getaddrinfo's failures ("Name or service not known"), as the resolver reports them natively.
const std::error_category& resolver_category() noexcept;

}  // namespace eddy::vnet::detail
