// The virtual network's sockets, flows and clock-driven events (see virtual_sockets.hpp), its
// names (getaddrinfo over "localhost", numeric addresses and add_host names) and the public
// Network facade.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "eddy/errors.hpp"
#include "eddy/loop.hpp"
#include "selector_backend.hpp"
#include "virtual_sockets.hpp"

namespace eddy::vnet::detail {

namespace {

constexpr std::size_t kMaxDatagram = 65507;

std::system_error os_error(std::errc e, const char* what) {
  return std::system_error(std::make_error_code(e), what);
}

bool is_wildcard(const SocketAddress& a) {
  return a.host().empty() || a.host() == "0.0.0.0" || a.host() == "::";
}

bool is_loopback(std::string_view host) {
  return host.starts_with("127.") || host == "::1";
}

bool is_ipv4(std::string_view s) {
  int parts = 0;
  while (true) {
    std::size_t digits = 0;
    unsigned value = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9')
      value = value * 10 + (s[digits++] - '0');
    if (digits == 0 || digits > 3 || value > 255) return false;
    ++parts;
    s.remove_prefix(digits);
    if (s.empty()) return parts == 4;
    if (s[0] != '.' || parts == 4) return false;
    s.remove_prefix(1);
  }
}

bool is_ipv6(std::string_view s) {
  if (s.find(':') == std::string_view::npos || s.size() > 45) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
  });
}

}  // namespace

bool is_numeric_address(std::string_view host) {
  return is_ipv4(host) || is_ipv6(host);
}

namespace {

bool same_host(const SocketAddress& bound, const SocketAddress& to) {
  return bound.host() == to.host() || is_wildcard(bound);
}

}  // namespace

// ---- ByteQueue ---------------------------------------------------------------------------------

void ByteQueue::push(std::string_view data) {
  if (data.empty()) return;
  if (!chunks_.empty() && chunks_.back().size() + data.size() <= 4096)
    chunks_.back().append(data);
  else
    chunks_.emplace_back(data);
  size_ += data.size();
}

void ByteQueue::push(std::string&& data) {
  if (data.empty()) return;
  size_ += data.size();
  chunks_.push_back(std::move(data));
}

std::size_t ByteQueue::read(std::span<char> out) {
  std::size_t done = 0;
  while (done < out.size() && !chunks_.empty()) {
    const std::string& c = chunks_.front();
    const std::size_t n = std::min(out.size() - done, c.size() - head_);
    std::memcpy(out.data() + done, c.data() + head_, n);
    done += n;
    head_ += n;
    if (head_ == c.size()) {
      chunks_.pop_front();
      head_ = 0;
    }
  }
  size_ -= done;
  return done;
}

std::string ByteQueue::take(std::size_t n) {
  if (head_ == 0 && !chunks_.empty() && chunks_.front().size() == n) {
    std::string whole = std::move(chunks_.front());
    chunks_.pop_front();
    size_ -= n;
    return whole;
  }
  std::string out(n, '\0');
  read({out.data(), n});
  return out;
}

void ByteQueue::clear() noexcept {
  chunks_.clear();
  head_ = 0;
  size_ = 0;
}

// ---- Sockets -----------------------------------------------------------------------------------

NetworkCore::NetworkCore(NetworkOptions o, std::function<double()> now)
    : options(std::move(o)), now_(std::move(now)), rng_(options.seed ? options.seed : 1) {}

NetworkCore::~NetworkCore() = default;

int NetworkCore::open(Socket::Kind kind, AddressFamily family) {
  if (family == AddressFamily::unspec)
    throw os_error(std::errc::address_family_not_supported, "socket");
  auto s = std::make_unique<Socket>();
  s->fd = next_fd_++;
  s->kind = kind;
  s->family = family;
  s->receive_capacity = options.receive_buffer;
  const int fd = s->fd;
  sockets_.emplace(fd, std::move(s));
  ++stats.open_sockets;
  return fd;
}

Socket* NetworkCore::find(int fd) noexcept {
  auto it = sockets_.find(fd);
  return it == sockets_.end() ? nullptr : it->second.get();
}

Socket& NetworkCore::get(int fd) {
  Socket* s = find(fd);
  if (!s) throw os_error(std::errc::bad_file_descriptor, "virtual socket");
  return *s;
}

bool NetworkCore::port_in_use(const Socket& s, const SocketAddress& a) const {
  const bool datagram = s.kind == Socket::Kind::datagram;
  for (const auto& [fd, o] : sockets_) {
    if (o.get() == &s || !o->bound || (o->kind == Socket::Kind::datagram) != datagram) continue;
    if (a.family == AddressFamily::unix_socket) {
      if (o->family == AddressFamily::unix_socket && !o->path_unlinked &&
          o->local.host() == a.host())
        return true;
      continue;
    }
    if (o->family != a.family || o->local.port != a.port) continue;
    if (s.reuse_port && o->reuse_port) continue;
    if (o->local.host() == a.host() || is_wildcard(o->local) || is_wildcard(a)) return true;
  }
  return false;
}

std::uint16_t NetworkCore::ephemeral_port(Socket::Kind kind, AddressFamily family) {
  Socket probe;
  probe.kind = kind;
  SocketAddress a = SocketAddress::ip(family == AddressFamily::inet6 ? "::" : "0.0.0.0", 0);
  for (int tries = 0; tries < 16384; ++tries) {
    a.port = next_port_;
    next_port_ = next_port_ == 65535 ? 49152 : next_port_ + 1;
    if (!port_in_use(probe, a)) return a.port;
  }
  throw os_error(std::errc::address_in_use, "no free ephemeral port");
}

namespace {
// The socket address's path as the kernel takes it (sockaddr_un's 108 bytes, its NUL included):
// longer is Python's OSError "AF_UNIX path too long", never a path cut to fit.
constexpr std::size_t kUnixPathMax = 108;
void check_unix_path(const SocketAddress& a) {
  if (a.family == AddressFamily::unix_socket && a.host().size() >= kUnixPathMax)
    throw std::system_error(std::make_error_code(std::errc::filename_too_long),
                            "AF_UNIX path too long");
}
}  // namespace

