// Server (create_server's result) and the loop's stream methods: name resolution, connecting
// with happy eyeballs, binding listeners, wrapping accepted sockets. All platform work goes
// through the backend's endpoints; the semantics (error messages, ordering, waiting) are
// asyncio's base_events.
#include "eddy/server.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "eddy/combinators.hpp"
#include "eddy/detail/tls.hpp"
#include "eddy/errors.hpp"
#include "eddy/log.hpp"
#include "eddy/loop.hpp"
#include "stream_transport.hpp"

namespace eddy {

// gcc 12 may destroy the temporary of `co_return co_await f();` twice: results are named first.

// ---- Server -------------------------------------------------------------------------------------

Server::Server(EventLoop& loop, std::vector<StreamListenerPtr> listeners, ProtocolFactory factory)
    : loop_(&loop), listeners_(std::move(listeners)), factory_(std::move(factory)) {
  for (auto& l : listeners_) sockets_.push_back({l->fileno(), l->address()});
  loop.server_created(this);
}

Server::~Server() {
  loop_->server_destroyed(this);
}

void Server::attach(StreamTransport* t) {
  t->server_slot_ = transports_.size();
  transports_.push_back(t);
}

void Server::detach(StreamTransport* t) {
  // The last connection takes the leaving one's place (asyncio keeps its clients in a set: their
  // order means nothing).
  const std::size_t slot = t->server_slot_;
  if (slot < transports_.size() && transports_[slot] == t) {
    StreamTransport* last = transports_.back();
    transports_[slot] = last;
    last->server_slot_ = slot;
    transports_.pop_back();
  }
  if (closed_ && active_connections() == 0) wakeup();
}

void Server::wakeup() {
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters)
    if (!w.done()) w.set_result();
}

void Server::start_listening() {
  if (serving_ || closed_) return;
  serving_ = true;
  for (auto& l : listeners_) {
    l->listen({[this](StreamEndpointPtr ep) { accepted(std::move(ep)); },
               [this](std::error_code ec) {
                 // EMFILE/ENFILE/ENOBUFS/ENOMEM: asyncio logs and keeps serving (libuv itself
                 // backs off by accepting and dropping with its reserved descriptor).
                 ExceptionContext ctx("socket.accept() out of system resource",
                                      std::make_exception_ptr(std::system_error(ec, "accept")));
                 loop_->call_exception_handler(ctx);
               }});
  }
}

void Server::accepted(StreamEndpointPtr endpoint) {
  if (closed_) return;  // endpoint closes on scope exit
  std::shared_ptr<BaseProtocol> protocol;
  try {
    protocol = factory_();
  } catch (...) {
    ExceptionContext ctx("Error on transport creation for incoming connection", std::current_exception());
    loop_->call_exception_handler(ctx);
    return;
  }
  if (!tls_) {
    StreamTransport::create(*loop_, std::move(endpoint), std::move(protocol), this, {});
    return;
  }
  // TLS: the transport (and connection_made) come once the handshake is done; a failed or slow
  // handshake is reported and the connection dropped, as asyncio does.
  const std::uint64_t id = ++next_handshake_id_;
  Ref<Server> self(this);
  StreamEndpointPtr wrapped;
  try {
    wrapped = loop_->backend().wrap_tls(
        std::move(endpoint), *tls_, {},
        [self, id, protocol](std::error_code ec, std::string why) mutable {
          self->handshake_done(id, ec, why, std::move(protocol));
        });
  } catch (const std::exception&) {
    // The certificate files are read again when they change on disk: one that became unreadable
    // (or a key that no longer matches) fails this connection, reported, and the server keeps
    // serving, as asyncio reports a failure to set up an incoming connection's transport.
    ExceptionContext ctx("Error on transport creation for incoming connection",
                         std::current_exception());
    loop_->call_exception_handler(ctx);
    return;
  }
  TimerHandle timer = loop_->call_later(tls_timeout_, [self, id] {
    self->handshake_done(id, std::make_error_code(std::errc::timed_out), "handshake timeout", nullptr);
  });
  handshakes_.emplace(id, PendingHandshake{std::move(wrapped), timer});
}

