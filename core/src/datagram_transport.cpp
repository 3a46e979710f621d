// asyncio's datagram transport over a backend's DatagramEndpoint, and
// loop.create_datagram_endpoint. Datagrams are sent whole; what the kernel cannot take at once is
// queued (counted by get_write_buffer_size, with the same water marks as streams). Send and
// receive errors go to protocol.error_received and the transport stays open, as in asyncio.
#include <algorithm>
#include <deque>

#include "eddy/errors.hpp"
#include "eddy/log.hpp"
#include "eddy/loop.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"
#include "stream_transport.hpp"

namespace eddy {

namespace {

constexpr std::size_t kMaxDatagram = 256 * 1024;
constexpr std::size_t kDatagramHeaderBytes = 8;  // asyncio's _header_size

class UdpTransport final : public DatagramTransport,
                           public inspect::TransportProbe,
                           private DatagramEvents {
 public:
  // `remote`: sendto's default address; `connected`: the socket is connected, to `remote` (not
  // for broadcast endpoints, which hear replies from any address, as in asyncio) or, for a
  // socket given already connected (sock=), to its peer, which every datagram then goes to.
  UdpTransport(EventLoop& loop, DatagramEndpointPtr endpoint,
               std::shared_ptr<DatagramProtocol> protocol, std::optional<SocketAddress> remote,
               bool connected)
      : loop_(&loop),
        endpoint_(std::move(endpoint)),
        protocol_(std::move(protocol)),
        remote_(std::move(remote)),
        connected_(connected) {
    endpoint_->set_events(this);
    sockname_ = endpoint_->extra_info("sockname");
    if (connected_) peername_ = remote_ ? std::any(*remote_) : endpoint_->extra_info("peername");
    const std::any socket = endpoint_->extra_info("socket");
    if (const int* fd = std::any_cast<int>(&socket)) {
      loop.socket_transport_opened(*fd, this);
      socket_fd_ = *fd;
    }
    self_ = Ref<UdpTransport>(this);
    loop.transport_created(this);
    flow_.inspect_id = inspect_id;
  }
  void describe(inspect::TransportInfo& out, const void*& server) const override {
    server = nullptr;
    const SocketAddress* local = std::any_cast<SocketAddress>(&sockname_);
    out.kind = local && local->family == AddressFamily::unix_socket ? "unix datagram" : "udp";
    if (remote_) out.peer = remote_->to_string();
    flow_.describe(out, get_write_buffer_size(), conn_lost_, closing_);
  }

  void loop_closed() noexcept override {
    Ref<UdpTransport> keep(this);
    closing_ = true;
    if (!conn_lost_) ++conn_lost_;
    sends_in_flight_ = 0;
    let_go();
  }
  // Drops the endpoint, the protocol (as asyncio: it may hold this transport) and the
  // self-reference.
  void let_go() noexcept {
    endpoint_.reset();
    release_socket_fd();
    protocol_.reset();
    self_.reset();
  }
  void release_socket_fd() noexcept {
    if (socket_fd_ >= 0) loop_->socket_transport_released(std::exchange(socket_fd_, -1), this);
  }

  void start(Future<void> waiter) {
    Ref<UdpTransport> t(this);
    loop_->call_soon([t, waiter]() mutable {
      if (!t->conn_lost_) {
        t->protocol_connected_ = true;
        call_connection_made(
            *t->loop_, [&] { t->protocol_->connection_made(Ref<DatagramTransport>(t.get())); });
        if (t->endpoint_ && !t->closing_ && !t->paused_) t->endpoint_->receive_start();
      }
      if (!waiter.done()) waiter.set_result();
    });
  }

  void close() override {
    if (closing_) return;
    closing_ = true;
    if (endpoint_) endpoint_->receive_stop();
    if (sends_in_flight_ == 0) schedule_connection_lost(nullptr);
  }
  bool is_closing() const override { return closing_; }
  // As asyncio's selector transport: datagrams wait in the socket's buffer while paused (and are
  // dropped by the system once it is full, as UDP does).
  bool is_reading() const override { return !closing_ && !paused_; }
  void pause_reading() override {
    if (!is_reading()) return;
    paused_ = true;
    if (endpoint_) endpoint_->receive_stop();
  }
  void resume_reading() override {
    if (closing_ || !paused_) return;
    paused_ = false;
    // Before connection_made the start callback begins receiving.
    if (endpoint_ && protocol_connected_) endpoint_->receive_start();
  }
  std::any get_extra_info(std::string_view name, std::any default_value) const override {
    return lookup_extra_info(name, std::move(default_value), peername_, sockname_, endpoint_.get());
  }
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    auto p = std::dynamic_pointer_cast<DatagramProtocol>(protocol);
    if (!p) throw TypeError("a datagram transport needs a DatagramProtocol");
    protocol_ = std::move(p);
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

  void sendto(std::string_view data, std::optional<SocketAddress> addr) override {
    if (addr && remote_ && !(*addr == *remote_))
      throw ValueError("Invalid address: must be None or " + remote_->to_string());
    if (!addr && !remote_ && !connected_)
      throw ValueError("sendto() without an address on an unconnected datagram transport");
    // As asyncio: once the transport is closing for good, a connected endpoint drops what is sent
    // (warning from the fifth); an unconnected one still sends while it has its socket, that is
    // until connection_lost.
    if (conn_lost_ && (remote_ || !endpoint_)) {
      if (conn_lost_ >= 5) log(LogLevel::warning, "socket.send() raised exception.");
      ++conn_lost_;
      return;
    }
    const SocketAddress* to = connected_ ? nullptr : addr ? &*addr : &*remote_;
    if (to) endpoint_->check_destination(*to, "sendto");
    bytes_out += data.size();
    if (sends_in_flight_ == 0) {
      std::error_code ec;
      if (endpoint_->try_send(data, to, ec)) return;
      if (ec) {
        error_received(ec);  // an exception from it reaches the caller, as in asyncio
        return;
      }
    }
    endpoint_->send(data, to);
    ++sends_in_flight_;
    flow_.maybe_pause(get_write_buffer_size(), protocol_.get(), *loop_, this);
  }
  void abort() override { force_close(nullptr); }
  // As asyncio (3.12 on): the queued payload plus 8 bytes per queued datagram, so that a burst of
  // empty or tiny datagrams also reaches the high-water mark.
  std::size_t get_write_buffer_size() const override {
    if (!endpoint_ || conn_lost_) return 0;
    return endpoint_->queued_bytes() + kDatagramHeaderBytes * sends_in_flight_;
  }
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
    return {flow_.low(), flow_.high()};
  }
  void set_write_buffer_limits(std::optional<long long> high,
                               std::optional<long long> low) override {
    flow_.set_limits(high, low);
    flow_.maybe_pause(get_write_buffer_size(), protocol_.get(), *loop_, this);
  }