void NetworkCore::bind(int fd, SocketAddress a) {
  Socket& s = get(fd);
  check_unix_path(a);
  if (s.bound) throw os_error(std::errc::invalid_argument, "bind: already bound");
  if (a.family != s.family) throw os_error(std::errc::address_family_not_supported, "bind");
  if (a.family == AddressFamily::unix_socket) {
    if (!a.host().empty() && port_in_use(s, a)) throw os_error(std::errc::address_in_use, "bind");
  } else {
    if (!a.host().empty() &&
        !(a.family == AddressFamily::inet ? is_ipv4(a.host()) : is_ipv6(a.host())))
      throw os_error(std::errc::address_not_available, "bind: not an address of this network");
    if (a.host().empty()) a.set_host(a.family == AddressFamily::inet ? "0.0.0.0" : "::");
    if (a.port == 0)
      a.port = ephemeral_port(s.kind, s.family);
    else if (port_in_use(s, a))
      throw os_error(std::errc::address_in_use, "bind");
  }
  s.local = a;
  s.bound = true;
}

void NetworkCore::auto_bind(Socket& s, const SocketAddress& towards) {
  if (s.bound) return;
  if (s.family == AddressFamily::unix_socket) {
    s.local = SocketAddress::unix_path("");
    s.bound = true;
    return;
  }
  SocketAddress a = SocketAddress::ip(s.family == AddressFamily::inet ? "0.0.0.0" : "::", 0);
  bind(s.fd, a);
  // A connected or sending socket shows the address it uses towards `towards`.
  if (is_loopback(towards.host()))
    s.local.set_host(s.family == AddressFamily::inet ? "127.0.0.1" : "::1");
  else if (s.family == AddressFamily::inet)
    s.local.set_host(options.local_address);
}

void NetworkCore::listen(int fd, int backlog) {
  Socket& s = get(fd);
  if (s.kind == Socket::Kind::listener) {
    s.backlog = std::max(backlog, 1);
    return;
  }
  if (s.kind != Socket::Kind::stream || s.connected || s.connecting)
    throw os_error(std::errc::invalid_argument, "listen");
  if (!s.bound)
    auto_bind(s, SocketAddress::ip(s.family == AddressFamily::inet6 ? "::" : "0.0.0.0", 0));
  s.kind = Socket::Kind::listener;
  s.listening = true;
  s.backlog = std::max(backlog, 1);
}

bool NetworkCore::owned(const SocketAddress& a) const {
  if (a.family == AddressFamily::unix_socket || is_loopback(a.host()) || is_wildcard(a) ||
      a.host() == options.local_address)
    return true;
  for (const auto& [name, address] : hosts)
    if (address == a.host()) return true;
  for (const auto& [fd, s] : sockets_)
    if (s->bound && s->local.host() == a.host()) return true;
  for (const auto& [key, url] : links)
    if (key == a.host()) return true;
  return false;
}

Socket* NetworkCore::find_listener(const SocketAddress& remote) {
  Socket* best = nullptr;
  for (auto& [fd, s] : sockets_) {
    if (s->kind != Socket::Kind::listener || !s->listening || s->family != remote.family) continue;
    if (remote.family == AddressFamily::unix_socket) {
      if (!s->path_unlinked && s->local.host() == remote.host()) return s.get();
      continue;
    }
    if (s->local.port != remote.port || !same_host(s->local, remote)) continue;
    // Several listeners with reuse_port share connections: the least loaded takes it.
    if (!best || s->accept_queue.size() < best->accept_queue.size()) best = s.get();
  }
  return best;
}

Socket* NetworkCore::find_receiver(const SocketAddress& to) {
  Socket* wildcard = nullptr;
  for (auto& [fd, s] : sockets_) {
    if (s->kind != Socket::Kind::datagram || !s->bound || s->family != to.family) continue;
    if (to.family == AddressFamily::unix_socket) {
      if (!to.host().empty() && !s->path_unlinked && s->local.host() == to.host()) return s.get();
      continue;
    }
    if (s->local.port != to.port) continue;
    if (s->local.host() == to.host()) return s.get();
    if (is_wildcard(s->local) && !wildcard) wildcard = s.get();
  }
  return wildcard;
}

std::shared_ptr<Flow> NetworkCore::new_flow(const std::string& link_host, int writer, int reader) {
  auto f = std::make_shared<Flow>();
  f->send_capacity = options.send_buffer;
  f->receive_capacity = options.receive_buffer;
  f->link_host = link_host;
  f->writer = writer;
  f->reader = reader;
  return f;
}

void NetworkCore::unlink_path(std::string_view path) {
  if (path.empty() || path[0] == '\0') return;  // unnamed, or Linux's abstract namespace
  for (auto& [fd, s] : sockets_)
    if (s->family == AddressFamily::unix_socket && s->bound && s->local.host() == path)
      s->path_unlinked = true;
}

void NetworkCore::check_datagram_destination(const SocketAddress& to, const char* method) const {
  if (options.foreign_hosts_target.empty() || to.family == AddressFamily::unix_socket) return;
  if (!is_ipv4(to.host()) && !is_ipv6(to.host())) return;
  if (owned(to) || to.host() == "255.255.255.255") return;  // the virtual LAN's broadcast
  throw NotSupportedError(method, options.foreign_hosts_target,
                          "no UDP to " + to.to_string() +
                              " (nothing on the virtual network has that address): a browser "
                              "cannot send datagrams to real hosts");
}