void Server::handshake_done(std::uint64_t id, std::error_code ec, const std::string& why,
                            std::shared_ptr<BaseProtocol> protocol) {
  auto it = handshakes_.find(id);
  if (it == handshakes_.end()) return;
  PendingHandshake pending = std::move(it->second);
  handshakes_.erase(it);
  pending.timer.cancel();
  if (ec) {
    // A failed handshake is an OSError, which asyncio's transport only logs, in debug mode: a
    // port scan or a plain-HTTP request is not an error of the program.
    if (loop_->get_debug())
      log(LogLevel::debug,
          std::string("SSL handshake failed: ") + std::system_error(ec, why).what());
    pending.endpoint.reset();
    if (closed_ && active_connections() == 0) wakeup();
    return;
  }
  // Also after close(): as in asyncio, closing a server stops it accepting, and the connections
  // it has, handshaking or not, carry on.
  Ref<StreamTransport> t =
      StreamTransport::create(*loop_, std::move(pending.endpoint), std::move(protocol), this, {});
  t->set_tls_shutdown_timeout(tls_shutdown_timeout_);
}

void Server::close() {
  if (closed_) return;
  closed_ = true;
  serving_ = false;
  listeners_.clear();  // closes the listening sockets; handshakes in progress carry on
  if (serving_forever_ && !serving_forever_.done()) serving_forever_.cancel();
  serving_forever_ = {};
  if (active_connections() == 0) wakeup();
}

void Server::drop_handshakes() {
  if (handshakes_.empty()) return;
  for (auto& [id, pending] : handshakes_) pending.timer.cancel();
  handshakes_.clear();  // their endpoints close: the clients see the connection reset
  if (closed_ && active_connections() == 0) wakeup();
}

void Server::loop_closed() noexcept {
  Ref<Server> keep(this);  // a dropped handshake may hold the last reference
  closed_ = true;
  serving_ = false;
  listeners_.clear();
  handshakes_.clear();
  waiters_.clear();
  serving_forever_ = {};
}

void Server::close_clients() {
  Ref<Server> keep(this);
  drop_handshakes();
  auto copy = transports_;
  for (StreamTransport* t : copy) t->close();
}

void Server::abort_clients() {
  Ref<Server> keep(this);
  drop_handshakes();
  auto copy = transports_;
  for (StreamTransport* t : copy) t->abort();
}

std::vector<ServerSocket> Server::sockets() const {
  return closed_ ? std::vector<ServerSocket>{} : sockets_;
}

Coro<void> Server::start_serving() {
  start_listening();
  // asyncio yields once (sleep(0)) so that the listening sockets are set up.
  co_await detail::awaiting_as("eddy::Server::start_serving", sleep(0));
}

Coro<void> Server::serve_forever() {
  if (serving_forever_) throw RuntimeError("server is already being awaited on serve_forever()");
  if (closed_) throw RuntimeError("server is closed");
  Ref<Server> keep(this);
  start_listening();
  serving_forever_ = loop_->create_future<void>();
  Future<void> f = serving_forever_;
  std::string message;
  try {
    co_await detail::awaiting_as("eddy::Server::serve_forever", f);
  } catch (const CancelledError& e) {
    message = e.message();
    close();
    // asyncio closes and then waits for the connections before re-raising.
  }
  co_await detail::awaiting_as("eddy::Server::serve_forever", wait_closed());
  throw CancelledError(std::move(message));  // the same cancellation, its message kept
}

Coro<void> Server::wait_closed() {
  Ref<Server> keep(this);
  if (closed_ && active_connections() == 0) co_return;
  Future<void> w = loop_->create_future<void>();
  waiters_.push_back(w);
  co_await detail::awaiting_as("eddy::Server::wait_closed", w);
}

// ---- Name resolution ----------------------------------------------------------------------------

