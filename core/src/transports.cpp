// Write flow control, socket addresses, the backends' default "not supported" stream methods,
// and StreamTransport: asyncio's _SelectorSocketTransport semantics over a byte-moving endpoint.
#include "eddy/transports.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "eddy/backend.hpp"
#include "eddy/detail/files.hpp"
#include "eddy/detail/tls.hpp"
#include "eddy/errors.hpp"
#include "eddy/log.hpp"
#include "eddy/loop.hpp"
#include "eddy/server.hpp"
#include "stream_transport.hpp"

namespace eddy {

// ---- Addresses ----------------------------------------------------------------------------------

void SocketAddress::set_host(std::string_view host) {
  if (host.size() > kMaxHost)
    throw ValueError("address too long (" + std::to_string(host.size()) + " > " + std::to_string(kMaxHost) + " bytes)");
  std::memset(host_, 0, sizeof host_);
  std::memcpy(host_, host.data(), host.size());
  host_len_ = static_cast<std::uint16_t>(host.size());
}

SocketAddress SocketAddress::ip(std::string_view host, std::uint16_t port) {
  SocketAddress a;
  a.family = host.find(':') != std::string_view::npos ? AddressFamily::inet6 : AddressFamily::inet;
  a.set_host(host);
  a.port = port;
  return a;
}

SocketAddress SocketAddress::unix_path(std::string_view path) {
  SocketAddress a;
  a.family = AddressFamily::unix_socket;
  a.set_host(path);
  return a;
}

const char* family_name(AddressFamily family) noexcept {
  switch (family) {
    case AddressFamily::inet:
      return "AF_INET";
    case AddressFamily::inet6:
      return "AF_INET6";
    case AddressFamily::unix_socket:
      return "AF_UNIX";
    case AddressFamily::unspec:
      break;
  }
  return "AF_UNSPEC";
}

std::string SocketAddress::to_string() const {
  const std::string h(host());
  switch (family) {
    case AddressFamily::inet: return h + ":" + std::to_string(port);
    case AddressFamily::inet6: return "[" + h + "]:" + std::to_string(port);
    case AddressFamily::unix_socket: return h.empty() ? "<unnamed unix socket>" : h;
    default: return "<unspecified address>";
  }
}

// ---- Backend defaults ---------------------------------------------------------------------------

namespace {
[[noreturn]] void backend_lacks(const char* method) {
  throw NotSupportedError(method, "this backend", "it has no stream sockets");
}
}  // namespace

StreamEndpointPtr Backend::connect_stream(const SocketAddress&, const ConnectOptions&, StreamEndpoint::ConnectDone) {
  backend_lacks("create_connection");
}
StreamListenerPtr Backend::bind_stream(const SocketAddress&, const ListenOptions&) { backend_lacks("create_server"); }
StreamEndpointPtr Backend::adopt_stream(int, const ConnectOptions&) { backend_lacks("connect_accepted_socket"); }
void Backend::getaddrinfo(const std::string&, const std::string&, const AddrInfoOptions&, ResolveDone) {
  backend_lacks("getaddrinfo");
}
void Backend::getnameinfo(const SocketAddress&, int, NameInfoDone) { backend_lacks("getnameinfo"); }
StreamEndpointPtr Backend::adopt_pipe(int, const char* method) {
  backend_lacks(method);
}
SpawnedProcess Backend::spawn_process(const ProcessSpec&, std::function<void(int)>) {
  throw NotSupportedError("subprocess_exec", "this backend", "it has no processes");
}
void Backend::watch_fd(int, bool, bool, std::function<void(bool, bool)>) { backend_lacks("add_reader"); }
std::size_t Backend::sock_recv(int, std::span<char>, SocketAddress*, std::error_code&) { backend_lacks("sock_recv"); }
std::size_t Backend::sock_send(int, std::string_view, const SocketAddress*, std::error_code&) {
  backend_lacks("sock_sendall");
}
int Backend::sock_accept(int, SocketAddress*, std::error_code&) { backend_lacks("sock_accept"); }
void Backend::sock_connect(int, const SocketAddress&, std::error_code&) { backend_lacks("sock_connect"); }
std::error_code Backend::sock_connect_result(int) { backend_lacks("sock_connect"); }
Backend::SocketFacts Backend::socket_facts(int) {
  backend_lacks("sock_recv");
}
std::unique_ptr<Backend::InterruptWatch> Backend::watch_interrupt(std::function<void()>) {
  return nullptr;
}
std::size_t Backend::sendfile_chunk(int, int, std::uint64_t, std::size_t, std::error_code&) {
  backend_lacks("sock_sendfile");
}
std::size_t Backend::read_file(int file, std::uint64_t offset, std::span<char> buffer,
                               std::error_code& error) {
  std::size_t n = platform::read_file_at(file, offset, buffer, error);
  if (error == std::errc::invalid_seek) {  // a pipe: read on from where it is
    error.clear();
    n = platform::read_file(file, buffer, error);
  }
  return n;
}
void Backend::seek_file(int file, std::uint64_t offset) noexcept {
  platform::seek_file(file, offset);
}
void StreamEndpoint::wait_writable(std::function<void()>) {
  backend_lacks("sendfile");
}
StreamEndpointPtr Backend::wrap_tls(StreamEndpointPtr inner, const TlsContext& context,
                                    std::string_view server_hostname, HandshakeDone done) {
  return platform::wrap_tls(std::move(inner), context, server_hostname, std::move(done));
}
void Backend::watch_signal(int, std::function<void()>) {
  throw NotSupportedError("add_signal_handler", "this backend", "it has no signals");
}
void Backend::check_signal(int) const {
  throw NotSupportedError("remove_signal_handler", "this backend", "it has no signals");
}
DatagramEndpointPtr Backend::open_datagram(const DatagramOptions&) { backend_lacks("create_datagram_endpoint"); }
DatagramEndpointPtr Backend::adopt_datagram(int) { backend_lacks("create_datagram_endpoint"); }

// ---- Flow control -------------------------------------------------------------------------------

void WriteFlowControl::set_limits(std::optional<long long> high, std::optional<long long> low) {
  // Python's integers: high = 4 * low cannot overflow there (here it saturates), and
  // low = high // 4 rounds down, so the message for a negative high names the same low.
  constexpr long long kMax = std::numeric_limits<long long>::max();
  long long h, l;
  if (!high) {
    h = !low ? static_cast<long long>(kDefaultHigh) : *low > kMax / 4 ? kMax : 4 * *low;
  } else {
    h = *high;
  }
  l = low ? *low : h / 4 - (h % 4 < 0 ? 1 : 0);  // floor division
  if (!(h >= l && l >= 0))
    throw ValueError("high (" + std::to_string(h) + ") must be >= low (" + std::to_string(l) + ") must be >= 0");
  high_ = static_cast<std::size_t>(h);
  low_ = static_cast<std::size_t>(l);
}

void WriteFlowControl::describe(inspect::TransportInfo& out, std::size_t buffer, bool closed, bool closing) const {
  out.state = closed ? "closed" : closing ? "closing" : "open";
  out.buffer = buffer;
  out.high = high_;
  out.low = low_;
  out.writing_paused = paused_;
}

namespace {
void report_protocol_failure(EventLoop& loop, const char* message, const BaseTransport* transport) {
  ExceptionContext ctx(message, std::current_exception());
  ctx.extra["transport"] = transport ? "stream transport" : "";
  ctx.extra["protocol"] = "protocol";
  loop.call_exception_handler(ctx);
}
}  // namespace

void WriteFlowControl::maybe_pause(std::size_t size, BaseProtocol* protocol, EventLoop& loop,
                                   const BaseTransport* transport) {
  if (size <= high_ || paused_) return;
  paused_ = true;
  EDDY_INSPECT_HOOK(loop,
                    transport_event(inspect::EventKind::pause_writing, inspect_id, double(size)));
  if (!protocol) return;
  try {
    protocol->pause_writing();
  } catch (...) {
    report_protocol_failure(loop, "protocol.pause_writing() failed", transport);
  }
}

void WriteFlowControl::maybe_resume(std::size_t size, BaseProtocol* protocol, EventLoop& loop,
                                    const BaseTransport* transport) {
  if (!paused_ || size > low_) return;
  paused_ = false;
  EDDY_INSPECT_HOOK(loop,
                    transport_event(inspect::EventKind::resume_writing, inspect_id, double(size)));
  if (!protocol) return;
  try {
    protocol->resume_writing();
  } catch (...) {
    report_protocol_failure(loop, "protocol.resume_writing() failed", transport);
  }
}

// ---- StreamTransport ----------------------------------------------------------------------------

namespace {
// Blocks of StreamTransport::pending_ hold up to this much of small writes.
constexpr std::size_t kGatherBlock = 64 * 1024;
// Protocol (not Buffered) transports read into this; data_received sees it for the call only.
constexpr std::size_t kReadBufferBytes = 256 * 1024;
thread_local IoBuffer shared_read_buffer;
// asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int kConnLostWritesLogThreshold = 5;
}  // namespace

Ref<StreamTransport> StreamTransport::create(EventLoop& loop, StreamEndpointPtr endpoint,
                                             std::shared_ptr<BaseProtocol> protocol, Server* server,
                                             Future<void> waiter, Mode mode, bool announce) {
  Ref<StreamTransport> t(new StreamTransport(loop, std::move(endpoint), std::move(protocol), server));
  t->mode_ = mode;
  loop.call_soon([t, waiter, announce]() mutable {
    t->connection_made(announce);
    if (waiter && !waiter.done()) waiter.set_result();
  });
  return t;
}

StreamTransport::StreamTransport(EventLoop& loop, StreamEndpointPtr endpoint,
                                 std::shared_ptr<BaseProtocol> protocol, Server* server)
    : loop_(&loop), endpoint_(std::move(endpoint)), server_(server) {
  set_protocol(std::move(protocol));
  endpoint_->set_events(this);
  peername_ = endpoint_->extra_info("peername");
  sockname_ = endpoint_->extra_info("sockname");
  const std::any socket = endpoint_->extra_info("socket");
  if (const int* fd = std::any_cast<int>(&socket)) {
    loop.socket_transport_opened(*fd, this);
    socket_fd_ = *fd;
  }
  self_ = Ref<StreamTransport>(this);
  loop.transport_created(this);
  flow_.inspect_id = inspect_id;
  if (server_) server_->attach(this);
}

StreamTransport::~StreamTransport() {
  end_handover();  // a start_tls whose coroutine was destroyed mid-handshake
  release_socket_fd();
  loop_->transport_destroyed(this);
}

void StreamTransport::release_socket_fd() noexcept {
  if (socket_fd_ >= 0) loop_->socket_transport_released(std::exchange(socket_fd_, -1), this);
}

void StreamTransport::describe(inspect::TransportInfo& out, const void*& server) const {
  server = server_.get();
  if (mode_ == Mode::read_pipe) {
    out.kind = "read pipe";
  } else if (mode_ == Mode::write_pipe) {
    out.kind = "write pipe";
  } else {
    const SocketAddress* peer = std::any_cast<SocketAddress>(&peername_);
    const bool tls = endpoint_ && endpoint_->extra_info("ssl_object").has_value();
    out.kind = peer && peer->family == AddressFamily::unix_socket ? (tls ? "unix+tls" : "unix")
                                                                  : (tls ? "tcp+tls" : "tcp");
    if (peer) {
      if (!peer_text_) peer_text_ = peer->to_string();
      out.peer = *peer_text_;
    }
  }
  flow_.describe(out, get_write_buffer_size(), conn_lost_, closing_);
  out.reading_paused = paused_;
}

void StreamTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  if (!protocol) throw TypeError("set_protocol: protocol must not be null");
  buffered_protocol_ = dynamic_cast<BufferedProtocol*>(protocol.get());
  stream_protocol_ = buffered_protocol_ ? nullptr : dynamic_cast<Protocol*>(protocol.get());
  if (!buffered_protocol_ && !stream_protocol_)
    throw TypeError("a stream transport needs a Protocol or a BufferedProtocol");
  protocol_ = std::move(protocol);
}