void NetworkCore::connect(int fd, const SocketAddress& remote, const char* method) {
  Socket& s = get(fd);
  check_unix_path(remote);
  if (remote.family != s.family) throw os_error(std::errc::address_family_not_supported, "connect");
  if (s.kind == Socket::Kind::datagram) {
    check_datagram_destination(remote, method);
    // Linux checks a Unix peer at connect: nothing bound at the path is ENOENT.
    if (remote.family == AddressFamily::unix_socket && !find_receiver(remote))
      throw os_error(std::errc::no_such_file_or_directory, "connect");
    auto_bind(s, remote);
    s.peer = remote;
    s.connected = true;
    return;
  }
  if (s.kind != Socket::Kind::stream) throw os_error(std::errc::invalid_argument, "connect");
  if (s.connected) throw os_error(std::errc::already_connected, "connect");
  if (s.connecting) throw os_error(std::errc::connection_already_in_progress, "connect");
  const std::string* url = route(remote);
  if (!url && !options.foreign_hosts_target.empty() && !owned(remote))
    throw NotSupportedError(
        method, options.foreign_hosts_target,
        "no raw sockets to " + remote.to_string() +
            " (nothing on the virtual network has that address); reach real servers through a "
            "WebSocket route (eddy::vnet::Network::route_websocket)");
  auto_bind(s, remote);
  s.connecting = true;
  s.peer = remote;
  if (url) {
    if (!gateway_) {
      s.connecting = false;
      throw NotSupportedError(method,
                              options.foreign_hosts_target.empty() ? "this virtual network"
                                                                   : options.foreign_hosts_target,
                              "the route to " + *url + " needs a WebSocket, which this host lacks");
    }
    if (!host_driven) {
      // Node or a worker running the loop with run_forever / run_until_complete: the thread
      // sleeps in Atomics.wait and never returns to the host, so the WebSocket would never open.
      s.connecting = false;
      throw NotSupportedError(
          method,
          options.foreign_hosts_target.empty() ? "this virtual network"
                                               : options.foreign_hosts_target,
          "the route to " + *url +
              " is a WebSocket, whose events come from the host's event loop, which a blocking "
              "run_forever or run_until_complete never returns to: drive this loop with "
              "eddy::wasm::run_main or eddy::wasm::drive");
    }
    s.in = new_flow(*url, -1, fd);
    s.out = new_flow(*url, fd, -1);
    s.in->external = s.out->external = true;
    external_.push_back(fd);
    may_have_work_ = true;
    gateway_->open(fd, *url);
    return;
  }
  const double latency = link_for(std::string(remote.host())).latency;
  at(now() + latency, [this, fd, remote] { arrive_syn(fd, remote); });
}

void NetworkCore::arrive_syn(int client_fd, SocketAddress remote) {
  Socket* client = find(client_fd);
  if (!client || !client->connecting) return;
  const std::string link_host(remote.host());
  const double latency = link_for(link_host).latency;
  Socket* listener = find_listener(remote);
  if (!listener || static_cast<int>(listener->accept_queue.size()) >= listener->backlog) {
    // A Unix path nothing is bound to is ENOENT; one bound but not listening is refused.
    bool unix_missing = !listener && remote.family == AddressFamily::unix_socket;
    for (auto it = sockets_.begin(); unix_missing && it != sockets_.end(); ++it)
      if (it->second->family == AddressFamily::unix_socket && it->second->bound &&
          !it->second->path_unlinked && it->second->local.host() == remote.host())
        unix_missing = false;
    at(now() + latency, [this, client_fd, unix_missing] {
      Socket* c = find(client_fd);
      if (!c || !c->connecting) return;
      c->connecting = false;
      c->connect_result = std::make_error_code(unix_missing ? std::errc::no_such_file_or_directory
                                                            : std::errc::connection_refused);
      mark(client_fd);
    });
    return;
  }
  const int server_fd = open(Socket::Kind::stream, remote.family);
  Socket& server = *find(server_fd);
  client = find(client_fd);
  server.bound = server.connected = true;
  server.local = remote.family == AddressFamily::unix_socket ? listener->local : remote;
  server.peer = client->local;
  auto up = new_flow(link_host, client_fd, server_fd);
  auto down = new_flow(link_host, server_fd, client_fd);
  client->out = server.in = up;
  client->in = server.out = down;
  listener->accept_queue.push_back(server_fd);
  ++stats.connections;
  mark(listener->fd);
  at(now() + latency, [this, client_fd] {
    Socket* c = find(client_fd);
    if (!c || !c->connecting) return;
    c->connecting = false;
    c->connected = true;
    c->connect_result = {};
    mark(client_fd);
  });
}

std::pair<int, int> NetworkCore::socketpair() {
  const int a = open(Socket::Kind::stream, AddressFamily::unix_socket);
  const int b = open(Socket::Kind::stream, AddressFamily::unix_socket);
  Socket& sa = *find(a);
  Socket& sb = *find(b);
  sa.bound = sb.bound = sa.connected = sb.connected = true;
  sa.local = sa.peer = sb.local = sb.peer = SocketAddress::unix_path("");
  sa.out = sb.in = new_flow("", a, b);
  sb.out = sa.in = new_flow("", b, a);
  return {a, b};
}

std::pair<int, int> NetworkCore::pipe() {
  const int r = open(Socket::Kind::pipe_read, AddressFamily::unix_socket);
  const int w = open(Socket::Kind::pipe_write, AddressFamily::unix_socket);
  auto f = new_flow("", w, r);
  find(r)->in = f;
  find(w)->out = f;
  find(r)->connected = find(w)->connected = true;
  return {r, w};
}

