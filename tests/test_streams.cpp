// Stream transports, protocols, servers and flow control. Natively the other end is Python's
// asyncio (tests/peers/asyncio_peer.py) over real TCP and Unix sockets; loop kinds without
// stream sockets must say so with NotSupportedError. Every test ends with the loop closed and no
// transport, handle, future or task left (see support.hpp).
#include <sys/socket.h>
#include <netinet/in.h>

#include <netdb.h>
#include <unistd.h>
#include <array>
#include <cerrno>
#include <cstdio>
#include <limits>

#include "support.hpp"

using namespace eddy;

// Records the protocol state machine; `lost` resolves in connection_lost.
struct Recorder : Protocol {
  explicit Recorder(EventLoop& loop) : lost(loop.create_future<void>()) {}
  std::vector<std::string> events;
  std::string data;
  Ref<Transport> transport;
  Future<void> lost;
  std::exception_ptr lost_exc;
  bool keep_open = false;
  int pauses = 0, resumes = 0;
  std::function<void(Recorder&, std::string_view)> on_data;
  std::function<void(Recorder&)> on_eof;
  Future<void> resumed;  // set on resume_writing, if someone waits

  void connection_made(Ref<Transport> t) override {
    transport = t;
    events.push_back("made");
  }
  void data_received(std::string_view d) override {
    if (events.empty() || events.back() != "data") events.push_back("data");
    data += d;
    if (on_data) on_data(*this, d);
  }
  bool eof_received() override {
    events.push_back("eof");
    if (on_eof) on_eof(*this);
    return keep_open;
  }
  void connection_lost(std::exception_ptr e) override {
    events.push_back("lost");
    lost_exc = e;
    transport.reset();  // breaks the transport <-> protocol cycle, as asyncio code does
    on_data = nullptr;
    on_eof = nullptr;
    if (!lost.done()) lost.set_result();
  }
  void pause_writing() override { ++pauses; }
  void resume_writing() override {
    ++resumes;
    if (resumed && !resumed.done()) resumed.set_result();
  }
};

static bool has_streams(EventLoop& loop) { return loop.capabilities().supports("create_connection"); }

LOOP_TEST("stream methods: loops without sockets refuse with NotSupportedError", "[streams]") {
  auto& loop = *this->loop;
  if (has_streams(loop)) {
    CHECK(loop.capabilities().supports("create_server"));
    CHECK(loop.capabilities().supports("getaddrinfo"));
    return;
  }
  auto attempt = [](EventLoop& l) -> Coro<void> {
    co_await l.create_connection([] { return std::shared_ptr<BaseProtocol>(); }, "127.0.0.1", 1);
  };
  try {
    loop.run_until_complete(attempt(loop));
    FAIL("create_connection did not throw");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "create_connection");
    CHECK(e.target() == loop.capabilities().target);
  }
}

TEST_CASE("write buffer limits: asyncio's defaults and validation", "[streams][flow]") {
  WriteFlowControl f;
  CHECK(f.high() == 65536);
  CHECK(f.low() == 16384);
  f.set_limits(100, std::nullopt);
  CHECK(f.low() == 25);
  f.set_limits(std::nullopt, 10);
  CHECK(f.high() == 40);
  f.set_limits(0, 0);
  CHECK(f.high() == 0);
  CHECK_THROWS_AS(f.set_limits(10, 20), ValueError);
  CHECK_THROWS_AS(f.set_limits(10, -1), ValueError);
  CHECK_THROWS_AS(f.set_limits(-5, std::nullopt), ValueError);
  CHECK(f.high() == 0);  // a rejected call changes nothing
  // The message names the low that asyncio computes: high // 4, rounded down.
  CHECK_THROWS_WITH(f.set_limits(-1, std::nullopt), "high (-1) must be >= low (-1) must be >= 0");
  CHECK_THROWS_WITH(f.set_limits(-5, std::nullopt), "high (-5) must be >= low (-2) must be >= 0");
  // A low too large to multiply by four gives the largest high.
  f.set_limits(std::nullopt, std::numeric_limits<long long>::max() / 2);
  CHECK(f.high() == static_cast<std::size_t>(std::numeric_limits<long long>::max()));
}