void StreamTransport::connection_made(bool announce) {
  if (conn_lost_) return;  // aborted before the first pass
  protocol_connected_ = true;
  Ref<Transport> self(this);
  if (announce)
    call_connection_made(*loop_, [&] {
      if (buffered_protocol_)
        buffered_protocol_->connection_made(self);
      else
        stream_protocol_->connection_made(self);
    });
  if (mode_ == Mode::write_pipe) {
    // asyncio's write pipe watches its pipe for reading, to notice that the reader went away
    // (read_eof here) without waiting for the next write to fail. The watch is best effort.
    if (!closing_ && endpoint_) {
      try {
        endpoint_->watch_reader();
      } catch (const std::system_error&) {
      }
    }
    return;
  }
  if (!paused_ && !closing_ && endpoint_) {
    try {
      endpoint_->read_start();
    } catch (const std::system_error&) {
      if (mode_ == Mode::read_pipe)
        // asyncio's read pipe starts reading in a callback of its own: a descriptor the
        // platform cannot watch (/dev/null under epoll) is reported there, and the transport
        // stays open without reading.
        report_callback_failure(*loop_, "read_pipe_transport._add_reader()");
      else
        fatal_error(std::current_exception(), "Fatal read error on socket transport");
    }
  }
}

std::any StreamTransport::get_extra_info(std::string_view name, std::any default_value) const {
  if (EDDY_UNLIKELY(retained_tls_ != nullptr)) {
    const std::any* kept = name == "cipher"        ? &retained_tls_->cipher
                           : name == "peercert"    ? &retained_tls_->peercert
                           : name == "ssl_version" ? &retained_tls_->ssl_version
                                                   : nullptr;
    if (kept) return kept->has_value() ? *kept : default_value;
  }
  return lookup_extra_info(name, std::move(default_value), peername_, sockname_, endpoint_.get());
}