double NetworkCore::random01() {
  // xorshift64*: reproducible from the seed.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<double>((rng_ * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

void NetworkCore::transmit(const std::shared_ptr<Flow>& flow) {
  Flow& f = *flow;
  if (f.dead) return;
  if (f.external) {
    // The gateway's own buffer stands for the wire: fill it up to the send buffer's size.
    Socket* w = find(f.writer);
    if (!gateway_ || !w || !w->connected) return;
    while (!f.unsent.empty() && f.in_flight_bytes < f.send_capacity) {
      gateway_->send(f.writer, f.unsent.take(std::min(f.unsent.size(), options.max_segment)));
      f.in_flight_bytes = gateway_->buffered(f.writer);
      ++stats.segments;
    }
    if (f.unsent.empty() && f.fin_queued && !f.fin_sent) {
      f.fin_sent = true;  // a WebSocket cannot half-close: write_eof closes it once flushed
      gateway_->close(f.writer);
    }
    return;
  }
  const LinkOptions link = link_for(f.link_host);
  const bool instant =
      link.latency == 0 && link.bandwidth == 0 && link.loss == 0 && link.reset_after == 0;
  const double t = now();
  auto send_piece = [&](std::string data, bool fin) {
    if (instant && f.in_flight.empty()) {
      if (f.reader_gone) {
        if (!data.empty()) reset_flow_pair(flow, t);
        return;
      }
      if (fin) f.eof = true;
      stats.bytes_carried += data.size();
      f.received.push(std::move(data));
      mark(f.reader);
      mark(f.writer);
      return;
    }
    const double depart = std::max(t, f.wire_free_at);
    f.wire_free_at =
        depart + (link.bandwidth > 0 ? static_cast<double>(data.size()) / link.bandwidth : 0.0);
    double arrive = f.wire_free_at + link.latency;
    if (link.loss > 0 && !data.empty() && random01() < link.loss) {
      arrive += std::max(0.2, 2 * link.latency);  // lost once, resent after a timeout
      ++stats.retransmissions;
    }
    if (!f.in_flight.empty()) arrive = std::max(arrive, f.in_flight.back().arrive_at);
    f.in_flight_bytes += data.size();
    f.in_flight.push_back({arrive, std::move(data), fin});
    at(arrive, [this, weak = std::weak_ptr<Flow>(flow)] {
      if (auto fl = weak.lock()) deliver_due(fl);
    });
  };
  while (!f.unsent.empty()) {
    const std::size_t used = f.received.size() + f.in_flight_bytes;
    const std::size_t window = f.reader_gone
                                   ? options.max_segment
                                   : (used < f.receive_capacity ? f.receive_capacity - used : 0);
    std::size_t n = std::min({f.unsent.size(), window, options.max_segment});
    if (n == 0) break;
    bool reset_here = false;
    if (link.reset_after && f.crossed + n >= link.reset_after) {
      n = static_cast<std::size_t>(link.reset_after - f.crossed);
      reset_here = true;
    }
    f.crossed += n;
    ++stats.segments;
    send_piece(f.unsent.take(n), false);
    if (reset_here) {
      const double when = f.in_flight.empty() ? t : f.in_flight.back().arrive_at;
      reset_flow_pair(flow, when);
      return;
    }
    if (f.dead) return;
  }
  if (f.unsent.empty() && f.fin_queued && !f.fin_sent) {
    f.fin_sent = true;
    send_piece({}, true);
  }
}

void NetworkCore::deliver_due(const std::shared_ptr<Flow>& flow) {
  Flow& f = *flow;
  const double t = now();
  while (!f.in_flight.empty() && f.in_flight.front().arrive_at <= t) {
    Flow::Segment seg = std::move(f.in_flight.front());
    f.in_flight.pop_front();
    f.in_flight_bytes -= seg.data.size();
    if (f.reader_gone) {
      // Bytes for a closed socket: it answers with a reset.
      if (!seg.data.empty()) reset_flow_pair(flow, t + link_for(f.link_host).latency);
      return;
    }
    if (seg.fin) f.eof = true;
    stats.bytes_carried += seg.data.size();
    f.received.push(std::move(seg.data));
    mark(f.reader);
    mark(f.writer);  // its send buffer has room again
  }
}

void NetworkCore::reset_flow_pair(const std::shared_ptr<Flow>& flow, double when) {
  // This direction stops at once (what was already on the wire still arrives); at `when` the
  // reset reaches the ends still open: each reads what it had received, then gets ECONNRESET.
  flow->unsent.clear();
  flow->dead = true;
  std::vector<int> ends;
  for (int fd : {flow->writer, flow->reader})
    if (fd >= 0) ends.push_back(fd);
  ++stats.resets;
  at(when, [this, ends] {
    for (int fd : ends) reset_socket(fd);
  });
}

void NetworkCore::reset_socket(int fd) {
  Socket* s = find(fd);
  if (!s || s->error) return;
  for (Flow* f : {s->in.get(), s->out.get()})
    if (f) {
      f->dead = true;
      f->unsent.clear();
      f->in_flight.clear();
      f->in_flight_bytes = 0;
    }
  // As Linux's tcp_reset: a reset after the peer's FIN (CLOSE_WAIT: we wrote to a peer that had
  // closed) is EPIPE, asyncio's BrokenPipeError; otherwise ECONNRESET.
  const bool peer_finished = s->in && s->in->eof;
  s->error =
      std::make_error_code(peer_finished ? std::errc::broken_pipe : std::errc::connection_reset);
  mark(fd);
}

std::size_t NetworkCore::reset_connections(const std::string& host) {
  std::vector<std::shared_ptr<Flow>> flows;
  for (auto& [fd, s] : sockets_)
    if (s->kind == Socket::Kind::stream && s->out && !s->out->dead &&
        (host.empty() || s->out->link_host == host))
      flows.push_back(s->out);
  std::size_t n = 0;
  for (auto& f : flows) {
    if (f->dead) continue;
    reset_flow_pair(f, now());
    ++n;
  }
  return n;
}

// The error of a non-blocking call that moved nothing.
static std::size_t failed(std::error_code& error, std::errc e) {
  error = std::make_error_code(e);
  return 0;
}

std::size_t NetworkCore::send(int fd, std::string_view data, const SocketAddress* to,
                              std::error_code& error) {
  Socket* s = find(fd);
  if (!s) return failed(error, std::errc::bad_file_descriptor);
  if (s->kind == Socket::Kind::datagram) {
    if (s->error) {
      error = std::exchange(s->error, {});
      return 0;
    }
    if (s->connected && to && !(*to == s->peer)) return failed(error, std::errc::already_connected);
    if (!to && !s->connected) return failed(error, std::errc::destination_address_required);
    SocketAddress dest = to ? *to : s->peer;
    if (dest.family != AddressFamily::unix_socket && !is_ipv4(dest.host()) &&
        !is_ipv6(dest.host())) {
      // A name: resolved now for this socket's family, as Python's socket.sendto does.
      AddrInfoOptions hints;
      hints.family = s->family;
      hints.kind = SocketKind::datagram;
      std::vector<AddrInfo> found =
          resolve(std::string(dest.host()), std::to_string(dest.port), hints, error);
      if (error) return 0;
      if (found.empty()) return failed(error, std::errc::host_unreachable);
      dest = found.front().address;
    }
    if (dest.family != s->family) return failed(error, std::errc::address_family_not_supported);
    if (data.size() > kMaxDatagram) return failed(error, std::errc::message_size);
    auto_bind(*s, dest);
    SocketAddress from = s->local;
    if (is_wildcard(from) && from.family != AddressFamily::unix_socket)
      from.set_host(
          is_loopback(dest.host())
              ? (from.family == AddressFamily::inet ? "127.0.0.1" : "::1")
              : (from.family == AddressFamily::inet ? options.local_address : std::string("::1")));
    if (dest.family == AddressFamily::unix_socket)
      return send_local_datagram(fd, *s, dest, data, error);
    // Linux refuses the limited broadcast address without SO_BROADCAST (allow_broadcast).
    if (dest.host() == "255.255.255.255" && !s->broadcast)
      return failed(error, std::errc::permission_denied);
    const LinkOptions link = link_for(std::string(dest.host()));
    if (link.loss > 0 && random01() < link.loss) {
      ++stats.datagrams_dropped;
      return data.size();
    }
    s->wire_free_at =
        std::max(now(), s->wire_free_at) +
        (link.bandwidth > 0 ? static_cast<double>(data.size()) / link.bandwidth : 0.0);
    const double arrive = s->wire_free_at + link.latency;
    const bool connected = s->connected;
    at(arrive, [this, fd, dest, from, connected, payload = std::string(data)]() mutable {
      Socket* r = find_receiver(dest);
      if (!r || (r->connected && !(r->peer == from))) {
        ++stats.datagrams_dropped;
        // ICMP port unreachable: a connected sender hears ECONNREFUSED, as on Linux.
        if (!r && connected)
          if (Socket* sender = find(fd)) {
            sender->error = std::make_error_code(std::errc::connection_refused);
            mark(fd);
          }
        return;
      }
      if (r->datagram_bytes + payload.size() > r->receive_capacity) {
        ++stats.datagrams_dropped;
        return;
      }
      r->datagram_bytes += payload.size();
      r->datagrams.push_back({from, std::move(payload)});
      ++stats.datagrams;
      mark(r->fd);
    });
    return data.size();
  }
  if (s->kind == Socket::Kind::listener || s->kind == Socket::Kind::pipe_read ||
      (!s->out && !s->error)) {
    // Linux: EBADF on a pipe's read end; a TCP socket that never connected is EPIPE (its state
    // is CLOSE), a Unix one ENOTCONN.
    error = std::make_error_code(s->kind == Socket::Kind::pipe_read ? std::errc::bad_file_descriptor
                                 : s->kind == Socket::Kind::stream && !s->connecting &&
                                         s->family != AddressFamily::unix_socket
                                     ? std::errc::broken_pipe
                                     : std::errc::not_connected);
    return 0;
  }
  if (s->error) {
    error = s->error;
    return 0;
  }
  Flow& f = *s->out;
  if (f.fin_queued) return failed(error, std::errc::broken_pipe);
  if (f.dead) {  // cut: nothing moves until the reset arrives
    error = std::make_error_code(std::errc::operation_would_block);
    return 0;
  }
  if (s->kind == Socket::Kind::pipe_write && f.reader_gone)
    return failed(error, std::errc::broken_pipe);
  const std::size_t n = std::min(data.size(), f.send_space());
  if (n == 0) return failed(error, std::errc::operation_would_block);
  f.unsent.push(data.substr(0, n));
  ++stats.stream_sends;
  transmit(s->out);
  return n;
}

// AF_UNIX datagrams, as Linux's: delivered at once (no link), never dropped. A full receiver
// makes the sender wait (EAGAIN: the transport buffers them and pauses its protocol) instead;
// a path nothing is bound to is ENOENT, a receiver connected to someone else refuses.
std::size_t NetworkCore::send_local_datagram(int fd, Socket& s, const SocketAddress& dest,
                                             std::string_view data, std::error_code& error) {
  Socket* r = find_receiver(dest);
  if (!r)
    return failed(
        error, s.connected ? std::errc::connection_refused : std::errc::no_such_file_or_directory);
  if (r->connected && !(r->peer == s.local))
    return failed(error, std::errc::operation_not_permitted);
  if (r->datagram_bytes + data.size() > r->receive_capacity) {
    if (std::find(r->blocked_senders.begin(), r->blocked_senders.end(), fd) ==
        r->blocked_senders.end())
      r->blocked_senders.push_back(fd);
    return failed(error, std::errc::operation_would_block);
  }
  r->datagram_bytes += data.size();
  r->datagrams.push_back({s.local, std::string(data)});
  ++stats.datagrams;
  mark(r->fd);
  return data.size();
}

std::size_t NetworkCore::recv(int fd, std::span<char> out, SocketAddress* from,
                              std::error_code& error) {
  Socket* s = find(fd);
  if (!s) return failed(error, std::errc::bad_file_descriptor);
  if (s->kind == Socket::Kind::datagram) {
    if (s->error) {
      error = std::exchange(s->error, {});
      return 0;
    }
    if (s->datagrams.empty()) return failed(error, std::errc::operation_would_block);
    Datagram d = std::move(s->datagrams.front());
    s->datagrams.pop_front();
    s->datagram_bytes -= d.data.size();
    for (int sender : s->blocked_senders) mark(sender);  // room again: their sends retry
    s->blocked_senders.clear();
    const std::size_t n =
        std::min(out.size(), d.data.size());  // the rest is discarded, as UDP does
    std::memcpy(out.data(), d.data.data(), n);
    if (from) *from = d.from;
    return n;
  }
  if (!s->in) {
    error =
        std::make_error_code(s->kind == Socket::Kind::pipe_write ? std::errc::bad_file_descriptor
                                                                 : std::errc::not_connected);
    return 0;
  }
  if (from) *from = s->peer;
  Flow& f = *s->in;
  if (!f.received.empty()) {
    const std::size_t n = f.received.read(out);
    if (n) {
      mark(f.writer);  // the window opened: more may move
      transmit(s->in);
    }
    return n;
  }
  if (s->error) {
    error = s->error;
    return 0;
  }
  if (f.eof) return 0;
  error = std::make_error_code(std::errc::operation_would_block);
  return 0;
}

int NetworkCore::accept(int fd, SocketAddress* peer, std::error_code& error) {
  Socket* s = find(fd);
  if (!s || s->kind != Socket::Kind::listener) {
    error = std::make_error_code(s ? std::errc::invalid_argument : std::errc::bad_file_descriptor);
    return -1;
  }
  while (!s->accept_queue.empty()) {
    const int c = s->accept_queue.front();
    s->accept_queue.pop_front();
    if (Socket* conn = find(c)) {
      if (peer) *peer = conn->peer;
      return c;
    }
  }
  error = std::make_error_code(std::errc::operation_would_block);
  return -1;
}

void NetworkCore::shutdown_write(int fd) {
  Socket& s = get(fd);
  if (!s.out) throw os_error(std::errc::not_connected, "shutdown");
  if (s.out->fin_queued) return;
  s.out->fin_queued = true;
  transmit(s.out);
}

void NetworkCore::close(int fd, bool reset) noexcept {
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) return;
  Socket& s = *it->second;
  s.owner = nullptr;
  s.on_ready = nullptr;
  for (int sender : s.blocked_senders) mark(sender);  // their retry finds nobody there
  s.blocked_senders.clear();
  if (s.kind == Socket::Kind::listener) {
    for (int c : s.accept_queue) close(c, true);
    s.accept_queue.clear();
  }
  if (s.out && s.out->external) {
    if (gateway_ && s.connected && !s.out->fin_sent) {
      while (!s.out->unsent.empty())
        gateway_->send(fd, s.out->unsent.take(std::min(s.out->unsent.size(), options.max_segment)));
    }
    if (gateway_ && !s.out->fin_sent) gateway_->close(fd);
    s.out->fin_sent = true;
    s.out->dead = s.in->dead = true;
    --stats.open_sockets;
    closed_sockets_.push_back(std::move(it->second));
    may_have_work_ = true;
    sockets_.erase(it);
    return;
  }
  const bool unread = s.in && !s.in->received.empty();
  if ((reset || unread) && s.out && !s.out->dead && s.kind == Socket::Kind::stream) {
    // An abortive close, or one with unread data: the peer hears a reset (RST), as on Linux.
    const double latency = link_for(s.out->link_host).latency;
    s.out->writer = -1;
    if (s.in) s.in->reader = -1;
    reset_flow_pair(s.out, now() + latency);
  } else {
    if (s.out) {
      s.out->writer = -1;
      if (!s.out->fin_queued) {
        s.out->fin_queued = true;
        transmit(s.out);  // queued bytes still go, then FIN: the kernel lingers for us
      }
    }
    if (s.in) {
      s.in->reader = -1;
      s.in->reader_gone = true;
      s.in->received.clear();
      if (s.kind == Socket::Kind::pipe_read) mark(s.in->writer);  // its writer sees EPIPE
    }
  }
  --stats.open_sockets;
  closed_sockets_.push_back(std::move(it->second));
  may_have_work_ = true;
  sockets_.erase(it);
}