#ifndef __EMSCRIPTEN__
#include "peer.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

template <class P>
static ProtocolFactory give(std::shared_ptr<P> p) {
  return [p] { return std::static_pointer_cast<BaseProtocol>(p); };
}

static std::uint16_t port_of(const std::string& ready) { return static_cast<std::uint16_t>(std::stoi(ready)); }

static std::string temp_socket_path(const char* tag) {
  return "/tmp/eddy-test-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

// ---- Client side against an asyncio server ------------------------------------------------------

static Coro<void> echo_client(EventLoop& loop, bool unix_socket, std::string where, std::shared_ptr<Recorder> rec) {
  Connection c;
  if (unix_socket)
    c = co_await loop.create_unix_connection(give(rec), where);
  else
    c = co_await loop.create_connection(give(rec), "127.0.0.1", port_of(where));
  CHECK(c.second == rec);
  CHECK(rec->events == strings("made"));  // connection_made ran before we resumed
  c.first->write("hello ");
  const std::vector<std::string> owned = strings("wor", "ld");
  std::vector<std::string_view> parts(owned.begin(), owned.end());
  c.first->writelines(parts);
  c.first->write_eof();
  CHECK_THROWS_AS(c.first->write("late"), RuntimeError);  // asyncio: write() after write_eof()
  co_await rec->lost;
}

TEST_CASE_METHOD(NativeFixture, "create_connection: echo through Python asyncio, TCP and Unix", "[streams][peer]") {
  const bool unix_socket = GENERATE(false, true);
  const std::string addr = unix_socket ? "unix:" + temp_socket_path("echo") : "tcp:127.0.0.1:0";
  PythonPeer peer({"echo-server", addr});
  const std::string where = peer.ready();
  auto rec = std::make_shared<Recorder>(*loop);
  loop->run_until_complete(echo_client(*loop, unix_socket, where, rec));
  CHECK(rec->data == "hello world");
  CHECK(rec->events == std::vector<std::string>{"made", "data", "eof", "lost"});
  CHECK_FALSE(rec->lost_exc);
  peer.finish();
  if (unix_socket) ::unlink(temp_socket_path("echo").c_str());  // the peer's, left by its exit
}

static Coro<void> check_peername(EventLoop& loop, std::uint16_t port, std::shared_ptr<Recorder> rec) {
  Connection c = co_await loop.create_connection(give(rec), "localhost", port, {.happy_eyeballs_delay = 0.25});
  auto peer = std::any_cast<SocketAddress>(c.first->get_extra_info("peername"));
  CHECK(peer.port == port);
  CHECK(peer.host() == "127.0.0.1");
  auto sock = std::any_cast<SocketAddress>(c.first->get_extra_info("sockname"));
  CHECK(sock.family == AddressFamily::inet);
  CHECK(std::any_cast<int>(c.first->get_extra_info("socket")) >= 0);
  CHECK_FALSE(c.first->get_extra_info("ssl_object").has_value());
  CHECK(std::any_cast<int>(c.first->get_extra_info("nothing", 7)) == 7);
  CHECK(c.first->is_reading());
  CHECK(c.first->can_write_eof());
  c.first->close();
  CHECK(c.first->is_closing());
  CHECK_FALSE(c.first->is_reading());
  c.first->write("dropped after close");  // asyncio drops it silently
  co_await rec->lost;
}

TEST_CASE_METHOD(NativeFixture, "create_connection: DNS name, happy eyeballs, extra info, write after close",
                 "[streams][peer]") {
  PythonPeer peer({"echo-server", "tcp:127.0.0.1:0"});
  const std::uint16_t port = port_of(peer.ready());
  auto rec = std::make_shared<Recorder>(*loop);
  loop->run_until_complete(check_peername(*loop, port, rec));
  CHECK(rec->events == std::vector<std::string>{"made", "lost"});
  CHECK(rec->data.empty());
  peer.finish();
}

static Coro<void> connect_expecting(EventLoop& loop, std::string host, std::uint16_t port, std::error_code* got) {
  try {
    co_await loop.create_connection([] { return std::make_shared<Protocol>(); }, host, port);
  } catch (const std::system_error& e) {
    *got = e.code();
  }
}

TEST_CASE_METHOD(NativeFixture, "create_connection: refused and unresolvable hosts raise OSError's equivalents",
                 "[streams][faults]") {
  std::error_code refused, dns;
  loop->run_until_complete(connect_expecting(*loop, "127.0.0.1", unused_port(), &refused));
  CHECK(refused == std::errc::connection_refused);
  loop->run_until_complete(connect_expecting(*loop, "nonexistent.invalid", 80, &dns));
  CHECK(dns);
  CHECK(std::string(dns.category().name()) == "resolver");  // socket.gaierror
}

static Coro<void> half_close_ours(EventLoop& loop, std::uint16_t port, std::shared_ptr<Recorder> rec) {
  Connection c = co_await loop.create_connection(give(rec), "127.0.0.1", port);
  c.first->write("12345");
  c.first->write_eof();  // we are done sending, but still read
  co_await rec->lost;
}

static Coro<void> half_close_theirs(EventLoop& loop, std::uint16_t port, std::shared_ptr<Recorder> rec) {
  rec->keep_open = true;  // eof_received() -> true: we may still write
  rec->on_eof = [](Recorder& r) {
    r.transport->write("thanks for " + r.data);
    r.transport->close();
  };
  co_await loop.create_connection(give(rec), "127.0.0.1", port);
  co_await rec->lost;
}

TEST_CASE_METHOD(NativeFixture, "half-close in both directions with an asyncio peer", "[streams][peer][faults]") {
  SECTION("we write_eof and keep reading") {
    PythonPeer peer({"half-close-server", "tcp:127.0.0.1:0"});
    auto rec = std::make_shared<Recorder>(*loop);
    loop->run_until_complete(half_close_ours(*loop, port_of(peer.ready()), rec));
    CHECK(rec->data == "after-eof:5");
    CHECK(rec->events == std::vector<std::string>{"made", "data", "eof", "lost"});
    peer.finish();
  }
  SECTION("the peer half-closes and eof_received keeps us open for writing") {
    PythonPeer peer({"eof-first-server", "tcp:127.0.0.1:0"});
    auto rec = std::make_shared<Recorder>(*loop);
    loop->run_until_complete(half_close_theirs(*loop, port_of(peer.ready()), rec));
    CHECK(rec->events == std::vector<std::string>{"made", "data", "eof", "lost"});
    CHECK(peer.finish().find("GOT thanks for hello") != std::string::npos);
  }
}

static Coro<void> write_into_reset(EventLoop& loop, std::uint16_t port, std::shared_ptr<Recorder> rec) {
  Connection c = co_await loop.create_connection(give(rec), "127.0.0.1", port);
  const std::string chunk(256 * 1024, 'x');
  c.first->write("!");
  for (int i = 0; i < 400 && !rec->lost.done(); ++i) {
    if (!c.first->is_closing()) c.first->write(chunk);
    co_await sleep(0.005);
  }
  co_await rec->lost;
}

TEST_CASE_METHOD(NativeFixture, "peer reset in the middle of a write ends in connection_lost(exc)",
                 "[streams][peer][faults]") {
  PythonPeer peer({"reset-server", "tcp:127.0.0.1:0"});
  auto rec = std::make_shared<Recorder>(*loop);
  loop->run_until_complete(write_into_reset(*loop, port_of(peer.ready()), rec));
  REQUIRE(rec->lost_exc);
  try {
    std::rethrow_exception(rec->lost_exc);
  } catch (const std::system_error& e) {
    CHECK((e.code() == std::errc::connection_reset || e.code() == std::errc::broken_pipe));
  }
  CHECK(rec->events.back() == "lost");
  peer.finish();
}

static Coro<void> abort_inside_callback(EventLoop& loop, std::uint16_t port, std::shared_ptr<Recorder> rec,
                                        bool use_close) {
  rec->on_data = [use_close](Recorder& r, std::string_view) {
    Ref<Transport> t = r.transport;
    if (use_close)
      t->close();
    else
      t->abort();
    t->close();      // idempotent
    t->abort();      // no second connection_lost
    t->write("x");  // dropped
    t->pause_reading();
    t->resume_reading();
  };
  Connection c = co_await loop.create_connection(give(rec), "127.0.0.1", port);
  c.first->write(std::string(100000, 'a'));
  co_await rec->lost;
}

TEST_CASE_METHOD(NativeFixture, "close or abort from inside data_received is safe", "[streams][peer][lifetime]") {
  const bool use_close = GENERATE(false, true);
  PythonPeer peer({"echo-server", "tcp:127.0.0.1:0"});
  auto rec = std::make_shared<Recorder>(*loop);
  loop->run_until_complete(abort_inside_callback(*loop, port_of(peer.ready()), rec, use_close));
  CHECK(rec->events == std::vector<std::string>{"made", "data", "lost"});
  CHECK_FALSE(rec->lost_exc);
  peer.finish();
}

// ---- Server side with asyncio clients -----------------------------------------------------------

struct EchoServerProtocol : Protocol {
  explicit EchoServerProtocol(Future<void> done) : done(std::move(done)) {}
  Future<void> done;
  Ref<Transport> transport;
  std::size_t received = 0;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void data_received(std::string_view d) override {
    received += d.size();
    transport->write(d);
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    if (!done.done()) done.set_result();
  }
};

static Coro<void> serve_one_client(EventLoop& loop, bool unix_socket, std::size_t n, std::string* peer_said) {
  Future<void> done = loop.create_future<void>();
  auto proto = std::make_shared<EchoServerProtocol>(done);
  const std::string path = temp_socket_path("server");
  Ref<Server> server;
  if (unix_socket)
    server = co_await loop.create_unix_server(give(proto), path);
  else
    server = co_await loop.create_server(give(proto), "127.0.0.1", 0);
  CHECK(server->is_serving());
  REQUIRE(server->sockets().size() == 1);
  const SocketAddress a = server->sockets()[0].address;
  PythonPeer peer(strings("client-echo", unix_socket ? "unix:" + path : "tcp:127.0.0.1:" + std::to_string(a.port),
                          std::to_string(n)));
  co_await done;
  CHECK(proto->received == n);
  server->close();
  CHECK_FALSE(server->is_serving());
  CHECK(server->sockets().empty());
  co_await server->wait_closed();
  *peer_said = peer.finish();
  if (unix_socket) CHECK(::access(path.c_str(), F_OK) != 0);  // cleanup_socket removed it
}

TEST_CASE_METHOD(NativeFixture, "create_server: an asyncio client's 1 MiB echoes back intact, TCP and Unix",
                 "[streams][peer][server]") {
  const bool unix_socket = GENERATE(false, true);
  std::string said;
  loop->run_until_complete(serve_one_client(*loop, unix_socket, 1 << 20, &said));
  CHECK(said == "OK 1048576\n");
}

static Coro<void> replaced_socket_path(EventLoop& loop, std::string path, bool cleanup) {
  Ref<Server> server = co_await loop.create_unix_server([] { return std::make_shared<Protocol>(); },
                                                        path, {.cleanup_socket = cleanup});
  if (!cleanup) {
    server->close();
    co_await server->wait_closed();
    co_return;
  }
  // Someone else's file now has that name (made first, so that it cannot reuse the socket's
  // inode number): closing the server must leave it alone.
  const std::string other_path = path + ".other";
  FILE* other = std::fopen(other_path.c_str(), "w");
  REQUIRE(other);
  std::fclose(other);
  REQUIRE(::rename(other_path.c_str(), path.c_str()) == 0);
  server->close();
  co_await server->wait_closed();
}

// asyncio's cleanup_socket removes the path only if it is still the server's socket (same inode);
// cleanup_socket=false leaves it.
TEST_CASE_METHOD(NativeFixture,
                 "create_unix_server: closing leaves a file that replaced the socket",
                 "[streams][server]") {
  const std::string path = temp_socket_path("replaced");
  const bool cleanup = GENERATE(true, false);
  loop->run_until_complete(replaced_socket_path(*loop, path, cleanup));
  CHECK(::access(path.c_str(), F_OK) == 0);
  ::unlink(path.c_str());
}

// Writes `total` bytes in 1 MiB chunks, waiting for resume_writing whenever paused.
struct Producer : Protocol {
  Producer(EventLoop& loop, std::size_t total) : loop(loop), total(total), done(loop.create_future<void>()) {}
  EventLoop& loop;
  std::size_t total, sent = 0;
  int pauses = 0, resumes = 0;
  std::size_t max_buffer = 0;
  bool paused = false;
  Future<void> done;
  Future<void> resumed;
  Ref<Transport> transport;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void pause_writing() override {
    CHECK_FALSE(paused);  // once per crossing
    CHECK(transport->get_write_buffer_size() > transport->get_write_buffer_limits().second);
    paused = true;
    ++pauses;
  }
  void resume_writing() override {
    CHECK(paused);
    CHECK(transport->get_write_buffer_size() <= transport->get_write_buffer_limits().first);
    paused = false;
    ++resumes;
    if (resumed && !resumed.done()) resumed.set_result();
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    if (!done.done()) done.set_result();
  }
};

static Coro<void> produce(std::shared_ptr<Producer> p) {
  while (!p->transport) co_await sleep(0.001);
  while (p->sent < p->total) {
    const std::size_t n = std::min<std::size_t>(1 << 20, p->total - p->sent);
    p->transport->write(peer_pattern(p->sent, n));
    p->sent += n;
    p->max_buffer = std::max(p->max_buffer, p->transport->get_write_buffer_size());
    if (p->paused) {
      p->resumed = p->loop.create_future<void>();
      co_await p->resumed;
    }
  }
  p->transport->close();  // flushes, then connection_lost
  co_await p->done;
}

static Coro<void> big_write(EventLoop& loop, std::size_t total, std::shared_ptr<Producer> p, std::string* said) {
  Ref<Server> server = co_await loop.create_server(give(p), "127.0.0.1", 0);
  const std::uint16_t port = server->sockets()[0].address.port;
  PythonPeer peer(strings("slow-reader", "tcp:127.0.0.1:" + std::to_string(port), std::to_string(total)));
  co_await produce(p);
  server->close();
  co_await server->wait_closed();
  *said = peer.finish();
}

TEST_CASE_METHOD(NativeFixture, "100 MiB to a slow asyncio reader: intact, in order, paused and resumed",
                 "[streams][peer][flow]") {
  const std::size_t total = 100u << 20;
  auto p = std::make_shared<Producer>(*loop, total);
  std::string said;
  loop->run_until_complete(big_write(*loop, total, p, &said));
  CHECK(said == "OK " + std::to_string(total) + "\n");
  CHECK(p->pauses >= 1);
  CHECK(p->resumes == p->pauses);  // every pause was followed by exactly one resume
}

static Coro<void> server_lifecycle(EventLoop& loop) {
  auto factory = [] { return std::static_pointer_cast<BaseProtocol>(std::make_shared<Protocol>()); };
  // Not serving until asked; several hosts give several sockets.
  Ref<Server> server = co_await loop.create_server(factory, strings("127.0.0.1", "localhost"), 0,
                                                   {.start_serving = false});
  CHECK_FALSE(server->is_serving());
  CHECK(server->sockets().size() >= 1);
  // Bound but not listening yet: a client is refused, as asyncio listens only when serving.
  auto early = std::make_shared<Recorder>(loop);
  int refused = 0;
  try {
    co_await loop.create_connection(give(early), "127.0.0.1", server->sockets()[0].address.port);
  } catch (const std::system_error& e) {
    refused = e.code().value();
  }
  CHECK(refused == ECONNREFUSED);
  CHECK(early->events.empty());
  co_await server->start_serving();
  CHECK(server->is_serving());
  // A client connects; close() keeps it, close_clients() ends it.
  auto rec = std::make_shared<Recorder>(loop);
  co_await loop.create_connection(give(rec), "127.0.0.1", server->sockets()[0].address.port);
  while (server->active_connections() == 0) co_await sleep(0.001);
  server->close();
  CHECK(server->active_connections() == 1);
  server->close_clients();
  co_await rec->lost;  // the server side closed: we saw EOF
  co_await server->wait_closed();
  CHECK(rec->events == std::vector<std::string>{"made", "eof", "lost"});

  // serve_forever until cancelled, then closed.
  Ref<Server> s2 = co_await loop.create_server(factory, "127.0.0.1", 0);
  Task<void> forever = loop.create_task(s2->serve_forever());
  co_await sleep(0.01);
  forever.cancel("enough");
  try {
    co_await forever;
    FAIL("serve_forever returned");
  } catch (const CancelledError& e) {
    CHECK(e.message() == "enough");  // asyncio re-raises the cancellation it got
  }
  CHECK_FALSE(s2->is_serving());
  try {
    co_await s2->serve_forever();
    FAIL("serve_forever on a closed server");
  } catch (const RuntimeError& e) {
    CHECK(std::string(e.what()) == "server is closed");
  }
}

TEST_CASE_METHOD(NativeFixture, "Server: start_serving, several hosts, close_clients, serve_forever",
                 "[streams][server]") {
  loop->run_until_complete(server_lifecycle(*loop));
}

static Coro<void> bind_twice(EventLoop& loop, std::error_code* got) {
  auto factory = [] { return std::static_pointer_cast<BaseProtocol>(std::make_shared<Protocol>()); };
  Ref<Server> a = co_await loop.create_server(factory, "127.0.0.1", 0);
  try {
    co_await loop.create_server(factory, "127.0.0.1", a->sockets()[0].address.port, {.reuse_address = false});
  } catch (const std::system_error& e) {
    *got = e.code();
    CHECK(std::string(e.what()).find("error while attempting to bind on address") != std::string::npos);
  }
  a->close();
  co_await a->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "create_server: an address in use is reported at create_server", "[streams][faults]") {
  std::error_code got;
  loop->run_until_complete(bind_twice(*loop, &got));
  CHECK(got == std::errc::address_in_use);
}

struct Collector : BufferedProtocol {
  explicit Collector(EventLoop& loop) : lost(loop.create_future<void>()) {}
  std::array<char, 4096> buf;
  std::string data;
  std::size_t calls = 0;
  Future<void> lost;
  Ref<Transport> transport;
  void connection_made(Ref<Transport> t) override { transport = t; }
  std::span<char> get_buffer(std::size_t) override { return buf; }
  void buffer_updated(std::size_t n) override {
    ++calls;
    data.append(buf.data(), n);
  }
  void connection_lost(std::exception_ptr) override {
    transport.reset();
    lost.set_result();
  }
};

static Coro<void> buffered_echo(EventLoop& loop, std::uint16_t port, std::shared_ptr<Collector> c) {
  Connection conn = co_await loop.create_connection(give(c), "127.0.0.1", port);
  conn.first->write(peer_pattern(0, 200000));
  conn.first->write_eof();
  co_await c->lost;
}

TEST_CASE_METHOD(NativeFixture, "BufferedProtocol receives into its own buffer", "[streams][peer]") {
  PythonPeer peer({"echo-server", "tcp:127.0.0.1:0"});
  auto c = std::make_shared<Collector>(*loop);
  loop->run_until_complete(buffered_echo(*loop, port_of(peer.ready()), c));
  CHECK(c->data == peer_pattern(0, 200000));
  CHECK(c->calls >= 200000 / 4096);
  peer.finish();
}

static Coro<void> resolve(EventLoop& loop) {
  std::vector<AddrInfo> r = co_await loop.getaddrinfo("localhost", "80", {.kind = SocketKind::stream});
  REQUIRE_FALSE(r.empty());
  bool found = false;
  for (auto& a : r) found |= a.address.host() == "127.0.0.1" && a.address.port == 80;
  CHECK(found);
  NameInfo n = co_await loop.getnameinfo(SocketAddress::ip("127.0.0.1", 80));
  CHECK_FALSE(n.host.empty());
  CHECK_FALSE(n.service.empty());
  try {
    co_await loop.getaddrinfo("nonexistent.invalid", "80");
    FAIL("resolved an .invalid name");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.code().category().name()) == "resolver");
    // socket.gaierror's errno: the C library's EAI_* value (EAI_NONAME here, EAI_AGAIN without
    // a DNS server), not libuv's own numbering.
    CHECK(e.code().value() < 0);
    CHECK(e.code().message() == ::gai_strerror(e.code().value()));
  }
}