void StreamTransport::drop_endpoint() noexcept {
  if (!endpoint_) return;
  if (over_tls()) {
    try {
      auto kept = std::make_unique<RetainedTls>();
      kept->cipher = endpoint_->extra_info("cipher");
      kept->peercert = endpoint_->extra_info("peercert");
      kept->ssl_version = endpoint_->extra_info("ssl_version");
      retained_tls_ = std::move(kept);
    } catch (...) {  // out of memory: the names answer their default, as before the handshake
    }
  }
  endpoint_.reset();
}

void StreamTransport::pause_reading() {
  if (closing_ || paused_ || mode_ == Mode::write_pipe) return;  // a write pipe never reads
  paused_ = true;
  EDDY_INSPECT_HOOK(*loop_, transport_event(inspect::EventKind::pause_reading, inspect_id));
  if (endpoint_) endpoint_->read_stop();
}

void StreamTransport::resume_reading() {
  if (closing_ || !paused_ || mode_ == Mode::write_pipe) return;
  paused_ = false;
  EDDY_INSPECT_HOOK(*loop_, transport_event(inspect::EventKind::resume_reading, inspect_id));
  if (!endpoint_ || !protocol_connected_ || eof_received_) return;
  if (!over_tls()) {
    endpoint_->read_start();
    return;
  }
  // A TLS endpoint delivers the records it already holds from read_start(): asyncio delivers
  // them from a callback of their own, so data_received never runs inside resume_reading().
  Ref<StreamTransport> self(this);
  loop_->call_soon([self] {
    if (self->paused_ || self->closing_ || !self->endpoint_ || self->eof_received_) return;
    try {
      self->endpoint_->read_start();
    } catch (const std::system_error&) {
      self->fatal_error(std::current_exception(), "Fatal read error on socket transport");
    }
  });
}