bool NetworkCore::readable(const Socket& s) const noexcept {
  switch (s.kind) {
    case Socket::Kind::listener:
      return !s.accept_queue.empty();
    case Socket::Kind::datagram:
      return !s.datagrams.empty() || bool(s.error);
    case Socket::Kind::pipe_write:
      return s.out && (s.out->reader_gone || s.out->dead);
    default:
      return bool(s.error) || (s.in && (!s.in->received.empty() || s.in->eof));
  }
}

bool NetworkCore::writable(const Socket& s) const noexcept {
  switch (s.kind) {
    case Socket::Kind::listener:
    case Socket::Kind::pipe_read:
      return false;
    case Socket::Kind::datagram:
      return true;
    default:
      if (s.error || (!s.connecting && !s.connected && s.connect_result)) return true;
      return s.connected && s.out && (s.out->send_space() > 0 || s.out->fin_queued || s.out->dead);
  }
}

void NetworkCore::watch(int fd, bool readable, bool writable,
                        std::function<void(bool, bool)> on_ready) {
  Socket& s = get(fd);
  s.watch_readable = readable;
  s.watch_writable = writable;
  s.on_ready = std::move(on_ready);
  mark(fd);
}

void NetworkCore::unwatch(int fd) noexcept {
  if (Socket* s = find(fd)) {
    s->watch_readable = s->watch_writable = false;
    s->on_ready = nullptr;
  }
}