TEST_CASE_METHOD(NativeFixture, "getaddrinfo and getnameinfo", "[streams][dns]") {
  loop->run_until_complete(resolve(*loop));
}

static Coro<void> set_limits_live(EventLoop& loop, std::uint16_t port, std::shared_ptr<Recorder> rec) {
  Connection c = co_await loop.create_connection(give(rec), "127.0.0.1", port);
  Ref<Transport> t = c.first;
  CHECK(t->get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{16384, 65536});
  CHECK_THROWS_AS(t->set_write_buffer_limits(10, 20), ValueError);
  t->set_write_buffer_limits(4096);
  CHECK(t->get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{1024, 4096});
  t->close();
  co_await rec->lost;
}

TEST_CASE_METHOD(NativeFixture, "set_write_buffer_limits on a live transport", "[streams][flow]") {
  PythonPeer peer({"echo-server", "tcp:127.0.0.1:0"});
  auto rec = std::make_shared<Recorder>(*loop);
  loop->run_until_complete(set_limits_live(*loop, port_of(peer.ready()), rec));
  peer.finish();
}

#endif  // __EMSCRIPTEN__

#ifndef __EMSCRIPTEN__
#include <dirent.h>
#include <sys/resource.h>

static int open_fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n - 3;  // ".", ".." and the directory's own fd
}