 private:
  ~UdpTransport() override {
    release_socket_fd();
    loop_->transport_destroyed(this);
  }

  std::span<char> receive_buffer(std::size_t) override {
    if (!buffer_) buffer_ = make_io_buffer(kMaxDatagram);
    return {buffer_.get(), kMaxDatagram};
  }
  void received(std::size_t n, const SocketAddress& from) override {
    if (conn_lost_) return;
    bytes_in += n;
    Ref<UdpTransport> keep(this);
    call_protocol(*loop_, "datagram_received()",
                  [&] { protocol_->datagram_received(std::string_view(buffer_.get(), n), from); });
  }
  void receive_failed(std::error_code ec) override {
    if (conn_lost_) return;
    Ref<UdpTransport> keep(this);
    report_error(ec);
  }
  void send_done(std::error_code ec) override {
    Ref<UdpTransport> keep(this);
    if (sends_in_flight_) --sends_in_flight_;
    if (conn_lost_) return;
    if (ec) report_error(ec);
    if (conn_lost_) return;  // the protocol closed the transport
    flow_.maybe_resume(get_write_buffer_size(), protocol_.get(), *loop_, this);
    if (sends_in_flight_ == 0 && closing_) schedule_connection_lost(nullptr);
  }

  void error_received(std::error_code ec) {
    protocol_->error_received(std::make_exception_ptr(std::system_error(ec, "sendto/recvfrom")));
  }
  // error_received from an I/O callback: what it raises is reported as that callback's exception,
  // as asyncio's loop does, and the transport stays open.
  void report_error(std::error_code ec) {
    call_protocol(*loop_, "error_received()", [&] { error_received(ec); });
  }
  void force_close(std::exception_ptr exc) {
    if (conn_lost_) return;
    if (sends_in_flight_) {
      endpoint_.reset();  // drops what is queued
      sends_in_flight_ = 0;
    }
    closing_ = true;
    if (endpoint_) endpoint_->receive_stop();
    schedule_connection_lost(exc);
  }
  void schedule_connection_lost(std::exception_ptr exc) {
    if (conn_lost_) return;
    ++conn_lost_;
    Ref<UdpTransport> self(this);
    loop_->call_soon([self, exc] {
      struct Release {
        UdpTransport* t;
        ~Release() { t->let_go(); }
      } release{self.get()};
      if (self->protocol_connected_) self->protocol_->connection_lost(exc);
    });
  }