Coro<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port,
                                                   AddrInfoOptions options) {
  capabilities().require("getaddrinfo");
  Future<std::vector<AddrInfo>> f = create_future<std::vector<AddrInfo>>();
  backend().getaddrinfo(host, port, options, [f](std::vector<AddrInfo> r, std::error_code ec) mutable {
    if (f.done()) return;
    if (ec)
      f.set_exception(std::system_error(ec, "getaddrinfo"));
    else
      f.set_result(std::move(r));
  });
  std::vector<AddrInfo> result = std::move(co_await f);
  co_return result;
}

Coro<NameInfo> EventLoop::getnameinfo(SocketAddress address, int flags) {
  capabilities().require("getnameinfo");
  Future<NameInfo> f = create_future<NameInfo>();
  backend().getnameinfo(address, flags, [f](NameInfo r, std::error_code ec) mutable {
    if (f.done()) return;
    if (ec)
      f.set_exception(std::system_error(ec, "getnameinfo"));
    else
      f.set_result(std::move(r));
  });
  NameInfo result = std::move(co_await f);
  co_return result;
}

namespace {

// asyncio's _interleave_addrinfos: the addresses grouped by family, in the order the families
// first appear; `first_family_count - 1` of the first family lead, then one of each family in
// turn (RFC 8305 section 4).
std::vector<AddrInfo> interleave_by_family(std::vector<AddrInfo> infos, int first_family_count) {
  std::vector<std::vector<AddrInfo>> groups;
  for (auto& a : infos) {
    auto g = std::find_if(groups.begin(), groups.end(), [&](const std::vector<AddrInfo>& group) {
      return group.front().family == a.family;
    });
    if (g == groups.end())
      groups.emplace_back(1, a);
    else
      g->push_back(a);
  }
  std::vector<AddrInfo> out;
  std::vector<std::size_t> next(groups.size(), 0);
  if (!groups.empty() && first_family_count > 1) {
    next[0] = std::min(static_cast<std::size_t>(first_family_count - 1), groups[0].size());
    out.insert(out.end(), groups[0].begin(),
               groups[0].begin() + static_cast<std::ptrdiff_t>(next[0]));
  }
  for (bool more = true; more;) {
    more = false;
    for (std::size_t g = 0; g < groups.size(); ++g)
      if (next[g] < groups[g].size()) {
        out.push_back(groups[g][next[g]++]);
        more = true;
      }
  }
  return out;
}

std::string port_text(std::uint16_t port) { return std::to_string(port); }

constexpr double kSslHandshakeTimeout = 60.0;  // asyncio's constants.SSL_HANDSHAKE_TIMEOUT

// Connection attempts, one after another or staggered (happy eyeballs): the first to connect
// wins, the others are closed. Each attempt binds to the first local address of its family that
// binds, as asyncio's _connect_sock. Errors are kept per attempt, in the order attempts started,
// for asyncio's combined error.
struct ConnectRace : RefCounted {
  EventLoop* loop;
  std::vector<AddrInfo> targets;
  std::vector<SocketAddress> locals;  // create_connection's local_addr, resolved; empty: none
  ConnectOptions options;
  std::optional<double> delay;
  bool all_errors = false;
  std::vector<StreamEndpointPtr> attempts;
  std::vector<std::vector<std::exception_ptr>> errors;
  std::size_t started = 0, failed = 0;
  Future<StreamEndpointPtr> result;
  TimerHandle stagger;