std::size_t StreamTransport::get_write_buffer_size() const {
  return endpoint_ && !conn_lost_ ? endpoint_->queued_bytes() + pending_bytes_ : 0;
}

void StreamTransport::set_write_buffer_limits(std::optional<long long> high, std::optional<long long> low) {
  flow_.set_limits(high, low);
  flow_.maybe_pause(get_write_buffer_size(), protocol_.get(), *loop_, this);
}

void StreamTransport::writelines(std::span<const std::string_view> chunks) {
  if (mode_ == Mode::read_pipe) throw RuntimeError("writelines() on a read pipe transport");
  if (eof_written_) throw RuntimeError("Cannot call writelines() after write_eof()");
  if (sendfile_active_) throw RuntimeError("unable to writelines; sendfile is in progress");
  std::size_t total = 0;
  for (std::string_view c : chunks) total += c.size();
  if (total == 0) return;
  // As asyncio's one send of the list: small chunks joined go out in one system call; while a
  // write is in flight, write() gathers them anyway.
  constexpr std::size_t kJoinAtMost = 64 * 1024;
  if (chunks.size() > 1 && total <= kJoinAtMost && writes_in_flight_ == 0) {
    std::string joined;
    joined.reserve(total);
    for (std::string_view c : chunks) joined += c;
    write(joined);
    return;
  }
  for (std::string_view c : chunks) write(c);
}