static Coro<std::string> echo_once(EventLoop& loop, std::uint16_t port) {
  auto rec = std::make_shared<Recorder>(loop);
  rec->on_data = [](Recorder& r, std::string_view) {
    if (r.data.size() >= 5) r.transport->close();
  };
  ProtocolFactory client = give(rec);
  Connection c = co_await loop.create_connection(client, "127.0.0.1", port);
  c.first->write("hello");
  co_await rec->lost;
  co_return rec->data;
}

static Coro<void> accept_at_fd_limit(EventLoop& loop, std::string* said, std::string* after) {
  ProtocolFactory factory = [&loop] { return std::make_shared<EchoServerProtocol>(loop.create_future<void>()); };
  Ref<Server> server = co_await loop.create_server(factory, "127.0.0.1", 0);
  const std::uint16_t port = server->sockets()[0].address.port;
  // One round trip first: sanitizer builds check each dynamic type once, and that first check
  // needs a pipe, which they could not get once the descriptors run out.
  const std::string echoed = co_await echo_once(loop, port);
  CHECK(echoed == "hello");
  // The peer (and its pipe) first; then only a few descriptors are left for accepted sockets.
  PythonPeer peer(strings("many-clients", "tcp:127.0.0.1:" + std::to_string(port), "30"));
  rlimit old;
  ::getrlimit(RLIMIT_NOFILE, &old);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(open_fd_count() + 4);
  ::setrlimit(RLIMIT_NOFILE, &low);
  while (!peer.exited()) co_await sleep(0.02);  // the server accepts (and fails to) meanwhile
  ::setrlimit(RLIMIT_NOFILE, &old);
  *said = peer.finish();
  // The server kept serving: a new client is accepted and echoed.
  *after = co_await echo_once(loop, port);
  server->close();
  server->close_clients();
  co_await server->wait_closed();
}

TEST_CASE_METHOD(NativeFixture, "accept at the file-descriptor limit: reported, and the server keeps serving",
                 "[streams][server][faults]") {
  std::string said, after;
  loop->run_until_complete(accept_at_fd_limit(*loop, &said, &after));
  INFO("peer said: " << said);
  CHECK(said.rfind("ECHOED ", 0) == 0);
  const int echoed = std::atoi(said.c_str() + 7);
  CHECK(echoed >= 1);
  CHECK(echoed < 30);  // some connections could not be accepted
  CHECK(after == "hello");
  // libuv's reserved-descriptor trick accepts and closes what it cannot hold without reporting
  // (as uvloop); any report that does arrive must be asyncio's.
  for (const auto& r : reported) CHECK(r.message == "socket.accept() out of system resource");
  reported.clear();
}
#endif