  void start_next() {
    if (result.done() || started >= targets.size()) return;
    const std::size_t index = started++;
    attempts.emplace_back();
    errors.emplace_back();
    try {
      attempts[index] = open_attempt(index);
    } catch (const NotSupportedError&) {
      // The target cannot reach this address at all: that is the answer, whichever attempt it is.
      stagger.cancel();
      if (!result.done()) result.set_exception(std::current_exception());
      return;
    } catch (const std::system_error&) {
      errors[index].push_back(std::current_exception());
      ++failed;
      start_next();
      check_all_failed();
      return;
    }
    if (delay && started < targets.size()) {
      Ref<ConnectRace> self(this);
      stagger = loop->call_later(*delay, [self] { self->start_next(); });
    }
  }
  StreamEndpointPtr open_attempt(std::size_t index) {
    Ref<ConnectRace> self(this);
    auto done = [self, index](std::error_code ec) { self->finished(index, ec); };
    const SocketAddress& target = targets[index].address;
    if (locals.empty()) return loop->backend().connect_stream(target, options, done);
    bool family_matched = false;
    for (const SocketAddress& local : locals) {
      if (local.family != target.family) continue;
      family_matched = true;
      ConnectOptions bound = options;
      bound.local_addr = local;
      try {
        return loop->backend().connect_stream(target, bound, done);
      } catch (const BindError& e) {
        errors[index].push_back(std::make_exception_ptr(std::system_error(
            e.code(), "error while attempting to bind on address " + local.to_string())));
      }
    }
    if (!family_matched)
      throw OSError(std::string("no matching local address with family=") +
                    family_name(target.family) + " found");
    std::exception_ptr last = errors[index].back();  // the caller records it again
    errors[index].pop_back();
    std::rethrow_exception(last);
  }
  void finished(std::size_t index, std::error_code ec) {
    if (result.done()) return;
    if (!ec) {
      stagger.cancel();
      StreamEndpointPtr winner = std::move(attempts[index]);
      attempts.clear();  // closes the others
      result.set_result(std::move(winner));
      return;
    }
    attempts[index].reset();
    errors[index].push_back(std::make_exception_ptr(
        std::system_error(ec, "Connect call failed " + targets[index].address.to_string())));
    ++failed;
    // The next attempt starts now rather than at the stagger timer (RFC 8305).
    stagger.cancel();
    start_next();
    check_all_failed();
  }
  // asyncio's choice: every error in an ExceptionGroup (all_errors), the only one, the first of
  // identical ones, or one OSError (errno None) naming them all.
  void check_all_failed() {
    if (result.done() || failed < targets.size()) return;
    std::vector<std::exception_ptr> all;
    for (auto& list : errors) all.insert(all.end(), list.begin(), list.end());
    if (all_errors) {
      result.set_exception(
          std::make_exception_ptr(ExceptionGroup("create_connection failed", all)));
      return;
    }
    const std::string model = exception_text(all.front());
    std::string combined = "Multiple exceptions: ";
    bool same = true;
    for (std::size_t i = 0; i < all.size(); ++i) {
      const std::string text = exception_text(all[i]);
      same = same && text == model;
      combined += (i ? ", " : "") + text;
    }
    if (same)
      result.set_exception(all.front());
    else
      result.set_exception(std::make_exception_ptr(OSError(combined)));
  }
  void cancel() {
    stagger.cancel();
    attempts.clear();
  }
};

// asyncio's SSL_SHUTDOWN_TIMEOUT.
constexpr double kSslShutdownTimeout = 30.0;

// A number as Python's repr prints a float (0.0, 2.5, -1.0).
// A float as Python's repr() writes it in asyncio's messages: the shortest digits that read back
// as `v`, in positional notation ("60.0", "0.3", "100000.0") unless the exponent is below -4 or
// 16 and up ("1e-05", "1e+16").
std::string format_seconds(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[40];
  for (int precision = 0; precision <= 16; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*e", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  const std::string text(buf);  // [-]d[.ddd]e±XX
  const bool negative = text[0] == '-';
  const std::size_t first = negative ? 1 : 0, e = text.find('e');
  std::string digits = text.substr(first, 1);
  if (e > first + 1) digits += text.substr(first + 2, e - first - 2);
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char tail[16];
    std::snprintf(tail, sizeof tail, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + tail;
  }
  const int before_point = exponent + 1;  // digits left of the point (<= 0: "0.00ddd")
  if (before_point <= 0) return out + "0." + std::string(-before_point, '0') + digits;
  if (digits.size() <= static_cast<std::size_t>(before_point))
    return out + digits + std::string(before_point - digits.size(), '0') + ".0";
  return out + digits.substr(0, before_point) + "." + digits.substr(before_point);
}

std::system_error handshake_timeout(double timeout) {
  return std::system_error(std::make_error_code(std::errc::connection_aborted),
                           "SSL handshake is taking longer than " + format_seconds(timeout) +
                               " seconds: aborting the connection");
}

// Wraps `endpoint` in TLS and waits for the handshake (asyncio's ssl_handshake_timeout).
// The helpers below are not inlined into create_connection and friends in WebAssembly: inlined,
// their frame set-up made create_connection's resume function large enough for V8's lazy
// compilation of it to block the page for 30-90 ms at a page's first connection.
// `done` is the caller's: failing it early (with the error to raise) abandons the handshake.
EDDY_WASM_NOINLINE Coro<StreamEndpointPtr> tls_handshake(EventLoop& loop,
                                                         StreamEndpointPtr endpoint,
                                                         const TlsContext* context,
                                                         std::string hostname, double timeout,
                                                         Future<void> done) {
  StreamEndpointPtr wrapped =
      loop.backend().wrap_tls(std::move(endpoint), *context, hostname, [done](std::error_code ec, std::string why) mutable {
        if (done.done()) return;
        if (ec)
          done.set_exception(std::system_error(ec, "SSL handshake failed: " + why));
        else
          done.set_result();
      });
  TimerHandle timer = loop.call_later(timeout, [done, timeout]() mutable {
    if (!done.done()) done.set_exception(handshake_timeout(timeout));
  });
  try {
    co_await done;
  } catch (...) {
    timer.cancel();
    throw;  // `wrapped` closes as the frame goes
  }
  timer.cancel();
  co_return std::move(wrapped);
}

// Connects to the first of `targets` that answers (one after another, or staggered by `delay`).
EDDY_WASM_NOINLINE Coro<StreamEndpointPtr> connect_first(
    EventLoop& loop, std::vector<AddrInfo> targets, std::vector<SocketAddress> locals,
    ConnectOptions options, std::optional<double> delay, bool all_errors) {
  Ref<ConnectRace> race(new ConnectRace);
  race->loop = &loop;
  race->targets = std::move(targets);
  race->locals = std::move(locals);
  race->options = options;
  race->delay = delay;
  race->all_errors = all_errors;
  race->result = loop.create_future<StreamEndpointPtr>();
  race->start_next();
  StreamEndpointPtr endpoint;
  try {
    endpoint = std::move(co_await race->result);
  } catch (...) {
    race->cancel();
    throw;
  }
  race->cancel();
  co_return std::move(endpoint);
}

// `tls_shutdown_timeout`: for a TLS endpoint, how long close() waits for the peer's close_notify.
EDDY_WASM_NOINLINE Coro<Connection> make_transport(
    EventLoop& loop, StreamEndpointPtr endpoint, ProtocolFactory factory,
    double tls_shutdown_timeout = kSslShutdownTimeout) {
  std::shared_ptr<BaseProtocol> protocol = factory();
  Future<void> waiter = loop.create_future<void>();
  Ref<StreamTransport> transport = StreamTransport::create(loop, std::move(endpoint), protocol, nullptr, waiter);
  transport->set_tls_shutdown_timeout(tls_shutdown_timeout);
  try {
    co_await waiter;
  } catch (...) {
    transport->close();
    throw;
  }
  co_return Connection{Ref<Transport>(transport.get()), std::move(protocol)};
}

// asyncio's checks of ssl_shutdown_timeout. asyncio checks the value itself only as it sets up
// TLS (after connecting, or for each accepted connection); Eddy checks it before anything.
void check_shutdown_timeout(const TlsContext* ssl, std::optional<double> timeout) {
  if (!timeout) return;
  if (!ssl) throw ValueError("ssl_shutdown_timeout is only meaningful with ssl");
  if (!(*timeout > 0))
    throw ValueError("ssl_shutdown_timeout should be a positive number, got " +
                     format_seconds(*timeout));
}

// `method` with ssl= on a loop without TLS (WebAssembly): NotSupportedError before anything
// is connected or bound, with the reason the capability table gives for start_tls.
void require_tls(const Capabilities& caps, const char* method) {
  if (caps.supports("start_tls")) return;
  const Capability* c = caps.find("start_tls");
  throw NotSupportedError(std::string(method) + "(ssl=...)", caps.target, c ? c->note : "");
}

// asyncio's checks of the TLS options of create_connection / create_unix_connection, made
// before connecting. `name` is the default server_hostname: the host ("" with a sock or a path).
void check_tls_options(const Capabilities& caps, const char* method,
                       const ConnectionOptions& options, std::string_view name,
                       const char* missing_name) {
  if (!options.ssl) {
    if (options.server_hostname) throw ValueError("server_hostname is only meaningful with ssl");
    if (options.ssl_handshake_timeout)
      throw ValueError("ssl_handshake_timeout is only meaningful with ssl");
    check_shutdown_timeout(options.ssl, options.ssl_shutdown_timeout);
    return;
  }
  if (!options.server_hostname && name.empty()) throw ValueError(missing_name);
  if (options.ssl_handshake_timeout && !(*options.ssl_handshake_timeout > 0))
    throw ValueError("ssl_handshake_timeout should be a positive number, got " +
                     format_seconds(*options.ssl_handshake_timeout));
  check_shutdown_timeout(options.ssl, options.ssl_shutdown_timeout);
  require_tls(caps, method);
}

// create_server / create_unix_server: asyncio's checks, made before binding.
void check_server_tls_options(const Capabilities& caps, const char* method,
                              const ServerOptions& options) {
  if (!options.ssl && options.ssl_handshake_timeout)
    throw ValueError("ssl_handshake_timeout is only meaningful with ssl");
  check_shutdown_timeout(options.ssl, options.ssl_shutdown_timeout);
  if (options.ssl) {
    require_tls(caps, method);
    platform::check_tls_context(*options.ssl);  // before listening: a bad certificate fails here
  }
}

// The handshake over a new connection when its options ask for TLS; else the connection as is.
Coro<StreamEndpointPtr> secure_if_asked(EventLoop& loop, StreamEndpointPtr endpoint,
                                        const ConnectionOptions& options, std::string_view name) {
  if (!options.ssl) co_return std::move(endpoint);
  const std::string server_name(options.server_hostname.value_or(name));
  StreamEndpointPtr secured = co_await tls_handshake(
      loop, std::move(endpoint), options.ssl, server_name,
      options.ssl_handshake_timeout.value_or(kSslHandshakeTimeout), loop.create_future<void>());
  co_return std::move(secured);
}

}  // namespace

Coro<Connection> EventLoop::create_connection(ProtocolFactory factory, std::string host, std::uint16_t port,
                                              ConnectionOptions options) {
  capabilities().require("create_connection");
  ConnectOptions copts;
  copts.keep_alive = options.keep_alive;
  check_tls_options(capabilities(), "create_connection", options, host,
                    "You must set server_hostname when using ssl without a host");
  if (options.sock) {
    if (!host.empty() || port) throw ValueError("host/port and sock can not be specified at the same time");
    StreamEndpointPtr adopted = backend().adopt_stream(*options.sock, copts);
    StreamEndpointPtr secured = co_await secure_if_asked(*this, std::move(adopted), options, host);
    Connection c =
        co_await make_transport(*this, std::move(secured), std::move(factory),
                                options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
    co_return c;
  }
  if (host.empty()) throw ValueError("host and port was not specified and no sock specified");
  AddrInfoOptions ai{.family = options.family, .kind = SocketKind::stream};
  std::vector<AddrInfo> infos = co_await getaddrinfo(host, port_text(port), ai);
  if (infos.empty()) throw OSError("getaddrinfo() returned empty list");
  std::vector<SocketAddress> locals;  // each attempt binds to the first of its family that binds
  if (options.local_addr) {
    std::vector<AddrInfo> local =
        co_await getaddrinfo(std::string(options.local_addr->host()), port_text(options.local_addr->port), ai);
    if (local.empty()) throw OSError("getaddrinfo() returned empty list");
    for (const AddrInfo& a : local) locals.push_back(a.address);
  }
  int interleave = options.interleave.value_or(options.happy_eyeballs_delay ? 1 : 0);
  if (interleave > 0) infos = interleave_by_family(std::move(infos), interleave);

  StreamEndpointPtr endpoint =
      co_await connect_first(*this, std::move(infos), std::move(locals), copts,
                             options.happy_eyeballs_delay, options.all_errors);
  StreamEndpointPtr secured = co_await secure_if_asked(*this, std::move(endpoint), options, host);
  Connection c =
      co_await make_transport(*this, std::move(secured), std::move(factory),
                              options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
  co_return c;
}

Coro<Ref<Transport>> EventLoop::start_tls(Ref<Transport> transport, std::shared_ptr<BaseProtocol> protocol,
                                          const TlsContext* context, StartTlsOptions options) {
  capabilities().require("start_tls");
  if (!context) throw TypeError("start_tls needs a TlsContext");
  // As asyncio's SSLProtocol, before the connection is touched: it stays usable in plain text.
  if (!(options.ssl_handshake_timeout > 0))
    throw ValueError("ssl_handshake_timeout should be a positive number, got " +
                     format_seconds(options.ssl_handshake_timeout));
  check_shutdown_timeout(context, options.ssl_shutdown_timeout);
  auto* stream = dynamic_cast<StreamTransport*>(transport.get());
  if (!stream) throw TypeError("start_tls needs a stream transport made by this loop");
  const std::string name(options.server_hostname.value_or(""));
  if (!context->server && context->verify_peer && name.empty())
    throw ValueError("start_tls: server_hostname is required to verify the server");
  // Plain data already written goes out first, in order, as asyncio's transport sends it ahead
  // of the handshake; meanwhile nothing more is read for the old protocol.
  if (stream->is_closing()) throw RuntimeError("start_tls: the transport is closing");
  stream->pause_reading();
  co_await stream->flushed();
  StreamEndpointPtr endpoint = stream->take_endpoint();
  // The old transport stands for the connection meanwhile: its server still counts it, and
  // close_clients() / abort_clients() end the handshake.
  Future<void> handshake = create_future<void>();
  stream->watch_handover(handshake);
  StreamEndpointPtr secured;
  std::exception_ptr failure;
  try {
    secured = co_await tls_handshake(*this, std::move(endpoint), context, name,
                                     options.ssl_handshake_timeout, handshake);
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    stream->end_handover();
    std::rethrow_exception(failure);
  }
  // As asyncio's start_tls (call_connection_made=False): the protocol is not told again; it gets
  // the new transport from our result (StreamWriter.start_tls hands it to its protocol).
  Future<void> waiter = create_future<void>();
  Ref<StreamTransport> t =
      StreamTransport::create(*this, std::move(secured), std::move(protocol), stream->server(),
                              waiter, StreamTransport::Mode::socket, false);
  stream->end_handover();  // the TLS transport holds the server's count now
  t->set_tls_shutdown_timeout(options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
  co_await waiter;
  Ref<Transport> result(t.get());
  co_return result;
}

Coro<Connection> EventLoop::create_unix_connection(ProtocolFactory factory, std::string path,
                                                   ConnectionOptions options) {
  capabilities().require("create_unix_connection");
  check_tls_options(capabilities(), "create_unix_connection", options, "",
                    "you have to pass server_hostname when using ssl");
  if (options.sock) {
    if (!path.empty()) throw ValueError("path and sock can not be specified at the same time");
    StreamEndpointPtr adopted = backend().adopt_stream(*options.sock, {});
    StreamEndpointPtr secured = co_await secure_if_asked(*this, std::move(adopted), options, "");
    Connection c =
        co_await make_transport(*this, std::move(secured), std::move(factory),
                                options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
    co_return c;
  }
  if (path.empty()) throw ValueError("no path and sock were specified");
  AddrInfo target;
  target.family = AddressFamily::unix_socket;
  target.kind = SocketKind::stream;
  target.address = SocketAddress::unix_path(path);
  std::vector<AddrInfo> targets(1, target);
  std::vector<SocketAddress> no_locals;
  StreamEndpointPtr endpoint = co_await connect_first(
      *this, std::move(targets), std::move(no_locals), {}, std::nullopt, options.all_errors);
  StreamEndpointPtr secured = co_await secure_if_asked(*this, std::move(endpoint), options, "");
  Connection c =
      co_await make_transport(*this, std::move(secured), std::move(factory),
                              options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
  co_return c;
}

Coro<Connection> EventLoop::connect_accepted_socket(ProtocolFactory factory, int sock) {
  capabilities().require("connect_accepted_socket");
  StreamEndpointPtr adopted = backend().adopt_stream(sock, {});
  Connection c = co_await make_transport(*this, std::move(adopted), std::move(factory));
  co_return c;
}

Coro<Ref<Server>> EventLoop::create_server(ProtocolFactory factory, std::string host, std::uint16_t port,
                                           ServerOptions options) {
  std::vector<std::string> hosts;
  if (!host.empty()) hosts.push_back(std::move(host));
  Ref<Server> server = co_await create_server(std::move(factory), std::move(hosts), port, std::move(options));
  co_return server;
}

Coro<Ref<Server>> EventLoop::create_server(ProtocolFactory factory, std::vector<std::string> hosts,
                                           std::uint16_t port, ServerOptions options) {
  capabilities().require("create_server");
  check_server_tls_options(capabilities(), "create_server", options);
  AddrInfoOptions ai{.family = options.family, .kind = SocketKind::stream, .flags = kPassiveFlag};
  if (hosts.empty()) hosts.push_back("");  // all interfaces
  std::vector<AddrInfo> infos;
  for (const std::string& h : hosts) {
    std::vector<AddrInfo> r = co_await getaddrinfo(h, port_text(port), ai);
    for (auto& a : r)
      if (std::none_of(infos.begin(), infos.end(), [&](const AddrInfo& b) { return b.address == a.address; }))
        infos.push_back(a);
  }
  ListenOptions lo;
  lo.backlog = options.backlog;
  lo.reuse_address = options.reuse_address.value_or(true);
  lo.reuse_port = options.reuse_port;
  lo.keep_alive = options.keep_alive;
  std::vector<StreamListenerPtr> listeners;
  for (const AddrInfo& a : infos) {
    try {
      listeners.push_back(backend().bind_stream(a.address, lo));
    } catch (const std::system_error& e) {
      const std::string what = "error while attempting to bind on address " + a.address.to_string();
      // EADDRNOTAVAIL: that family is not enabled here (an IPv6 address without IPv6): asyncio
      // skips the address, and logs it in debug mode.
      if (e.code() != std::errc::address_not_available) throw std::system_error(e.code(), what);
      if (debug_) log(LogLevel::warning, what + ": " + e.code().message());
    }
  }
  if (listeners.empty()) {
    std::string addresses;
    for (const AddrInfo& a : infos)
      addresses += (addresses.empty() ? "" : ", ") + a.address.to_string();
    throw OSError("could not bind on any address out of [" + addresses + "]");
  }
  Ref<Server> server(new Server(*this, std::move(listeners), std::move(factory)));
  if (options.ssl)
    server->set_tls(options.ssl, options.ssl_handshake_timeout.value_or(kSslHandshakeTimeout),
                    options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
  if (options.start_serving) co_await server->start_serving();
  co_return server;
}

Coro<Ref<Server>> EventLoop::create_unix_server(ProtocolFactory factory, std::string path, ServerOptions options) {
  capabilities().require("create_unix_server");
  if (path.empty()) throw ValueError("path was not specified, and no sock specified");
  check_server_tls_options(capabilities(), "create_unix_server", options);
  ListenOptions lo;
  lo.backlog = options.backlog;
  lo.unlink_on_close = options.cleanup_socket;
  std::vector<StreamListenerPtr> listeners;
  listeners.push_back(backend().bind_stream(SocketAddress::unix_path(path), lo));
  Ref<Server> server(new Server(*this, std::move(listeners), std::move(factory)));
  if (options.ssl)
    server->set_tls(options.ssl, options.ssl_handshake_timeout.value_or(kSslHandshakeTimeout),
                    options.ssl_shutdown_timeout.value_or(kSslShutdownTimeout));
  if (options.start_serving) co_await server->start_serving();
  co_return server;
}

}  // namespace eddy