void StreamTransport::write(std::string_view data) {
  if (mode_ == Mode::read_pipe) throw RuntimeError("write() on a read pipe transport");
  if (eof_written_) throw RuntimeError("Cannot call write() after write_eof()");
  if (sendfile_active_) throw RuntimeError("unable to write; sendfile is in progress");
  if (data.empty()) return;
  bytes_out += data.size();
  if (mode_ == Mode::write_pipe && (closing_ || conn_lost_)) {
    // asyncio's pipe transport drops what is written once it is closing, even while earlier
    // data is still queued (a socket transport still sends that).
    if (dropped_writes_++ >= kConnLostWritesLogThreshold)
      log(LogLevel::warning, "pipe closed by peer or os.write(pipe, data) raised exception.");
    return;
  }
  if (conn_lost_) {
    if (conn_lost_ >= kConnLostWritesLogThreshold) log(LogLevel::warning, "socket.send() raised exception.");
    ++conn_lost_;
    return;
  }
  if (closing_handshake_ || (closing_ && over_tls())) {
    // TLS from close() on (asyncio's SSLProtocol is then FLUSHING): what is already written still
    // goes, before close_notify; later writes are dropped.
    if (dropped_writes_++ >= kConnLostWritesLogThreshold)
      log(LogLevel::warning, "SSL connection is closed");
    return;
  }
  if (writes_in_flight_ == 0) {
    std::error_code ec;
    const std::size_t n = endpoint_->try_write(data, ec);
    if (ec) {
      fatal_error(std::make_exception_ptr(std::system_error(ec)), "Fatal write error on socket transport");
      return;
    }
    data.remove_prefix(n);
    if (data.empty()) return;
    WriteBuffers rest;
    rest.emplace_back(data);
    hand_over(std::move(rest), data.size());
  } else {
    gather(data);
  }
  const std::size_t buffered = get_write_buffer_size();
  EDDY_INSPECT_HOOK(
      *loop_, transport_event(inspect::EventKind::write_buffer, inspect_id, double(buffered)));
  flow_.maybe_pause(buffered, protocol_.get(), *loop_, this);
}

Future<void> StreamTransport::flushed() {
  Future<void> f = loop_->create_future<void>();
  if (writes_in_flight_ == 0 || conn_lost_)
    f.set_result();
  else
    flush_waiters_.push_back(f);
  return f;
}

void StreamTransport::wake_flush_waiters() {
  for (Future<void>& f : std::exchange(flush_waiters_, {}))
    if (!f.done()) f.set_result();
}

StreamEndpointPtr StreamTransport::take_endpoint() {
  if (closing_ || conn_lost_ || !endpoint_) throw RuntimeError("start_tls: the transport is closing");
  if (writes_in_flight_) throw RuntimeError("start_tls: the transport still has buffered data; wait for it to drain");
  endpoint_->read_stop();
  endpoint_->set_events(nullptr);
  StreamEndpointPtr endpoint = std::move(endpoint_);
  closing_ = true;
  ++conn_lost_;
  release_socket_fd();  // the socket goes to the TLS transport
  Ref<StreamTransport> self(this);
  loop_->call_soon([self] {
    // The old protocol may hold this transport: dropping our side breaks the cycle. The server
    // still counts the connection until end_handover().
    self->stream_protocol_ = nullptr;
    self->buffered_protocol_ = nullptr;
    self->protocol_.reset();
    self->self_.reset();
  });
  return endpoint;
}

void StreamTransport::watch_handover(Future<void> handshake) {
  handover_ = std::move(handshake);
}

bool StreamTransport::abort_handover() {
  if (!handover_) return false;
  Future<void> handshake = std::exchange(handover_, {});
  if (!handshake.done())
    handshake.set_exception(
        std::system_error(std::make_error_code(std::errc::connection_aborted),
                          "start_tls: the transport was closed during the TLS handshake"));
  return true;
}