void NetworkCore::set_owner(int fd, SocketOwner* owner) noexcept {
  if (Socket* s = find(fd)) {
    s->owner = owner;
    if (owner) mark(fd);
  }
}

void NetworkCore::retire(std::unique_ptr<SocketOwner> owner) {
  retired_.push_back(std::move(owner));
  may_have_work_ = true;
}

void NetworkCore::mark(int fd) noexcept {
  Socket* s = find(fd);
  if (!s || s->dirty) return;
  s->dirty = true;
  dirty_.push_back(fd);
  may_have_work_ = true;
}

// ---- Time --------------------------------------------------------------------------------------

void NetworkCore::at(double when, std::function<void()> action) {
  events_.push({when, seq_++, std::move(action)});
  may_have_work_ = true;
}

bool NetworkCore::run_pending() {
  if (idle()) {
    may_have_work_ = false;
    return false;
  }
  retired_.clear();
  closed_sockets_.clear();
  // What the gateway sent since the last look frees the writers' send buffers.
  for (std::size_t i = 0; i < external_.size();) {
    Socket* s = find(external_[i]);
    if (!s) {
      external_[i] = external_.back();
      external_.pop_back();
      continue;
    }
    if (gateway_ && s->out && s->connected) {
      const std::size_t b = gateway_->buffered(s->fd);
      if (b < s->out->in_flight_bytes) {
        s->out->in_flight_bytes = b;
        transmit(s->out);
        mark(s->fd);
      }
    }
    ++i;
  }
  bool reported = false;  // events may have completed futures (names), so they count
  const double t = events_.empty() ? 0.0 : now();
  while (!events_.empty() && events_.top().when <= t) {
    std::function<void()> action = std::move(const_cast<Timed&>(events_.top()).action);
    events_.pop();
    action();
    reported = true;
  }
  delivering_.swap(dirty_);
  std::vector<int> still_ready;
  for (int fd : delivering_) {
    Socket* s = find(fd);
    if (!s) continue;
    s->dirty = false;
    if (s->owner && s->owner->pump()) reported = true;
    s = find(fd);
    if (!s || !s->on_ready) continue;
    const bool r = s->watch_readable && readable(*s);
    const bool w = s->watch_writable && writable(*s);
    if (!r && !w) continue;
    auto on_ready = s->on_ready;
    on_ready(r, w);
    reported = true;
    still_ready.push_back(fd);  // level-triggered: looked at again next time
  }
  delivering_.clear();
  for (int fd : still_ready) mark(fd);
  return reported;
}