  Ref<EventLoop> loop_;
  DatagramEndpointPtr endpoint_;
  std::shared_ptr<DatagramProtocol> protocol_;
  std::optional<SocketAddress> remote_;
  bool connected_;
  std::any peername_, sockname_;
  Ref<UdpTransport> self_;
  int socket_fd_ = -1;  // registered with the loop while this transport holds the socket
  WriteFlowControl flow_;
  IoBuffer buffer_;
  std::size_t sends_in_flight_ = 0;
  int conn_lost_ = 0;
  bool closing_ = false;
  bool protocol_connected_ = false;
  bool paused_ = false;  // pause_reading()
};

// Where create_datagram_endpoint may bind and connect: asyncio pairs the local and remote
// addresses by family, in the order getaddrinfo gives the families, keeping the families both
// have and, of several addresses of one family, the last.
struct AddressPair {
  AddressFamily family = AddressFamily::unspec;
  std::optional<SocketAddress> local, remote;
};
AddressPair address_pair(AddressFamily family, std::optional<SocketAddress> local,
                         std::optional<SocketAddress> remote) {
  AddressPair p;
  p.family = family;
  p.local = local;
  p.remote = remote;
  return p;
}

// "family=AF_INET6, reuse_port=True": the socket modifiers given with `sock`, as asyncio names them.
std::string modifiers_given(const DatagramEndpointOptions& o) {
  std::string given;
  auto add = [&](const std::string& item) { given += (given.empty() ? "" : ", ") + item; };
  if (o.local_addr) add("local_addr=" + o.local_addr->to_string());
  if (o.remote_addr) add("remote_addr=" + o.remote_addr->to_string());
  if (o.family != AddressFamily::unspec) add(std::string("family=") + family_name(o.family));
  if (o.reuse_port) add("reuse_port=True");
  if (o.allow_broadcast) add("allow_broadcast=True");
  return given;
}

Coro<std::vector<AddressPair>> resolve_pairs(EventLoop& loop, DatagramEndpointOptions options) {
  AddrInfoOptions ai{.family = options.family, .kind = SocketKind::datagram};
  std::vector<AddressPair> pairs;
  for (int remote = 0; remote < 2; ++remote) {
    const std::optional<SocketAddress>& a = remote ? options.remote_addr : options.local_addr;
    if (!a) continue;
    std::vector<AddrInfo> r =
        co_await loop.getaddrinfo(std::string(a->host()), std::to_string(a->port), ai);
    if (r.empty()) throw OSError("getaddrinfo() returned empty list");
    for (const AddrInfo& info : r) {
      auto p = std::find_if(pairs.begin(), pairs.end(),
                            [&](const AddressPair& q) { return q.family == info.address.family; });
      if (p == pairs.end())
        p = pairs.insert(p, address_pair(info.address.family, std::nullopt, std::nullopt));
      // As asyncio's dict of pairs: a later address of the family replaces an earlier one.
      std::optional<SocketAddress>& slot = remote ? p->remote : p->local;
      slot = info.address;
    }
  }
  std::erase_if(pairs, [&](const AddressPair& p) {
    return (options.local_addr && !p.local) || (options.remote_addr && !p.remote);
  });
  if (pairs.empty()) throw ValueError("can not get address information");
  co_return pairs;
}

}  // namespace