void StreamTransport::end_handover() noexcept {
  handover_ = {};
  if (server_) std::exchange(server_, nullptr)->detach(this);
}

void StreamTransport::write_eof() {
  if (mode_ == Mode::read_pipe) throw RuntimeError("write_eof() on a read pipe transport");
  if (mode_ == Mode::write_pipe) {
    close();
    return;
  }
  if (over_tls()) throw NotSupportedError("write_eof", "TLS transports", "TLS has no half-close");
  if (closing_ || eof_written_) return;
  eof_written_ = true;
  // The platform sends FIN after queued writes; a sendfile in progress sends it when done, and
  // data not yet handed to the endpoint takes it along (submit_pending).
  if (endpoint_ && !sendfile_active_ && pending_.empty()) endpoint_->shutdown();
}

void StreamTransport::close() {
  if (abort_handover()) return;  // during start_tls's handshake
  if (closing_) return;
  closing_ = true;
  if (endpoint_) endpoint_->read_stop();
  if (over_tls()) {
    // asyncio's ssl_shutdown_timeout runs from close(): flushing and the closing handshake
    // together must not take longer.
    Ref<StreamTransport> self(this);
    tls_shutdown_timer_ = loop_->call_later(tls_shutdown_timeout_, [self] {
      self->tls_shutdown_timer_ = {};
      if (!self->conn_lost_)
        self->force_close(std::make_exception_ptr(TimeoutError("SSL shutdown timed out")));
    });
  }
  if (writes_in_flight_ == 0 && !sendfile_active_) finish_closing();  // else once the data is out
}

void StreamTransport::finish_closing() {
  if (closing_handshake_) return;
  if (endpoint_ && endpoint_->start_closing_handshake()) {
    closing_handshake_ = true;  // closing_handshake_done goes on
    return;
  }
  tls_shutdown_timer_.cancel();
  ++conn_lost_;
  Ref<StreamTransport> self(this);
  loop_->call_soon([self] { self->call_connection_lost(nullptr); });
}

void StreamTransport::closing_handshake_done(std::error_code error) {
  if (conn_lost_) return;
  Ref<StreamTransport> keep(this);
  tls_shutdown_timer_.cancel();
  if (error) {
    fatal_error(std::make_exception_ptr(std::system_error(error, "SSL shutdown")),
                "Fatal error on SSL transport");
    return;
  }
  // asyncio ends its shutdown by calling eof_received(), unless the peer's EOF was reported.
  if (!eof_received_ && protocol_connected_) {
    bool keep_open = false;  // nothing to keep open: the TLS stream is ending either way
    if (!call_eof_received(keep_open) || conn_lost_) return;  // it raised, or aborted meanwhile
  }
  ++conn_lost_;
  loop_->call_soon([keep] { keep->call_connection_lost(nullptr); });
}

void StreamTransport::abort() {
  if (abort_handover()) return;  // during start_tls's handshake
  force_close(nullptr);
}

void StreamTransport::force_close(std::exception_ptr exc) {
  if (conn_lost_) return;
  tls_shutdown_timer_.cancel();
  if (writes_in_flight_ && endpoint_) {
    // Drop what is still queued: only closing the endpoint cancels the platform's writes.
    endpoint_->read_stop();
    drop_endpoint();
    writes_in_flight_ = 0;
  }
  pending_ = {};
  pending_bytes_ = 0;
  if (!closing_) {
    closing_ = true;
    if (endpoint_) endpoint_->read_stop();
  }
  ++conn_lost_;
  wake_flush_waiters();
  if (sendfile_writable_ && !sendfile_writable_.done()) sendfile_writable_.set_result();
  Ref<StreamTransport> self(this);
  loop_->call_soon([self, exc] { self->call_connection_lost(exc); });
}

void StreamTransport::loop_closed() noexcept {
  Ref<StreamTransport> keep(this);
  closing_ = true;
  if (!conn_lost_) ++conn_lost_;
  writes_in_flight_ = 0;
  pending_ = {};
  pending_bytes_ = 0;
  sendfile_active_ = false;
  flush_waiters_.clear();
  sendfile_writable_ = {};
  tls_shutdown_timer_ = {};  // dropped uncancelled: the closed loop frees its timers itself
  let_go();
}