std::optional<double> NetworkCore::due_in() {
  if (!dirty_.empty()) return 0.0;
  if (events_.empty() && external_.empty()) return std::nullopt;
  std::optional<double> due;
  if (!events_.empty()) due = std::max(0.0, events_.top().when - now());
  // The host does not say when a WebSocket's buffer drains: look again every few milliseconds.
  constexpr double kGatewayPoll = 0.004;
  for (int fd : external_)
    if (Socket* s = find(fd);
        s && s->out && (s->out->in_flight_bytes > 0 || !s->out->unsent.empty())) {
      if (!due || *due > kGatewayPoll) due = kGatewayPoll;
      break;
    }
  return due;
}

// ---- The gateway
// ---------------------------------------------------------------------------------

void NetworkCore::add_route(const std::string& address, std::uint16_t port, std::string url) {
  routes_[{address, port}] = std::move(url);
}

const std::string* NetworkCore::route(const SocketAddress& a) const {
  auto it = routes_.find({std::string(a.host()), a.port});
  return it == routes_.end() ? nullptr : &it->second;
}

std::string NetworkCore::route_name_address() {
  return "198.18.0." + std::to_string(next_route_host_++);
}

void NetworkCore::gateway_opened(int fd, std::error_code error) {
  Socket* s = find(fd);
  if (!s || !s->connecting) return;
  s->connecting = false;
  s->connected = !error;
  s->connect_result = error;
  if (!error) {
    ++stats.connections;
    transmit(s->out);
  }
  mark(fd);
  if (on_host_io) on_host_io();
}

void NetworkCore::gateway_data(int fd, std::string_view data) {
  Socket* s = find(fd);
  if (!s || !s->in || s->in->eof) return;
  s->in->received.push(data);
  stats.bytes_carried += data.size();
  mark(fd);
  if (on_host_io) on_host_io();
}

void NetworkCore::gateway_closed(int fd, bool clean) {
  Socket* s = find(fd);
  if (!s) return;
  if (s->connecting) {
    s->connecting = false;
    s->connect_result = std::make_error_code(std::errc::connection_refused);
  } else if (clean) {
    if (s->in) s->in->eof = true;
  } else if (!s->error) {
    s->error = std::make_error_code(std::errc::connection_reset);
    ++stats.resets;
  }
  if (s->out) s->out->fin_sent = true;  // nothing more goes out
  mark(fd);
  if (on_host_io) on_host_io();
}

// ---- Names and links ---------------------------------------------------------------------------

LinkOptions NetworkCore::link_for(const std::string& host) const {
  auto it = links.find(host);
  return it == links.end() ? options.link : it->second;
}