Coro<DatagramConnection> EventLoop::create_datagram_endpoint(DatagramProtocolFactory factory,
                                                             DatagramEndpointOptions options) {
  capabilities().require("create_datagram_endpoint");
  DatagramEndpointPtr endpoint;
  std::optional<SocketAddress> remote;
  bool connected = false;
  if (options.sock) {
    const std::string given = modifiers_given(options);
    if (!given.empty())
      throw ValueError(
          "socket modifier keyword arguments can not be used when sock is specified. (" + given +
          ")");
    endpoint = backend().adopt_datagram(*options.sock);  // ValueError unless a datagram socket
    // As asyncio, a socket connected beforehand sends every datagram to its peer.
    connected = endpoint->extra_info("peername").has_value();
  } else {
    DatagramOptions d;
    d.family = options.family;
    d.reuse_port = options.reuse_port;
    d.allow_broadcast = options.allow_broadcast;
    // AF_UNIX as asked, or as a path address says (a SocketAddress knows its family).
    const auto is_path = [](const std::optional<SocketAddress>& a) {
      return a && a->family == AddressFamily::unix_socket;
    };
    const bool unix_socket =
        options.family == AddressFamily::unix_socket ||
        (options.family == AddressFamily::unspec && (is_path(options.local_addr) || is_path(options.remote_addr)));
    std::vector<AddressPair> pairs;
    if (unix_socket) {
      // Linux has no SO_REUSEPORT for AF_UNIX: asyncio's _set_reuseport turns the OSError into this.
      if (options.reuse_port)
        throw ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented.");
      for (const auto* a : {&options.local_addr, &options.remote_addr})
        if (*a && !is_path(*a)) throw ValueError("AF_UNIX datagram endpoints take path addresses: " + (*a)->to_string());
      pairs.push_back(
          address_pair(AddressFamily::unix_socket, options.local_addr, options.remote_addr));
    } else if (options.local_addr || options.remote_addr) {
      pairs = co_await resolve_pairs(*this, options);
    } else {
      if (options.family == AddressFamily::unspec) throw ValueError("unexpected address family");
      pairs.push_back(address_pair(options.family, std::nullopt, std::nullopt));
    }
    // The first pair whose socket binds and connects; else the first pair's error, as asyncio.
    std::exception_ptr first_error;
    for (const AddressPair& pair : pairs) {
      d.family = pair.family;
      d.local = pair.local;
      d.remote = options.allow_broadcast ? std::nullopt : pair.remote;  // broadcast: not connected
      try {
        endpoint = backend().open_datagram(d);
      } catch (const std::system_error&) {
        if (!first_error) first_error = std::current_exception();
        continue;
      }
      remote = pair.remote;
      connected = remote && !options.allow_broadcast;
      break;
    }
    if (!endpoint) std::rethrow_exception(first_error);
  }
  std::shared_ptr<DatagramProtocol> protocol = factory();
  Ref<UdpTransport> transport(
      new UdpTransport(*this, std::move(endpoint), protocol, remote, connected));
  Future<void> waiter = create_future<void>();
  transport->start(waiter);
  try {
    co_await waiter;
  } catch (...) {
    transport->close();  // cancelled before we resumed: asyncio closes the transport too
    throw;
  }
  DatagramConnection result{Ref<DatagramTransport>(transport.get()), protocol};
  co_return result;
}

}  // namespace eddy