void StreamTransport::let_go() noexcept {
  tls_shutdown_timer_.cancel();
  tls_shutdown_timer_ = {};
  drop_endpoint();
  release_socket_fd();
  if (server_) std::exchange(server_, nullptr)->detach(this);
  // As asyncio, the transport lets its protocol go: a protocol holding the transport (a
  // StreamWriter does) would otherwise keep both alive.
  stream_protocol_ = nullptr;
  buffered_protocol_ = nullptr;
  protocol_.reset();
  self_.reset();
}

void StreamTransport::call_connection_lost(std::exception_ptr exc) {
  Ref<StreamTransport> keep(this);
  // The endpoint, the server's count and our self-reference go even if connection_lost throws
  // (run_ready then reports the exception, as asyncio reports a failing callback).
  struct Release {
    StreamTransport* t;
    ~Release() { t->let_go(); }
  } release{this};
  if (protocol_connected_) protocol_->connection_lost(exc);
}

void StreamTransport::report(const char* message, std::exception_ptr exc) {
  ExceptionContext ctx(message, exc);
  ctx.extra["transport"] = "stream transport";
  if (auto pn = std::any_cast<SocketAddress>(&peername_)) ctx.extra["peername"] = pn->to_string();
  loop_->call_exception_handler(ctx);
}

void StreamTransport::fatal_error(std::exception_ptr exc, const char* message) {
  // OSErrors (connection reset, broken pipe...) are normal network weather: asyncio logs them
  // only in debug mode. Anything else (a protocol callback that threw) is reported.
  bool os_error = false;
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error&) {
    os_error = true;
  } catch (...) {
  }
  if (!os_error)
    report(message, exc);
  else if (loop_->get_debug())
    log(LogLevel::debug, std::string(message));
  force_close(exc);
}

// ---- Endpoint events ----------------------------------------------------------------------------

std::span<char> StreamTransport::read_buffer(std::size_t suggested) {
  if (buffered_protocol_) {
    try {
      std::span<char> buf = buffered_protocol_->get_buffer(suggested);
      if (buf.empty()) throw RuntimeError("get_buffer() returned an empty buffer");
      return buf;
    } catch (...) {
      get_buffer_failure_ = std::current_exception();  // reported by read_failed, next
      return {};
    }
  }
  if (!shared_read_buffer) shared_read_buffer = make_io_buffer(kReadBufferBytes);
  return {shared_read_buffer.get(), kReadBufferBytes};
}

void StreamTransport::read_done(std::size_t nbytes) {
  if (conn_lost_) return;
  bytes_in += nbytes;
  Ref<StreamTransport> keep(this);
  auto deliver = [&] {
    if (buffered_protocol_)
      buffered_protocol_->buffer_updated(nbytes);
    else
      stream_protocol_->data_received(std::string_view(shared_read_buffer.get(), nbytes));
  };
  if (mode_ == Mode::read_pipe) {
    // asyncio's _UnixReadPipeTransport calls data_received from its reader callback unguarded:
    // what it raises is reported as that callback's exception, and reading goes on.
    call_protocol(*loop_, buffered_protocol_ ? "buffer_updated()" : "data_received()", deliver);
    return;
  }
  try {
    deliver();
  } catch (...) {
    fatal_error(std::current_exception(), buffered_protocol_
                                              ? "Fatal error: protocol.buffer_updated() call failed."
                                              : "Fatal error: protocol.data_received() call failed.");
  }
}

void StreamTransport::peer_closed_write_pipe() {
  if (writes_in_flight_)
    fatal_error(std::make_exception_ptr(std::system_error(std::make_error_code(std::errc::broken_pipe), "write pipe")),
                "Fatal write error on pipe transport");
  else
    close();
}

void StreamTransport::read_eof() {
  if (conn_lost_) return;
  Ref<StreamTransport> keep(this);
  if (mode_ == Mode::write_pipe) return peer_closed_write_pipe();
  eof_received_ = true;
  if (mode_ == Mode::read_pipe) {
    // asyncio's read pipe schedules eof_received and connection_lost(None) as two callbacks:
    // eof_received raising is reported, and the pipe closes all the same.
    call_protocol(*loop_, "eof_received()", [this] {
      if (buffered_protocol_)
        buffered_protocol_->eof_received();
      else
        stream_protocol_->eof_received();
    });
    close();
    return;
  }
  bool keep_open = false;
  if (!call_eof_received(keep_open)) return;
  if (keep_open) {
    if (endpoint_) endpoint_->read_stop();
  } else {
    close();
  }
}

