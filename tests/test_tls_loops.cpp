// TLS between two Eddy endpoints in one loop, on every loop kind: natively over TCP (libuv) and
// over the virtual-clock loop's virtual network, both with OpenSSL. Timeouts that take real
// seconds on libuv take virtual ones there, so asyncio's default-sized handshake and shutdown
// timeouts are tested as such. In WebAssembly, which has no TLS library, ssl= is refused before
// anything is connected or bound. (Real peers, openssl and Python's ssl, are in test_tls.cpp.)
#include "support.hpp"
#include "tls_certs.hpp"

using namespace eddy;

namespace {

// The loop has TLS (both kinds natively; neither in WebAssembly).
bool has_tls(EventLoop& loop) {
  return loop.capabilities().supports("start_tls");
}

// Seconds for a timeout: asyncio's real size on the virtual clock, short on a real one.
template <class Kind>
double timeout_of(double virtual_seconds, double real_seconds) {
  return Kind::virtual_time ? virtual_seconds : real_seconds;
}

}  // namespace

#ifndef __EMSCRIPTEN__
#include "peer.hpp"

namespace {

struct TlsContexts {
  TlsContext server{.server = true, .cert_file = test_cert().cert, .key_file = test_cert().key};
  TlsContext client{.ca_file = test_cert().cert};
};

struct RoundTrip {
  std::string echoed;
  TlsCipher cipher;
  std::optional<PeerCertificate> peercert;
  bool ssl_object = false;
  bool can_write_eof = true;
  // After wait_closed(), as asyncio: the cipher and certificate are still known, the TLS
  // library's object is gone.
  std::string cipher_after_close;
  bool peercert_after_close = false;
  bool ssl_object_after_close = true;
};

// A TLS stream server on 127.0.0.1 that echoes until EOF.
Coro<Ref<Server>> tls_echo_server(const TlsContexts& tls) {
  ClientConnectedCallback echo = echo_until_eof;
  StreamServerOptions so;
  so.server.ssl = &tls.server;
  Ref<Server> server = co_await start_server(echo, "127.0.0.1", 0, so);
  co_return server;
}

Coro<void> round_trip(EventLoop& loop, const std::string* payload, RoundTrip* out) {
  TlsContexts tls;
  Ref<Server> server = co_await tls_echo_server(tls);
  StreamConnectionOptions co;
  co.connection.ssl = &tls.client;
  co.connection.server_hostname = "localhost";
  StreamPair pair = co_await open_connection("127.0.0.1", server->sockets()[0].address.port, co);
  std::shared_ptr<StreamWriter> writer = pair.second;
  out->cipher = std::any_cast<TlsCipher>(writer->get_extra_info("cipher"));
  std::any cert = writer->get_extra_info("peercert");
  if (cert.has_value()) out->peercert = std::any_cast<PeerCertificate>(cert);
  out->ssl_object = writer->get_extra_info("ssl_object").has_value();
  out->can_write_eof = writer->can_write_eof();
  // In pieces, without waiting: the echo comes back while the rest is still being written.
  for (std::size_t at = 0; at < payload->size(); at += 100000)
    writer->write(payload->substr(at, 100000));
  out->echoed = co_await pair.first->readexactly(static_cast<long long>(payload->size()));
  writer->close();
  co_await writer->wait_closed();
  std::any cipher_after = writer->get_extra_info("cipher");
  if (const TlsCipher* c = std::any_cast<TlsCipher>(&cipher_after))
    out->cipher_after_close = c->name;
  out->peercert_after_close = writer->get_extra_info("peercert").has_value();
  out->ssl_object_after_close = writer->get_extra_info("ssl_object").has_value();
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("TLS between two Eddy endpoints: 3 MB echoed, the certificate verified, closed cleanly",
          "[tls][loops]") {
  const std::string payload = peer_pattern(0, 3'000'000);
  RoundTrip r;
  this->loop->run_until_complete(round_trip(*this->loop, &payload, &r));
  CHECK(r.echoed.size() == payload.size());
  CHECK(r.echoed == payload);
  CHECK(r.ssl_object);
  CHECK_FALSE(r.can_write_eof);
  CHECK(r.cipher.protocol == "TLSv1.3");
  CHECK_FALSE(r.cipher.name.empty());
  CHECK(r.cipher_after_close == r.cipher.name);
  CHECK(r.peercert_after_close);
  CHECK_FALSE(r.ssl_object_after_close);
  REQUIRE(r.peercert);
  using Attribute = PeerCertificate::Attribute;
  CHECK(r.peercert->subject == PeerCertificate::Name{{Attribute{"commonName", "localhost"}}});
}

namespace {

// Pauses its reading when connected, until told; counts what arrives.
struct SlowTlsReader : Protocol {
  Ref<Transport> transport;
  std::size_t received = 0;
  Future<void> lost;
  explicit SlowTlsReader(EventLoop& loop) : lost(loop.create_future<void>()) {}
  void connection_made(Ref<Transport> t) override {
    transport = t;
    t->pause_reading();
  }
  void data_received(std::string_view d) override { received += d.size(); }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};

// A TLS server on 127.0.0.1 whose connection (in `*accepted`) holds off reading.
Coro<Ref<Server>> holding_tls_server(EventLoop& loop, const TlsContexts& tls,
                                     std::shared_ptr<SlowTlsReader>* accepted) {
  ProtocolFactory factory = [&loop, accepted] {
    return *accepted = std::make_shared<SlowTlsReader>(loop);
  };
  ServerOptions so;
  so.ssl = &tls.server;
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0, so);
  co_return server;
}

struct FlowWriter : Protocol {
  Ref<Transport> transport;
  int paused = 0, resumed = 0;
  Future<void> lost;
  explicit FlowWriter(EventLoop& loop) : lost(loop.create_future<void>()) {}
  void connection_made(Ref<Transport> t) override { transport = t; }
  void pause_writing() override { ++paused; }
  void resume_writing() override { ++resumed; }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};

struct FlowFacts {
  std::size_t buffered_after_write = 0, high = 0, received = 0;
  int paused_while_blocked = 0, paused = 0, resumed = 0;
};

Coro<void> slow_tls_reader(EventLoop& loop, std::size_t size, double hold, FlowFacts* out) {
  TlsContexts tls;
  std::shared_ptr<SlowTlsReader> reader;
  Ref<Server> server = co_await holding_tls_server(loop, tls, &reader);
  auto writer = std::make_shared<FlowWriter>(loop);
  ProtocolFactory client_factory = [writer] { return writer; };
  ConnectionOptions co;
  co.ssl = &tls.client;
  co.server_hostname = "localhost";
  co_await loop.create_connection(client_factory, "127.0.0.1",
                                                 server->sockets()[0].address.port, co);
  writer->transport->write(peer_pattern(0, size));
  out->buffered_after_write = writer->transport->get_write_buffer_size();
  out->high = writer->transport->get_write_buffer_limits().second;
  co_await sleep(hold);  // the reader holds off: the writer stays over its high water mark
  out->paused_while_blocked = writer->paused;
  REQUIRE(reader);
  CHECK(writer->resumed == 0);
  reader->transport->resume_reading();
  while (reader->received < size) co_await sleep(0.001);
  out->received = reader->received;
  out->paused = writer->paused;
  out->resumed = writer->resumed;
  writer->transport->close();
  co_await writer->lost;
  co_await reader->lost;
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("TLS flow control: a reader that holds off pauses the writer, every byte arrives",
          "[tls][loops][flow]") {
  // More than the kernel's loopback buffers hold natively, so the transport keeps some.
  const std::size_t size = 16u << 20;
  FlowFacts f;
  this->loop->run_until_complete(
      slow_tls_reader(*this->loop, size, timeout_of<TestType>(5.0, 0.2), &f));
  CHECK(f.high == 65536);
  CHECK(f.buffered_after_write > f.high);
  CHECK(f.paused_while_blocked == 1);
  CHECK(f.received == size);
  CHECK(f.paused == 1);
  CHECK(f.resumed == 1);
}

namespace {

// A client whose handshake gets no answer: the server accepts, without TLS, and says nothing.
Coro<void> unanswered_handshake(EventLoop& loop, double timeout, std::string* what,
                                std::error_code* code, double* waited) {
  TlsContexts tls;
  std::vector<Ref<Transport>> accepted;
  struct Silent : Protocol {
    std::vector<Ref<Transport>>* keep;
    explicit Silent(std::vector<Ref<Transport>>* keep) : keep(keep) {}
    void connection_made(Ref<Transport> t) override { keep->push_back(t); }
  };
  ProtocolFactory silent = [&accepted] { return std::make_shared<Silent>(&accepted); };
  Ref<Server> server = co_await loop.create_server(silent, "127.0.0.1", 0);
  ProtocolFactory client = [] { return std::make_shared<Protocol>(); };
  ConnectionOptions co;
  co.ssl = &tls.client;
  co.server_hostname = "localhost";
  co.ssl_handshake_timeout = timeout;
  const double start = loop.time();
  try {
    co_await loop.create_connection(client, "127.0.0.1", server->sockets()[0].address.port, co);
  } catch (const std::system_error& e) {
    *what = e.what();
    *code = e.code();
  }
  *waited = loop.time() - start;
  for (auto& t : accepted) t->close();
  accepted.clear();
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("TLS handshake timeout: a server that never answers aborts the connection",
          "[tls][loops][faults]") {
  const double timeout = timeout_of<TestType>(60.0, 0.3);  // asyncio's default, virtually
  std::string what;
  std::error_code code;
  double waited = 0;
  this->loop->run_until_complete(unanswered_handshake(*this->loop, timeout, &what, &code, &waited));
  INFO(what);
  CHECK(code == std::errc::connection_aborted);
  const std::string expected = TestType::virtual_time ? "60.0" : "0.3";
  CHECK(what.find("SSL handshake is taking longer than " + expected +
                  " seconds: aborting the connection") != std::string::npos);
  CHECK(waited >= timeout);
  CHECK(waited < timeout + 1.0);
}

namespace {

// A TLS server that answers the handshake and then never reads again: the client's close_notify
// gets no answer, and its ssl_shutdown_timeout ends the connection.
Coro<void> unanswered_close(EventLoop& loop, double timeout, std::string* lost_with,
                            double* waited) {
  TlsContexts tls;
  std::shared_ptr<SlowTlsReader> deaf;
  Ref<Server> server = co_await holding_tls_server(loop, tls, &deaf);
  struct Client : Protocol {
    Ref<Transport> transport;
    Future<std::string> lost;
    explicit Client(EventLoop& loop) : lost(loop.create_future<std::string>()) {}
    void connection_made(Ref<Transport> t) override { transport = t; }
    void connection_lost(std::exception_ptr e) override {
      transport.reset();
      std::string what = "no exception";
      try {
        if (e) std::rethrow_exception(e);
      } catch (const TimeoutError& t) {
        what = std::string("TimeoutError: ") + t.what();
      } catch (const std::exception& x) {
        what = std::string("other: ") + x.what();
      }
      lost.set_result(what);
    }
  };
  auto client = std::make_shared<Client>(loop);
  ProtocolFactory client_factory = [client] { return client; };
  ConnectionOptions co;
  co.ssl = &tls.client;
  co.server_hostname = "localhost";
  co.ssl_shutdown_timeout = timeout;
  co_await loop.create_connection(client_factory, "127.0.0.1",
                                                 server->sockets()[0].address.port, co);
  const double start = loop.time();
  client->transport->close();
  *lost_with = co_await client->lost;
  *waited = loop.time() - start;
  REQUIRE(deaf);
  deaf->transport->abort();
  co_await deaf->lost;
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("TLS shutdown timeout: a peer that never answers close_notify", "[tls][loops][close]") {
  const double timeout = timeout_of<TestType>(30.0, 0.3);  // asyncio's default, virtually
  std::string lost_with;
  double waited = 0;
  this->loop->run_until_complete(unanswered_close(*this->loop, timeout, &lost_with, &waited));
  INFO(lost_with);
  CHECK(lost_with == "TimeoutError: SSL shutdown timed out");
  CHECK(waited >= timeout);
  CHECK(waited < timeout + 1.0);
}

namespace {

Coro<void> refused_certificate(EventLoop& loop, const TlsContext* client_tls,
                               std::string server_hostname, std::string* what) {
  TlsContexts tls;
  Ref<Server> server = co_await tls_echo_server(tls);
  StreamConnectionOptions co;
  co.connection.ssl = client_tls;
  co.connection.server_hostname = server_hostname;
  try {
    co_await open_connection("127.0.0.1", server->sockets()[0].address.port, co);
  } catch (const std::system_error& e) {
    *what = e.what();
  }
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("TLS: a certificate from another authority, or for another name, is refused",
          "[tls][loops][faults]") {
  static const TestCert other("tls-other-ca", "-subj /CN=other.example");
  const TlsContext other_anchor{.ca_file = other.cert};
  const TlsContext right_anchor{.ca_file = test_cert().cert};
  std::string untrusted, misnamed;
  this->loop->run_until_complete(
      refused_certificate(*this->loop, &other_anchor, "localhost", &untrusted));
  this->loop->run_until_complete(
      refused_certificate(*this->loop, &right_anchor, "wrong.example", &misnamed));
  INFO(untrusted);
  INFO(misnamed);
  CHECK(untrusted.find("SSL handshake failed") != std::string::npos);
  CHECK(untrusted.find("certificate verify failed") != std::string::npos);
  CHECK(misnamed.find("certificate verify failed") != std::string::npos);
}

namespace {

// STARTTLS with streams on both sides: a plain line, then both writers upgrade.
Coro<void> starttls_handler(std::shared_ptr<StreamReader> r, std::shared_ptr<StreamWriter> w) {
  static TlsContexts tls;
  std::string ask = co_await r->readline();
  if (ask != "STARTTLS\n") co_return;
  w->write("GO\n");
  co_await w->drain();
  co_await w->start_tls(&tls.server);
  std::string line = co_await r->readline();
  w->write("secure: " + line);
  co_await w->drain();
  w->close();
  co_await w->wait_closed();
}

// Over a plain connection, or over a TLS one (TLS in TLS, as through a proxy's tunnel).
Coro<void> starttls_both_sides(EventLoop& loop, bool outer_tls, std::string* answer,
                               bool* upgraded) {
  TlsContexts tls;
  ClientConnectedCallback handler = starttls_handler;
  StreamServerOptions server_options;
  if (outer_tls) server_options.server.ssl = &tls.server;
  Ref<Server> server = co_await start_server(handler, "127.0.0.1", 0, server_options);
  StreamConnectionOptions client_options;
  if (outer_tls) {
    client_options.connection.ssl = &tls.client;
    client_options.connection.server_hostname = "localhost";
  }
  StreamPair pair =
      co_await open_connection("127.0.0.1", server->sockets()[0].address.port, client_options);
  std::any outer = pair.second->get_extra_info("ssl_object");
  CHECK(outer.has_value() == outer_tls);
  pair.second->write("STARTTLS\n");
  std::string go = co_await pair.first->readline();
  CHECK(go == "GO\n");
  StartTlsOptions so;
  so.server_hostname = "localhost";
  co_await pair.second->start_tls(&tls.client, so);
  std::any inner = pair.second->get_extra_info("ssl_object");
  *upgraded = inner.has_value() &&
              (!outer_tls || std::any_cast<void*>(inner) != std::any_cast<void*>(outer));
  pair.second->write("hello\n");
  *answer = co_await pair.first->readline();
  std::string eof = co_await pair.first->read();
  CHECK(eof.empty());
  pair.second->close();
  co_await pair.second->wait_closed();
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("start_tls on both ends of a plain stream connection", "[tls][loops][starttls]") {
  std::string answer;
  bool upgraded = false;
  this->loop->run_until_complete(starttls_both_sides(*this->loop, false, &answer, &upgraded));
  CHECK(upgraded);
  CHECK(answer == "secure: hello\n");
}

LOOP_TEST("start_tls over a TLS connection: TLS in TLS, as asyncio 3.11+",
          "[tls][loops][starttls]") {
  std::string answer;
  bool upgraded = false;
  this->loop->run_until_complete(starttls_both_sides(*this->loop, true, &answer, &upgraded));
  CHECK(upgraded);
  CHECK(answer == "secure: hello\n");
}

namespace {

// A plain Protocol that asks for STARTTLS (starttls_handler answers) and counts connection_made.
struct StartTlsClient : Protocol {
  int made = 0;
  Ref<Transport> transport;
  std::string received;
  Future<void> lost;
  explicit StartTlsClient(EventLoop& loop) : lost(loop.create_future<void>()) {}
  void connection_made(Ref<Transport> t) override {
    ++made;
    transport = t;
  }
  void data_received(std::string_view d) override { received += d; }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    if (!lost.done()) lost.set_result();
  }
};

Coro<void> starttls_protocol_client(EventLoop& loop, int* made, std::string* answer) {
  TlsContexts tls;
  ClientConnectedCallback handler = starttls_handler;
  Ref<Server> server = co_await start_server(handler, "127.0.0.1", 0);
  auto client = std::make_shared<StartTlsClient>(loop);
  ProtocolFactory factory = [client] { return client; };
  co_await loop.create_connection(factory, "127.0.0.1", server->sockets()[0].address.port);
  client->transport->write("STARTTLS\n");
  while (client->received != "GO\n" && !client->lost.done()) co_await sleep(0.001);
  client->received.clear();
  StartTlsOptions so;
  so.server_hostname = "localhost";
  Ref<Transport> plain = client->transport;
  Ref<Transport> secure = co_await loop.start_tls(plain, client, &tls.client, so);
  secure->write("hello\n");
  while (client->received.find('\n') == std::string::npos && !client->lost.done())
    co_await sleep(0.001);
  *answer = client->received;
  *made = client->made;
  secure->close();
  co_await client->lost;
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("start_tls does not call the protocol's connection_made again, as asyncio",
          "[tls][loops][starttls]") {
  int made = 0;
  std::string answer;
  this->loop->run_until_complete(starttls_protocol_client(*this->loop, &made, &answer));
  CHECK(made == 1);
  CHECK(answer == "secure: hello\n");
}

namespace {

struct HandoverFacts {
  bool handshaking = false;            // the server's handler reached start_tls
  bool open_during_handshake = false;  // wait_closed() still waiting after close()
  std::size_t active = 0;
  std::error_code code;  // what the server's start_tls raised
  std::string client_read = "(not read)";
};

// The server's side of a STARTTLS whose client never starts its handshake.
Coro<void> starttls_until_aborted(std::shared_ptr<StreamReader> r, std::shared_ptr<StreamWriter> w,
                                  const TlsContext* server_tls, double timeout,
                                  HandoverFacts* out) {
  std::string ask = co_await r->readline();
  w->write("GO\n");
  co_await w->drain();
  out->handshaking = true;
  StartTlsOptions so;
  so.ssl_handshake_timeout = timeout;
  try {
    co_await w->start_tls(server_tls, so);
  } catch (const std::system_error& e) {
    out->code = e.code();
  }
  w->close();
}

Coro<void> stalled_starttls(EventLoop& loop, double pause, double timeout, HandoverFacts* out) {
  TlsContexts tls;
  const TlsContext* server_tls = &tls.server;
  ClientConnectedCallback handler = [server_tls, timeout, out](std::shared_ptr<StreamReader> r,
                                                               std::shared_ptr<StreamWriter> w) {
    return starttls_until_aborted(std::move(r), std::move(w), server_tls, timeout, out);
  };
  Ref<Server> server = co_await start_server(handler, "127.0.0.1", 0);
  StreamPair pair = co_await open_connection("127.0.0.1", server->sockets()[0].address.port);
  pair.second->write("STARTTLS\n");
  std::string go = co_await pair.first->readline();
  CHECK(go == "GO\n");
  while (!out->handshaking) co_await sleep(0.001);
  co_await sleep(pause);  // the server's handshake is under way, with no ClientHello coming
  server->close();
  Task<void> closed = loop.create_task(server->wait_closed());
  co_await sleep(pause);
  out->open_during_handshake = !closed.done();
  out->active = server->active_connections();
  server->abort_clients();
  co_await closed;
  out->client_read = co_await pair.first->read();
  pair.second->close();
  co_await pair.second->wait_closed();
}

}  // namespace

LOOP_TEST(
    "start_tls: the server counts the connection through the handshake; abort_clients ends it",
    "[tls][loops][starttls][server]") {
  HandoverFacts f;
  // The handshake timeout only bounds a failure: abort_clients() comes long before it.
  this->loop->run_until_complete(stalled_starttls(*this->loop, timeout_of<TestType>(1.0, 0.05),
                                                  timeout_of<TestType>(60.0, 5.0), &f));
  CHECK(f.open_during_handshake);
  CHECK(f.active == 1);
  CHECK(f.code == std::errc::connection_aborted);
  CHECK(f.client_read.empty());  // the server's socket closed
}

namespace {

struct CloseFacts {
  std::size_t handshaking = 0;  // active_connections() with two handshakes under way
  std::string echoed;           // from the connection that completed its handshake after close()
  bool open_with_one_handshaking = false;
  std::size_t active_before_close_clients = 0;
  std::string dropped_read = "(not read)";
};

// Two plain clients of a TLS server: their handshakes wait until they start_tls.
Coro<void> handshakes_across_close(EventLoop& loop, CloseFacts* out) {
  TlsContexts tls;
  Ref<Server> server = co_await tls_echo_server(tls);
  const std::uint16_t port = server->sockets()[0].address.port;
  StreamPair a = co_await open_connection("127.0.0.1", port);
  StreamPair b = co_await open_connection("127.0.0.1", port);
  for (int i = 0; i < 1000 && server->active_connections() < 2; ++i) co_await sleep(0.001);
  out->handshaking = server->active_connections();
  server->close();
  Task<void> closed = loop.create_task(server->wait_closed());
  StartTlsOptions so;
  so.server_hostname = "localhost";
  co_await a.second->start_tls(&tls.client, so);
  a.second->write("after close\n");
  out->echoed = co_await a.first->readline();
  a.second->close();
  co_await a.second->wait_closed();
  for (int i = 0; i < 1000 && server->active_connections() > 1; ++i) co_await sleep(0.001);
  out->open_with_one_handshaking = !closed.done();
  out->active_before_close_clients = server->active_connections();
  server->close_clients();
  co_await closed;
  out->dropped_read = co_await b.first->read();
  b.second->close();
  co_await b.second->wait_closed();
}

}  // namespace

LOOP_TEST("TLS server: close() lets handshakes under way finish; close_clients() drops them",
          "[tls][loops][server][close]") {
  CloseFacts f;
  this->loop->run_until_complete(handshakes_across_close(*this->loop, &f));
  CHECK(f.handshaking == 2);
  CHECK(f.echoed == "after close\n");
  CHECK(f.open_with_one_handshaking);
  CHECK(f.active_before_close_clients == 1);
  CHECK(f.dropped_read.empty());
}

namespace {

// Keeps what arrives until the connection is lost.
struct Gather : Protocol {
  std::string data;
  Future<void> lost;
  explicit Gather(EventLoop& loop) : lost(loop.create_future<void>()) {}
  void data_received(std::string_view d) override { data += d; }
  void connection_lost(std::exception_ptr) override {
    if (!lost.done()) lost.set_result();
  }
};

Coro<void> write_after_tls_close(EventLoop& loop, const std::string* bulk, std::size_t* received,
                                 bool* intact, std::size_t* buffered_before,
                                 std::size_t* buffered_after) {
  TlsContexts tls;
  auto sink = std::make_shared<Gather>(loop);
  ProtocolFactory sink_factory = [sink] { return sink; };
  ServerOptions so;
  so.ssl = &tls.server;
  Ref<Server> server = co_await loop.create_server(sink_factory, "127.0.0.1", 0, so);
  auto client = std::make_shared<Gather>(loop);
  ProtocolFactory client_factory = [client] { return client; };
  ConnectionOptions co;
  co.ssl = &tls.client;
  co.server_hostname = "localhost";
  Connection c = co_await loop.create_connection(client_factory, "127.0.0.1",
                                                 server->sockets()[0].address.port, co);
  c.first->write(*bulk);  // more than goes out at once: still buffered at close()
  c.first->close();
  *buffered_before = c.first->get_write_buffer_size();
  c.first->write("dropped");
  *buffered_after = c.first->get_write_buffer_size();
  co_await client->lost;
  co_await sink->lost;
  *received = sink->data.size();
  *intact = sink->data == *bulk;
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST(
    "TLS: what is written before close() arrives, what is written after is dropped, as asyncio",
    "[tls][loops][close]") {
  const std::string bulk = peer_pattern(0, 4'000'000);
  std::size_t received = 0, before = 0, after = 0;
  bool intact = false;
  this->loop->run_until_complete(
      write_after_tls_close(*this->loop, &bulk, &received, &intact, &before, &after));
  CHECK(before > 0);
  CHECK(after == before);
  CHECK(received == bulk.size());
  CHECK(intact);
}

namespace {

// A bad ssl_handshake_timeout is refused before the connection is touched, as asyncio's
// SSLProtocol refuses it: the plain stream goes on working.
Coro<void> start_tls_bad_timeout(std::string* refusal, bool* closing, std::string* echoed) {
  TlsContexts tls;
  ClientConnectedCallback echo = echo_until_eof;
  Ref<Server> server = co_await start_server(echo, "127.0.0.1", 0);
  StreamPair pair = co_await open_connection("127.0.0.1", server->sockets()[0].address.port);
  StartTlsOptions so;
  so.server_hostname = "localhost";
  so.ssl_handshake_timeout = 0;
  try {
    co_await pair.second->start_tls(&tls.client, so);
  } catch (const ValueError& e) {
    *refusal = e.what();
  }
  *closing = pair.second->is_closing();
  pair.second->write("still plain\n");
  *echoed = co_await pair.first->readline();
  pair.second->close();
  co_await pair.second->wait_closed();
  server->close();
  co_await server->wait_closed();
}

}  // namespace

LOOP_TEST("start_tls: ssl_handshake_timeout <= 0 is ValueError, the plain connection intact",
          "[tls][loops][starttls]") {
  std::string refusal, echoed;
  bool closing = true;
  this->loop->run_until_complete(start_tls_bad_timeout(&refusal, &closing, &echoed));
  CHECK(refusal == "ssl_handshake_timeout should be a positive number, got 0.0");  // a float
  CHECK_FALSE(closing);
  CHECK(echoed == "still plain\n");
}

#endif  // __EMSCRIPTEN__

// ---- Without TLS (WebAssembly) ------------------------------------------------------------------

namespace {

// Awaits `call`, noting the method and target its NotSupportedError names.
template <class T>
Coro<void> note_refusal(Coro<T> call, std::vector<std::string>* refused) {
  try {
    co_await std::move(call);
  } catch (const NotSupportedError& e) {
    refused->push_back(e.method() + " on " + e.target());
  }
}

// Each call with ssl= on a loop without TLS.
Coro<void> refused_tls_calls(EventLoop& loop, std::vector<std::string>* refused) {
  static const TlsContext tls{};
  ProtocolFactory factory = [] { return std::make_shared<Protocol>(); };
  ClientConnectedCallback ignore = [](std::shared_ptr<StreamReader>,
                                      std::shared_ptr<StreamWriter>) {};
  ConnectionOptions client;
  client.ssl = &tls;
  client.server_hostname = "localhost";
  ServerOptions server;
  server.ssl = &tls;
  StreamServerOptions streams;
  streams.server.ssl = &tls;
  co_await note_refusal(loop.create_connection(factory, "127.0.0.1", 443, client), refused);
  co_await note_refusal(loop.create_unix_connection(factory, "/tmp/eddy-no-tls.sock", client),
                        refused);
  co_await note_refusal(loop.create_server(factory, "127.0.0.1", 8443, server), refused);
  co_await note_refusal(loop.create_unix_server(factory, "/tmp/eddy-no-tls.sock", server), refused);
  co_await note_refusal(start_server(ignore, "127.0.0.1", 8443, streams), refused);
}

}  // namespace

LOOP_TEST("ssl= without TLS on the target: NotSupportedError before connecting or binding",
          "[tls][loops][capabilities]") {
  if (has_tls(*this->loop)) SKIP("this loop has TLS (the other [tls][loops] tests use it)");
  EventLoop& loop = *this->loop;
  const std::string on = " on " + loop.capabilities().target;
  std::vector<std::string> refused;
  loop.run_until_complete(refused_tls_calls(loop, &refused));
  CHECK(refused == strings("create_connection(ssl=...)" + on,
                           "create_unix_connection(ssl=...)" + on, "create_server(ssl=...)" + on,
                           "create_unix_server(ssl=...)" + on, "create_server(ssl=...)" + on));
  ProtocolFactory factory = [] { return std::make_shared<Protocol>(); };
  // Nothing was bound: the port is free for a plain server.
  Ref<Server> plain = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 8443));
  plain->close();
  loop.run_until_complete(plain->wait_closed());
}