namespace {

struct ResolverCategory final : std::error_category {
  const char* name() const noexcept override { return "resolver"; }
  std::string message(int code) const override {
    switch (code) {
      case -2:
        return "Name or service not known";
      case -8:
        return "Servname not supported for ai_socktype";
      case -9:
        return "Address family for hostname not supported";
      default:
        return "Unknown resolver error";
    }
  }
};

int service_port(const std::string& service) {
  if (service.empty()) return 0;
  if (std::all_of(service.begin(), service.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
      service.size() <= 5) {
    const int p = std::stoi(service);
    return p <= 65535 ? p : -1;
  }
  static const std::pair<const char*, int> known[] = {{"http", 80}, {"https", 443}, {"ws", 80},
                                                      {"wss", 443}, {"echo", 7},    {"ftp", 21},
                                                      {"ssh", 22}};
  for (auto& [name, port] : known)
    if (service == name) return port;
  return -1;
}

}  // namespace

const std::error_category& resolver_category() noexcept {
  static ResolverCategory c;
  return c;
}

std::vector<AddrInfo> NetworkCore::resolve(const std::string& host, const std::string& service,
                                           const AddrInfoOptions& o, std::error_code& error) const {
  const int port = service_port(service);
  if (port < 0 || (service.empty() && host.empty())) {
    error = std::error_code(service.empty() ? -2 : -8, resolver_category());
    return {};
  }
  std::vector<std::string> addresses;
  if (host.empty()) {
    if (o.flags & kPassiveFlag)
      addresses = {"0.0.0.0", "::"};
    else
      addresses = {"127.0.0.1", "::1"};
  } else if (is_ipv4(host) || is_ipv6(host)) {
    addresses = {host};
  } else if (o.flags & kNumericHostFlag) {
    error = std::error_code(-2, resolver_category());
    return {};
  } else if (host == "localhost") {
    addresses = {"127.0.0.1", "::1"};
  } else {
    auto [b, e] = hosts.equal_range(host);
    for (auto it = b; it != e; ++it) addresses.push_back(it->second);
  }
  std::vector<AddrInfo> out;
  for (const auto& a : addresses) {
    const AddressFamily family = is_ipv6(a) ? AddressFamily::inet6 : AddressFamily::inet;
    if (o.family != AddressFamily::unspec && o.family != family) continue;
    for (SocketKind kind : {SocketKind::stream, SocketKind::datagram}) {
      if (o.kind != SocketKind::any && o.kind != kind) continue;
      AddrInfo i;
      i.family = family;
      i.kind = kind;
      i.protocol = kind == SocketKind::stream ? 6 : 17;
      if ((o.flags & kCanonNameFlag) && out.empty()) i.canonname = host;
      i.address = SocketAddress::ip(a, static_cast<std::uint16_t>(port));
      out.push_back(std::move(i));
    }
  }
  if (out.empty()) error = std::error_code(addresses.empty() ? -2 : -9, resolver_category());
  return out;
}

NameInfo NetworkCore::name_of(const SocketAddress& address, int flags,
                              std::error_code& error) const {
  NameInfo info;
  info.host = std::string(address.host());
  info.service = std::to_string(address.port);
  constexpr int kNameRequired = 8;  // NI_NAMEREQD
  constexpr int kNumericHost = 1;   // NI_NUMERICHOST
  if (!(flags & kNumericHost)) {
    if (is_loopback(address.host())) {
      info.host = "localhost";
    } else {
      for (const auto& [name, a] : hosts)
        if (a == address.host()) {
          info.host = name;
          return info;
        }
      if (flags & kNameRequired) error = std::error_code(-2, resolver_category());
    }
  }
  return info;
}

}  // namespace eddy::vnet::detail

// ---- The public facade
// ---------------------------------------------------------------------------

namespace eddy::vnet {

using detail::Socket;

void Network::add_host(const std::string& name, const std::string& address) {
  SocketAddress::ip(address, 0);  // validates the length
  core_->hosts.emplace(name, address);
}
void Network::set_link(const std::string& host, const LinkOptions& o) {
  core_->links[host] = o;
}
void Network::set_default_link(const LinkOptions& o) {
  core_->options.link = o;
}
LinkOptions Network::link(const std::string& host) const {
  return core_->link_for(host);
}
std::size_t Network::reset_connections(const std::string& host) {
  return core_->reset_connections(host);
}

void Network::route_websocket(const std::string& host, std::uint16_t port, const std::string& url) {
  if (!url.starts_with("ws://") && !url.starts_with("wss://"))
    throw ValueError("not a WebSocket URL: " + url);
  std::string address = host;
  if (!detail::is_numeric_address(host)) {
    auto [b, e] = core_->hosts.equal_range(host);
    if (b != e)
      address = b->second;
    else
      core_->hosts.emplace(host, address = core_->route_name_address());
  }
  core_->add_route(address, port, url);
}

bool Network::has_gateway() const noexcept {
  return core_->gateway() != nullptr;
}

int Network::socket(AddressFamily family, SocketKind kind) {
  return core_->open(kind == SocketKind::datagram ? Socket::Kind::datagram : Socket::Kind::stream,
                     family);
}
std::pair<int, int> Network::socketpair() {
  return core_->socketpair();
}
std::pair<int, int> Network::pipe() {
  return core_->pipe();
}
void Network::bind(int fd, const SocketAddress& address) {
  core_->bind(fd, address);
}
void Network::listen(int fd, int backlog) {
  core_->listen(fd, backlog);
}
void Network::shutdown_write(int fd) {
  core_->shutdown_write(fd);
}
void Network::close(int fd) {
  Socket& s = core_->get(fd);
  if (s.owner)
    throw RuntimeError("virtual socket " + std::to_string(fd) +
                       " belongs to a transport or server: close that instead");
  core_->close(fd);
}
SocketAddress Network::getsockname(int fd) const {
  return core_->get(fd).local;
}
SocketAddress Network::getpeername(int fd) const {
  Socket& s = core_->get(fd);
  if (!s.connected)
    throw std::system_error(std::make_error_code(std::errc::not_connected), "getpeername");
  return s.peer;
}
NetworkStats Network::stats() const {
  return core_->stats;
}
const NetworkOptions& Network::options() const {
  return core_->options;
}
void Network::set_buffer_sizes(std::size_t send_buffer, std::size_t receive_buffer) {
  if (send_buffer == 0 || receive_buffer == 0) throw ValueError("buffer sizes must be positive");
  core_->options.send_buffer = send_buffer;
  core_->options.receive_buffer = receive_buffer;
}

Network* find_network(EventLoop& loop) noexcept {
  auto* b = dynamic_cast<selector::SelectorBackend*>(&loop.backend());
  return b ? &b->network() : nullptr;
}

Network& network(EventLoop& loop) {
  if (Network* n = find_network(loop)) return *n;
  throw NotSupportedError("eddy::vnet::network", loop.capabilities().target,
                          "this loop uses the operating system's network");
}

}  // namespace eddy::vnet