bool StreamTransport::call_eof_received(bool& keep_open) {
  eof_received_ = true;
  try {
    keep_open = buffered_protocol_ ? buffered_protocol_->eof_received() : stream_protocol_->eof_received();
  } catch (...) {
    fatal_error(std::current_exception(), "Fatal error: protocol.eof_received() call failed.");
    return false;
  }
  if (keep_open && over_tls()) {
    log(LogLevel::warning, "returning true from eof_received() has no effect when using ssl");
    keep_open = false;
  }
  return true;
}

void StreamTransport::read_failed(std::error_code error) {
  if (conn_lost_) return;
  Ref<StreamTransport> keep(this);
  if (mode_ == Mode::write_pipe) return peer_closed_write_pipe();
  if (get_buffer_failure_)
    return fatal_error(std::exchange(get_buffer_failure_, nullptr),
                       "Fatal error: protocol.get_buffer() call failed.");
  fatal_error(std::make_exception_ptr(std::system_error(error, "read")), "Fatal read error on socket transport");
}

// A write that will pause the protocol goes to the endpoint as two, its last `low` bytes apart:
// the endpoint reports when only those are left, so resume_writing comes as the buffer reaches the
// low mark, as asyncio's, instead of once all of it is out.
void StreamTransport::hand_over(WriteBuffers data, std::size_t bytes) {
  const std::size_t low = flow_.low();
  if (low > 0 && bytes > flow_.high() && bytes > low) {
    WriteBuffers tail;
    for (std::size_t need = low; need > 0;) {
      std::string& last = data.back();
      if (last.size() <= need) {
        need -= last.size();
        tail.push_back(std::move(last));
        data.pop_back();
      } else {
        tail.emplace_back(last, last.size() - need);
        last.resize(last.size() - need);
        need = 0;
      }
    }
    std::reverse(tail.begin(), tail.end());
    endpoint_->write(std::move(data));
    ++writes_in_flight_;
    data = std::move(tail);
  }
  endpoint_->write(std::move(data));
  ++writes_in_flight_;
}

// Appends to pending_: into the last block while it has room, else a new block sized to what is
// gathered so far (up to kGatherBlock), so a connection with a little pending holds a little.
void StreamTransport::gather(std::string_view data) {
  pending_bytes_ += data.size();
  if (!pending_.empty()) {
    std::string& last = pending_.back();
    if (last.capacity() - last.size() >= data.size()) {
      last.append(data);
      return;
    }
  }
  std::string& block = pending_.emplace_back();
  block.reserve(
      std::max(data.size(), std::min(kGatherBlock, std::max<std::size_t>(pending_bytes_, 1024))));
  block.append(data);
}

void StreamTransport::submit_pending() {
  try {
    hand_over(std::exchange(pending_, {}), std::exchange(pending_bytes_, 0));
  } catch (...) {
    fatal_error(std::current_exception(), "Fatal write error on socket transport");
    return;
  }
  if (eof_written_) endpoint_->shutdown();
}

void StreamTransport::write_done(std::error_code error) {
  Ref<StreamTransport> keep(this);
  if (writes_in_flight_) --writes_in_flight_;
  if (writes_in_flight_ == 0 && !pending_.empty() && !error && !conn_lost_ && endpoint_)
    submit_pending();
  if (writes_in_flight_ == 0 || conn_lost_) wake_flush_waiters();
  if (conn_lost_) return;
  if (error) {
    fatal_error(std::make_exception_ptr(std::system_error(error, "write")), "Fatal write error on socket transport");
    return;
  }
  const std::size_t buffered = get_write_buffer_size();
  EDDY_INSPECT_HOOK(
      *loop_, transport_event(inspect::EventKind::write_buffer, inspect_id, double(buffered)));
  flow_.maybe_resume(buffered, protocol_.get(), *loop_, this);
  if (writes_in_flight_ == 0 && closing_ && !conn_lost_ && !sendfile_active_) finish_closing();
}

void StreamTransport::shutdown_done(std::error_code) {}

}  // namespace eddy
