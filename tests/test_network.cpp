// Eddy talking to Eddy over the loop's own network, with the same bodies on every loop kind:
// real TCP, Unix and UDP sockets natively (libuv), the virtual network in WebAssembly and on the
// virtual-clock loop. Then what only the virtual network has: latency, bandwidth, loss, reset
// injection, socket pairs and pipes, virtual host names.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "selector/virtual_network.hpp"
#include "selector/virtual_sockets.hpp"
#include "support.hpp"

#ifndef __EMSCRIPTEN__
#include <netinet/in.h>
#include <sys/socket.h>
#endif

using namespace eddy;

namespace {

template <class P>
ProtocolFactory give(std::shared_ptr<P> p) {
  return [p] { return std::static_pointer_cast<BaseProtocol>(p); };
}

std::string pattern(std::size_t offset, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (offset + i) % 23);
  return s;
}

std::string socket_path(const char* tag) {
  return "/tmp/eddy-net-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

std::uint16_t port_of(const Ref<Server>& server) {
  return server->sockets()[0].address.port;
}

// The errno a failed network call carried, or 0.
template <class F>
int errno_of(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

int errno_of_exception(std::exception_ptr e) {
  if (!e) return 0;
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& x) {
    return x.code().value();
  } catch (...) {
    return -1;
  }
}

// Records a connection's protocol calls; `lost` resolves in connection_lost.
struct Peer : Protocol {
  explicit Peer(EventLoop& loop) : loop(loop), lost(loop.create_future<void>()) {}
  EventLoop& loop;
  Ref<Transport> transport;
  std::string data;
  std::vector<std::string> events;
  Future<void> lost;
  std::exception_ptr lost_exc;
  bool echo = false;
  bool keep_open = false;
  int pauses = 0, resumes = 0;
  std::size_t buffered_at_resume = 0;
  Future<void> resumed;
  std::function<void(Peer&)> on_data;
  std::function<void(Peer&)> on_made;

  void connection_made(Ref<Transport> t) override {
    transport = t;
    events.push_back("made");
    if (on_made) on_made(*this);
  }
  void data_received(std::string_view d) override {
    if (events.back() != "data") events.push_back("data");
    data += d;
    if (echo) transport->write(d);
    if (on_data) on_data(*this);
  }
  bool eof_received() override {
    events.push_back("eof");
    return keep_open;
  }
  void connection_lost(std::exception_ptr e) override {
    events.push_back("lost");
    lost_exc = e;
    transport.reset();
    on_data = nullptr;
    if (!lost.done()) lost.set_result();
  }
  void pause_writing() override { ++pauses; }
  void resume_writing() override {
    ++resumes;
    if (transport) buffered_at_resume = transport->get_write_buffer_size();
    if (resumed && !resumed.done()) resumed.set_result();
  }
};

}  // namespace

// Tests of what only the virtual network has, skipped on loops that use the OS's network.
#define REQUIRE_VIRTUAL_NETWORK(loop)                                                   \
  if (!vnet::find_network(loop)) SKIP("this loop uses the operating system's network"); \
  vnet::Network& net = vnet::network(loop)

// ---- Streams -------------------------------------------------------------------------------

static Coro<void> stream_echo(EventLoop& loop, bool unix_socket, std::size_t total) {
  ClientConnectedCallback handler = echo_until_eof;
  const std::string path = socket_path("echo");
  Ref<Server> server;
  StreamPair pair;
  if (unix_socket) {
    server = co_await start_unix_server(handler, path);
    pair = co_await open_unix_connection(path);
  } else {
    server = co_await start_server(handler, "127.0.0.1", 0);
    pair = co_await open_connection("127.0.0.1", port_of(server));
  }
  auto [reader, writer] = pair;
  if (!unix_socket) {
    auto peer = std::any_cast<SocketAddress>(writer->get_extra_info("peername"));
    CHECK(peer.host() == "127.0.0.1");
    CHECK(peer.port == port_of(server));
    auto local = std::any_cast<SocketAddress>(writer->get_extra_info("sockname"));
    CHECK(local.host() == "127.0.0.1");
    CHECK(local.port != 0);
  }
  std::size_t sent = 0;
  std::string echoed;
  while (sent < total) {
    const std::size_t n = std::min<std::size_t>(100000, total - sent);
    writer->write(pattern(sent, n));
    sent += n;
    co_await writer->drain();
    std::string got = co_await reader->read(65536);
    echoed += got;
  }
  writer->write_eof();
  std::string rest = co_await reader->read();
  echoed += rest;
  CHECK(echoed.size() == total);
  CHECK(echoed == pattern(0, total));
  CHECK(reader->at_eof());
  writer->close();
  co_await writer->wait_closed();
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: 1 MiB echoes through start_server and open_connection, TCP and Unix",
          "[network][streams-api]") {
  const bool unix_socket = GENERATE(false, true);
  this->loop->run_until_complete(stream_echo(*this->loop, unix_socket, 1 << 20));
}

// Writes `total` bytes in 256 KiB pieces, waiting for resume_writing while paused.
static Coro<void> produce(std::shared_ptr<Peer> p, std::size_t total) {
  std::size_t sent = 0;
  while (sent < total) {
    const std::size_t n = std::min<std::size_t>(256 * 1024, total - sent);
    p->transport->write(pattern(sent, n));
    sent += n;
    if (p->pauses > p->resumes) {
      p->resumed = p->loop.create_future<void>();
      co_await p->resumed;
    }
  }
}

static Coro<void> slow_reader(EventLoop& loop, std::size_t total) {
  auto server_side = std::make_shared<Peer>(loop);
  // The reader stops for 20 ms after every 512 KiB it gets.
  std::size_t next_pause = 512 * 1024;
  server_side->on_data = [&next_pause](Peer& p) {
    if (p.data.size() < next_pause) return;
    next_pause += 512 * 1024;
    p.transport->pause_reading();
    Ref<Transport> t = p.transport;
    p.loop.call_later(0.02, [t] {
      if (!t->is_closing()) t->resume_reading();
    });
  };
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  auto client = std::make_shared<Peer>(loop);
  Connection c = co_await loop.create_connection(give(client), "127.0.0.1", port_of(server));
  c.first->set_write_buffer_limits(64 * 1024, 16 * 1024);
  co_await produce(client, total);
  c.first->close();  // flushes, then connection_lost
  co_await client->lost;
  co_await server_side->lost;
  CHECK(server_side->data.size() == total);
  CHECK(server_side->data == pattern(0, total));
  CHECK(client->pauses >= 1);
  CHECK(client->resumes == client->pauses);
  CHECK(server_side->events.back() == "lost");
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: a slow reader pauses its writer; every byte arrives in order",
          "[network][flow]") {
  this->loop->run_until_complete(slow_reader(*this->loop, 16 << 20));
}

// A TCP connection whose server side does not read (yet).
struct StalledConnection {
  std::shared_ptr<Peer> server_side, client;
  Ref<Server> server;
  Connection c;
};

static Coro<void> stall(EventLoop& loop, StalledConnection& s) {
  s.server_side = std::make_shared<Peer>(loop);
  s.server = co_await loop.create_server(give(s.server_side), "127.0.0.1", 0);
  s.client = std::make_shared<Peer>(loop);
  s.c = co_await loop.create_connection(give(s.client), "127.0.0.1", port_of(s.server));
  while (!s.server_side->transport) co_await sleep(0.001);
  s.server_side->transport->pause_reading();
}

// More than the socket buffers between the two hold while nobody reads: the kernel's, or the
// virtual network's.
std::size_t more_than_buffered(EventLoop& loop) {
  return vnet::find_network(loop) ? std::size_t(1) << 20 : std::size_t(16) << 20;
}

// asyncio keeps one write buffer and sends as much of it as the socket takes: a burst of small
// writes made while the socket is full leaves in a few sends, not one per write(), in order, and
// a write_eof() made meanwhile goes out after all of it.
static Coro<void> burst_while_blocked(EventLoop& loop) {
  auto* net = vnet::find_network(loop);
  StalledConnection s;
  co_await stall(loop, s);
  std::shared_ptr<Peer>& server_side = s.server_side;
  std::shared_ptr<Peer>& client = s.client;
  Ref<Server>& server = s.server;
  Connection& c = s.c;
  server_side->keep_open = true;
  const std::size_t big = more_than_buffered(loop);
  const std::size_t pieces = 20000, piece = 10, total = big + pieces * piece;
  c.first->write(pattern(0, big));
  CHECK(c.first->get_write_buffer_size() > 0);
  const std::uint64_t sends_before = net ? net->stats().stream_sends : 0;
  for (std::size_t i = 0; i < pieces; ++i) c.first->write(pattern(big + i * piece, piece));
  c.first->write_eof();
  CHECK(c.first->get_write_buffer_size() >= pieces * piece);
  CHECK(client->pauses == 1);
  server_side->transport->resume_reading();
  while (server_side->events.back() != "eof") co_await sleep(0.001);
  CHECK(server_side->data.size() == total);
  CHECK(server_side->data == pattern(0, total));
  CHECK(c.first->get_write_buffer_size() == 0);
  CHECK(client->resumes == 1);
  // 1 MiB in 64 KiB segments, then the 200 KB of pieces: a few dozen sends (one per write()
  // would be over 20,000).
  if (net) CHECK(net->stats().stream_sends - sends_before < 200);
  server_side->transport->close();
  co_await client->lost;
  co_await server_side->lost;
  CHECK(joined(client->events) == "made;eof;lost;");
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: small writes made while the socket is full leave together, then the EOF",
          "[network][flow]") {
  this->loop->run_until_complete(burst_while_blocked(*this->loop));
}

// One write far over the high mark into a socket nobody reads: resume_writing comes once the
// buffer is at most the low mark. asyncio calls it as soon as it gets there; Eddy learns it when
// the endpoint has taken all but the last `low` bytes, which on the virtual network is exactly
// then (natively libuv may have sent the rest too before the loop hears of it).
static Coro<void> resume_at_low_mark(EventLoop& loop) {
  auto* net = vnet::find_network(loop);
  StalledConnection s;
  co_await stall(loop, s);
  std::shared_ptr<Peer>& server_side = s.server_side;
  std::shared_ptr<Peer>& client = s.client;
  Ref<Server>& server = s.server;
  Connection& c = s.c;
  const std::size_t total = more_than_buffered(loop);
  c.first->set_write_buffer_limits(64 * 1024, 16 * 1024);
  client->resumed = loop.create_future<void>();
  c.first->write(pattern(0, total));
  CHECK(client->pauses == 1);
  server_side->transport->resume_reading();
  co_await client->resumed;
  CHECK(client->resumes == 1);
  CHECK(client->buffered_at_resume <= 16 * 1024);
  if (net) CHECK(client->buffered_at_resume == 16 * 1024);
  while (server_side->data.size() < total) co_await sleep(0.001);
  CHECK(server_side->data == pattern(0, total));
  c.first->close();
  co_await client->lost;
  co_await server_side->lost;
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: one long write resumes its writer at the low mark", "[network][flow]") {
  this->loop->run_until_complete(resume_at_low_mark(*this->loop));
}

static Coro<void> half_close(EventLoop& loop) {
  auto server_side = std::make_shared<Peer>(loop);
  server_side->keep_open = true;  // answer after the client's EOF, then close
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  auto client = std::make_shared<Peer>(loop);  // closes once the answer ends
  Connection c = co_await loop.create_connection(give(client), "127.0.0.1", port_of(server));
  CHECK(c.first->can_write_eof());
  c.first->write("ques");
  const std::vector<std::string> rest_owned = strings("ti", "", "on");
  std::vector<std::string_view> rest(rest_owned.begin(), rest_owned.end());
  c.first->writelines(rest);  // joined, in order
  c.first->write_eof();
  // As asyncio: nothing may follow write_eof(), not even an empty list.
  CHECK_THROWS_AS(c.first->writelines(std::span<const std::string_view>()), RuntimeError);
  while (server_side->events.back() != "eof") co_await sleep(0.001);
  CHECK(server_side->data == "question");
  server_side->transport->write("answer");
  server_side->transport->close();
  co_await client->lost;
  co_await server_side->lost;
  CHECK(client->data == "answer");
  CHECK(joined(client->events) == "made;data;eof;lost;");
  CHECK(joined(server_side->events) == "made;data;eof;lost;");
  CHECK(!client->lost_exc);
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: write_eof half-closes; the other side still answers", "[network]") {
  this->loop->run_until_complete(half_close(*this->loop));
}

static Coro<void> abort_resets(EventLoop& loop) {
  StalledConnection s;
  co_await stall(loop, s);
  std::shared_ptr<Peer>& server_side = s.server_side;
  std::shared_ptr<Peer>& client = s.client;
  Ref<Server>& server = s.server;
  Connection& c = s.c;
  c.first->write("unread");
  co_await sleep(0.05);  // it reaches the server's receive buffer, where nobody reads it
  // Closing with unread data resets the connection (Linux sends RST), so the client loses it with
  // ECONNRESET; abort() itself reports no error on its own side, as in asyncio.
  server_side->transport->abort();
  co_await client->lost;
  co_await server_side->lost;
  CHECK(errno_of_exception(client->lost_exc) == ECONNRESET);
  CHECK(!server_side->lost_exc);
  CHECK(server_side->data.empty());
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: closing with unread data resets the connection: the peer gets ECONNRESET",
          "[network][faults]") {
  this->loop->run_until_complete(abort_resets(*this->loop));
}

static Coro<void> refused_and_in_use(EventLoop& loop) {
  auto nobody = std::make_shared<Peer>(loop);
  Ref<Server> server = co_await loop.create_server(give(nobody), "127.0.0.1", 0);
  const std::uint16_t port = port_of(server);
  int in_use = 0;
  try {
    co_await loop.create_server(give(nobody), "127.0.0.1", port);
  } catch (const std::system_error& e) {
    in_use = e.code().value();
  }
  CHECK(in_use == EADDRINUSE);
  server->close();
  co_await server->wait_closed();
  int refused = 0;
  try {
    co_await loop.create_connection(give(nobody), "127.0.0.1", port);
  } catch (const std::system_error& e) {
    refused = e.code().value();
  }
  CHECK(refused == ECONNREFUSED);
  int missing = 0;
  try {
    co_await loop.create_unix_connection(give(nobody), socket_path("nobody-here"));
  } catch (const std::system_error& e) {
    missing = e.code().value();
  }
  CHECK(missing == ENOENT);
}

LOOP_TEST("network: connection refused, address in use, missing Unix path", "[network][faults]") {
  this->loop->run_until_complete(refused_and_in_use(*this->loop));
}

// What a Unix path that cannot be used gives, as "errno text", or "ok".
template <class MakeCoro>
Coro<std::string> unix_outcome(MakeCoro make) {
  std::string outcome = "ok";
  try {
    Ref<Server> server = co_await make();
    server->close();
    co_await server->wait_closed();
  } catch (const std::system_error& e) {
    outcome = std::to_string(e.code().value()) + " " + e.what();
  }
  co_return outcome;
}

// The server closes at once (FIN); the client stays open after EOF and writes twice: the peer's
// reset to the first write is EPIPE (the socket had the FIN: Linux's CLOSE_WAIT), so
// connection_lost gets BrokenPipeError, as asyncio's does.
static Coro<std::string> write_after_peer_closed(EventLoop& loop) {
  ProtocolFactory closes = [l = &loop] {
    auto p = std::make_shared<Peer>(*l);
    p->on_made = [](Peer& self) { self.transport->close(); };
    return std::static_pointer_cast<BaseProtocol>(p);
  };
  Ref<Server> server = co_await loop.create_server(closes, "127.0.0.1", 0);
  auto client = std::make_shared<Peer>(loop);
  client->keep_open = true;
  Connection c = co_await loop.create_connection(give(client), "127.0.0.1", port_of(server));
  co_await sleep(0.05);
  c.first->write("first");
  co_await sleep(0.05);
  c.first->write("second");
  co_await sleep(0.05);
  c.first->close();
  co_await client->lost;
  server->close();
  co_await server->wait_closed();
  std::string outcome = "lost without an error";
  if (client->lost_exc) {
    try {
      std::rethrow_exception(client->lost_exc);
    } catch (const std::system_error& e) {
      outcome = std::to_string(e.code().value());
    }
  }
  co_return outcome;
}

// start_serving=false: bound, not listening, so a client is refused until start_serving(); what
// it wrote is never delivered to a server that was not listening.
static Coro<std::vector<std::string>> serving_later(EventLoop& loop) {
  std::vector<std::string> trace;
  auto server_side = std::make_shared<Peer>(loop);
  ServerOptions not_yet;
  not_yet.start_serving = false;
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0, not_yet);
  auto early = std::make_shared<Peer>(loop);
  try {
    co_await loop.create_connection(give(early), "127.0.0.1", port_of(server));
    trace.push_back("early connected");
  } catch (const std::system_error& e) {
    trace.push_back("early " + std::to_string(e.code().value()));
  }
  co_await server->start_serving();
  auto late = std::make_shared<Peer>(loop);
  Connection c = co_await loop.create_connection(give(late), "127.0.0.1", port_of(server));
  c.first->write("hello");
  while (server_side->data.size() < 5) co_await sleep(0.001);
  trace.push_back("server got " + server_side->data);
  c.first->close();
  co_await late->lost;
  server->close();
  co_await server->wait_closed();
  co_return trace;
}

LOOP_TEST("network: a server made with start_serving=false refuses until it serves",
          "[network][server]") {
  if (!this->loop->capabilities().supports("create_server")) SKIP("no servers on this loop");
  CHECK(this->loop->run_until_complete(serving_later(*this->loop)) ==
        std::vector<std::string>{"early " + std::to_string(ECONNREFUSED), "server got hello"});
}

// Six clients; the second leaves, then the sixth (which took the second's place in the server's
// list), then the first. The server counts what is left, and close_clients() ends exactly the
// three still connected.
static Coro<std::string> clients_leave_in_any_order(EventLoop& loop) {
  std::vector<std::shared_ptr<Peer>> accepted;
  ProtocolFactory keep = [&loop, &accepted] {
    accepted.push_back(std::make_shared<Peer>(loop));
    return std::static_pointer_cast<BaseProtocol>(accepted.back());
  };
  Ref<Server> server = co_await loop.create_server(keep, "127.0.0.1", 0);
  std::vector<std::shared_ptr<Peer>> clients;
  std::vector<Ref<Transport>> ends;
  for (std::size_t i = 0; i < 6; ++i) {
    clients.push_back(std::make_shared<Peer>(loop));
    Connection c =
        co_await loop.create_connection(give(clients.back()), "127.0.0.1", port_of(server));
    ends.push_back(c.first);
    while (server->active_connections() < i + 1) co_await sleep(0.001);
  }
  std::string trace;
  const std::size_t leaving_order[] = {1, 5, 0};
  for (std::size_t leaving : leaving_order) {
    ends[leaving]->close();
    co_await clients[leaving]->lost;
    co_await accepted[leaving]->lost;
    trace += std::to_string(server->active_connections()) + " ";
  }
  server->close();
  server->close_clients();
  for (std::size_t i = 2; i <= 4; ++i) co_await clients[i]->lost;
  co_await wait_for(server->wait_closed(), 5.0);  // a connection it lost count of fails it here
  for (std::size_t i = 0; i < 6; ++i) {
    trace += "| " + joined(accepted[i]->events) + " " + joined(clients[i]->events);
    ends[i].reset();
  }
  co_return trace;
}

LOOP_TEST("network: a server's clients leave in any order; close_clients ends the rest",
          "[network][server]") {
  if (!this->loop->capabilities().supports("create_server")) SKIP("no servers on this loop");
  // Clients that left themselves: the server saw their EOF. The rest: closed by the server.
  const std::string left = "| made;eof;lost; made;lost;", ended = "| made;lost; made;eof;lost;";
  CHECK(this->loop->run_until_complete(clients_leave_in_any_order(*this->loop)) ==
        "5 4 3 " + left + left + ended + ended + ended + left);
}

LOOP_TEST("network: writing to a peer that closed ends in EPIPE (BrokenPipeError)",
          "[network][faults]") {
  if (!this->loop->capabilities().supports("create_server")) SKIP("no servers on this loop");
  CHECK(this->loop->run_until_complete(write_after_peer_closed(*this->loop)) ==
        std::to_string(EPIPE));
}

static Coro<void> unusable_unix_paths(EventLoop& loop) {
  auto nobody = std::make_shared<Peer>(loop);
  // 123 characters: sockaddr_un holds 107 and the NUL. The first 107 must not be bound or reached
  // instead.
  const std::string long_path = "/tmp/" + std::string(113, 'x') + ".sock";
  REQUIRE(long_path.size() == 123);
  auto serve_long = [&] { return loop.create_unix_server(give(nobody), long_path); };
  std::string served = co_await unix_outcome(serve_long);
  CHECK(served.starts_with(std::to_string(ENAMETOOLONG) + " AF_UNIX path too long"));
  std::string reached = "ok";
  try {
    co_await loop.create_unix_connection(give(nobody), long_path);
  } catch (const std::system_error& e) {
    reached = std::to_string(e.code().value()) + " " + e.what();
  }
  CHECK(reached.starts_with(std::to_string(ENAMETOOLONG) + " AF_UNIX path too long"));
  if (!vnet::find_network(loop)) {
    // Nothing was created under the cut name.
    CHECK(::access(long_path.substr(0, 107).c_str(), F_OK) != 0);
    // A directory that does not exist: ENOENT, as the kernel and Python say (libuv says EACCES).
    const std::string in_missing_dir =
        "/tmp/eddy-no-such-dir-" + std::to_string(::getpid()) + "/s.sock";
    auto serve_missing = [&] { return loop.create_unix_server(give(nobody), in_missing_dir); };
    std::string missing_dir = co_await unix_outcome(serve_missing);
    CHECK(missing_dir.starts_with(std::to_string(ENOENT) + " "));
  }
}

// asyncio's create_unix_server removes a socket file already at its path before binding, even
// one a live server listens on: the new server gets the connections from then on.
static Coro<void> unix_path_taken_over(EventLoop& loop, std::vector<std::string>* served) {
  const std::string path = socket_path("taken-over");
  auto tagging = [&loop, served](std::string tag) -> ProtocolFactory {
    return [&loop, served, tag] {
      served->push_back(tag);
      return std::static_pointer_cast<BaseProtocol>(std::make_shared<Peer>(loop));
    };
  };
  Ref<Server> first = co_await loop.create_unix_server(tagging("first"), path);
  auto c1 = std::make_shared<Peer>(loop);
  Connection one = co_await loop.create_unix_connection(give(c1), path);
  while (served->size() < 1) co_await sleep(0.001);
  Ref<Server> second = co_await loop.create_unix_server(tagging("second"), path);
  auto c2 = std::make_shared<Peer>(loop);
  Connection two = co_await loop.create_unix_connection(give(c2), path);
  while (served->size() < 2) co_await sleep(0.001);
  one.first->close();
  two.first->close();
  co_await c1->lost;
  co_await c2->lost;
  second->close();
  co_await second->wait_closed();
  first->close();
  co_await first->wait_closed();
}

LOOP_TEST("network: create_unix_server takes over a path a live server uses, as asyncio",
          "[network][unix]") {
  if (!this->loop->capabilities().supports("create_unix_server")) SKIP("no Unix sockets here");
  std::vector<std::string> served;
  this->loop->run_until_complete(unix_path_taken_over(*this->loop, &served));
  CHECK(served == std::vector<std::string>{"first", "second"});
}

LOOP_TEST("network: a Unix path too long for sockaddr_un is refused, not cut short",
          "[network][faults][unix]") {
  if (!this->loop->capabilities().supports("create_unix_server")) SKIP("no Unix sockets here");
  this->loop->run_until_complete(unusable_unix_paths(*this->loop));
}

// ---- Addresses, as asyncio's base_events handles them -------------------------------------------

namespace {
// What a failed call raised: its text and errno (0: Python's errno None), or an ExceptionGroup.
struct Failure {
  std::string what;
  int code = -1;
  std::size_t group_size = 0;  // > 0: an ExceptionGroup of that many
};
}  // namespace

static Coro<void> connect_failure(EventLoop& loop, std::string host, std::uint16_t port,
                                  ConnectionOptions options, Failure* out) {
  auto nobody = std::make_shared<Peer>(loop);
  try {
    Connection c = co_await loop.create_connection(give(nobody), host, port, options);
    out->what = "connected";
    c.first->close();
  } catch (const ExceptionGroup& g) {
    out->group_size = g.exceptions().size();
    out->what = g.what();
  } catch (const std::system_error& e) {
    out->what = e.what();
    out->code = e.code().value();
  }
}

// Whether `text` names `items` in this order.
static bool names_in_order(const std::string& text, const std::vector<std::string>& items) {
  std::size_t at = 0;
  for (const std::string& item : items) {
    at = text.find(item, at);
    if (at == std::string::npos) return false;
    at += item.size();
  }
  return true;
}

LOOP_TEST("create_connection: interleave orders the addresses as asyncio; every failure is named",
          "[network][vnet][dns]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  for (const char* address :
       {"10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "fd00::21", "fd00::22"}) {
    net.add_host("multi.example", address);
    net.set_link(address, {.latency = 0.001});  // known to the network: refused, not foreign
  }
  Failure two, one, grouped;
  this->loop->run_until_complete(
      connect_failure(*this->loop, "multi.example", 80, {.interleave = 2}, &two));
  // asyncio's _interleave_addrinfos: one of the first family ahead, then one of each in turn.
  CHECK(two.code == 0);  // the errors differ: one OSError with errno None naming them all
  CHECK(two.what.rfind("Multiple exceptions: Connect call failed 10.0.0.11:80", 0) == 0);
  CHECK(names_in_order(two.what, {"10.0.0.11:80", "10.0.0.12:80", "[fd00::21]:80", "10.0.0.13:80",
                                  "[fd00::22]:80", "10.0.0.14:80"}));
  this->loop->run_until_complete(
      connect_failure(*this->loop, "multi.example", 80, {.interleave = 1}, &one));
  CHECK(names_in_order(one.what, {"10.0.0.11:80", "[fd00::21]:80", "10.0.0.12:80", "[fd00::22]:80",
                                  "10.0.0.13:80", "10.0.0.14:80"}));
  this->loop->run_until_complete(
      connect_failure(*this->loop, "multi.example", 80, {.all_errors = true}, &grouped));
  CHECK(grouped.group_size == 6);
}

static Coro<void> local_addresses(EventLoop& loop, std::string two_family_name) {
  auto server_side = std::make_shared<Peer>(loop);
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  const std::uint16_t port = port_of(server);
  // The local name gives ::1 first: each attempt binds the local address of its own family.
  auto client = std::make_shared<Peer>(loop);
  Connection c = co_await loop.create_connection(
      give(client), "127.0.0.1", port, {.local_addr = SocketAddress::ip(two_family_name, 0)});
  CHECK(std::any_cast<SocketAddress>(c.first->get_extra_info("sockname")).host() == "127.0.0.1");
  c.first->close();
  co_await client->lost;

  Failure in_use, no_family;
  co_await connect_failure(loop, "127.0.0.1", port,
                           {.local_addr = SocketAddress::ip("127.0.0.1", port)}, &in_use);
  CHECK(in_use.code == EADDRINUSE);
  CHECK(in_use.what.rfind(
            "error while attempting to bind on address 127.0.0.1:" + std::to_string(port), 0) == 0);
  co_await connect_failure(loop, "127.0.0.1", port, {.local_addr = SocketAddress::ip("::1", 0)},
                           &no_family);
  CHECK(no_family.code == 0);
  CHECK(no_family.what == "no matching local address with family=AF_INET found");

  std::string rejected;
  try {
    co_await loop.create_connection(give(client), "127.0.0.1", port,
                                    {.ssl_handshake_timeout = 5.0});
  } catch (const ValueError& e) {
    rejected = e.what();
  }
  CHECK(rejected == "ssl_handshake_timeout is only meaningful with ssl");
  rejected.clear();
  try {
    co_await loop.create_server(give(client), "127.0.0.1", 0, {.ssl_handshake_timeout = 5.0});
  } catch (const ValueError& e) {
    rejected = e.what();
  }
  CHECK(rejected == "ssl_handshake_timeout is only meaningful with ssl");

  int no_name = 0;
  try {
    co_await loop.getaddrinfo("", "");
  } catch (const std::system_error& e) {
    no_name = e.code().value();
  }
  CHECK(no_name == -2);  // EAI_NONAME, as the C library answers

  if (!vnet::find_network(loop)) {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: asyncio skips what cannot be
    // assigned, and fails only when nothing could be bound.
    std::vector<std::string> hosts = {"127.0.0.1", "192.0.2.1"};
    Ref<Server> partial = co_await loop.create_server(give(server_side), hosts, 0);
    CHECK(partial->sockets().size() == 1);
    partial->close();
    co_await partial->wait_closed();
    std::vector<std::string> unavailable = {"192.0.2.1"};
    Failure none;
    try {
      co_await loop.create_server(give(server_side), unavailable, 0);
    } catch (const std::system_error& e) {
      none.what = e.what();
      none.code = e.code().value();
    }
    CHECK(none.code == 0);
    CHECK(none.what == "could not bind on any address out of [192.0.2.1:0]");
  }
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST(
    "create_connection: local addresses by family, bind errors named; unavailable server addresses "
    "skipped",
    "[network][faults]") {
  std::string name = "localhost";
  if (vnet::Network* net = vnet::find_network(*this->loop)) {
    name = "local.example";
    net->add_host(name, "::1");
    net->add_host(name, "127.0.0.1");
  }
  this->loop->run_until_complete(local_addresses(*this->loop, name));
}

// ---- Datagrams -------------------------------------------------------------------------------

namespace {
struct Datagrams : DatagramProtocol {
  explicit Datagrams(EventLoop& loop) : got(loop.create_future<void>()) {}
  Ref<DatagramTransport> transport;
  std::vector<std::pair<std::string, SocketAddress>> received;
  std::vector<int> errors;
  bool echo = false;
  std::size_t want = 1;
  Future<void> got;
  void connection_made(Ref<DatagramTransport> t) override { transport = t; }
  void datagram_received(std::string_view data, const SocketAddress& from) override {
    received.emplace_back(std::string(data), from);
    if (echo) transport->sendto(data, from);
    if (received.size() >= want && !got.done()) got.set_result();
  }
  void error_received(std::exception_ptr e) override { errors.push_back(errno_of_exception(e)); }
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

template <class P>
DatagramProtocolFactory give_datagrams(std::shared_ptr<P> p) {
  return [p] { return std::static_pointer_cast<DatagramProtocol>(p); };
}
}  // namespace

// UDP, or Unix datagram sockets bound to paths (a client needs a path of its own for replies).
static Coro<void> datagram_echo(EventLoop& loop, bool unix_socket) {
  auto server_side = std::make_shared<Datagrams>(loop);
  server_side->echo = true;
  server_side->want = 3;
  DatagramEndpointOptions so;
  so.local_addr = unix_socket ? SocketAddress::unix_path(socket_path("dgram-server"))
                              : SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection s = co_await loop.create_datagram_endpoint(give_datagrams(server_side), so);
  auto where = std::any_cast<SocketAddress>(s.first->get_extra_info("sockname"));
  if (unix_socket)
    CHECK(where == *so.local_addr);
  else
    CHECK(where.port != 0);
  auto client = std::make_shared<Datagrams>(loop);
  client->want = 3;
  DatagramEndpointOptions co;
  co.remote_addr = where;
  if (unix_socket) co.local_addr = SocketAddress::unix_path(socket_path("dgram-client"));
  DatagramConnection c = co_await loop.create_datagram_endpoint(give_datagrams(client), co);
  CHECK(std::any_cast<SocketAddress>(c.first->get_extra_info("peername")) == where);
  c.first->sendto("one");
  c.first->sendto("two");
  c.first->sendto(std::string(1000, 'x'));
  co_await client->got;
  REQUIRE(client->received.size() == 3);
  CHECK(client->received[0].first == "one");
  CHECK(client->received[1].first == "two");
  CHECK(client->received[2].first.size() == 1000);
  CHECK(client->received[0].second == where);
  auto client_address = std::any_cast<SocketAddress>(c.first->get_extra_info("sockname"));
  CHECK(server_side->received[0].second == client_address);
  c.first->close();
  s.first->close();
  co_await sleep(0);
  if (unix_socket && !vnet::find_network(loop)) {
    ::unlink(socket_path("dgram-server").c_str());
    ::unlink(socket_path("dgram-client").c_str());
  }
}

LOOP_TEST("network: datagrams echo whole and in order, UDP and Unix", "[network][datagrams]") {
  const bool unix_socket = GENERATE(false, true);
  this->loop->run_until_complete(datagram_echo(*this->loop, unix_socket));
}

// asyncio's sendto after close(): an unconnected endpoint still sends until connection_lost (it
// has its socket until then); a connected one drops at once. After connection_lost both drop.
static Coro<void> datagrams_after_close(EventLoop& loop) {
  auto receiver = std::make_shared<Datagrams>(loop);
  receiver->want = 3;
  DatagramConnection r = co_await loop.create_datagram_endpoint(
      give_datagrams(receiver), {.local_addr = SocketAddress::ip("127.0.0.1", 0)});
  auto where = std::any_cast<SocketAddress>(r.first->get_extra_info("sockname"));
  DatagramEndpointOptions unconnected_options;
  unconnected_options.local_addr = SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection u = co_await loop.create_datagram_endpoint(
      give_datagrams(std::make_shared<Datagrams>(loop)), unconnected_options);
  DatagramEndpointOptions connected_options;
  connected_options.remote_addr = where;
  DatagramConnection c = co_await loop.create_datagram_endpoint(
      give_datagrams(std::make_shared<Datagrams>(loop)), connected_options);
  u.first->sendto("before close", where);
  u.first->close();
  u.first->sendto("unconnected, after close", where);
  c.first->close();
  c.first->sendto("connected, after close");
  co_await sleep(0);
  co_await sleep(0);  // connection_lost has run for both
  u.first->sendto("unconnected, after connection_lost", where);
  c.first->sendto("connected, after connection_lost");
  DatagramConnection last = co_await loop.create_datagram_endpoint(
      give_datagrams(std::make_shared<Datagrams>(loop)), connected_options);
  last.first->sendto("last");
  co_await wait_for(receiver->got, 5.0);
  std::vector<std::string> texts;
  for (const auto& got : receiver->received) texts.push_back(got.first);
  CHECK(texts == std::vector<std::string>{"before close", "unconnected, after close", "last"});
  CHECK(u.first->is_closing());
  CHECK(u.first->get_write_buffer_size() == 0);
  last.first->close();
  r.first->close();
  co_await sleep(0);
}

LOOP_TEST(
    "network: datagrams sent after close(): unconnected until connection_lost, connected never",
    "[network][datagrams]") {
  this->loop->run_until_complete(datagrams_after_close(*this->loop));
}

// A stream socket, on the loop's own network.
static int stream_socket(EventLoop& loop) {
  if (vnet::Network* net = vnet::find_network(loop))
    return net->socket(AddressFamily::inet, SocketKind::stream);
#ifndef __EMSCRIPTEN__
  return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
  return -1;
#endif
}

static void close_socket(EventLoop& loop, int fd) {
  if (vnet::Network* net = vnet::find_network(loop))
    net->close(fd);
  else
    ::close(fd);
}

static Coro<void> datagram_addresses(EventLoop& loop) {
  auto receiver = std::make_shared<Datagrams>(loop);
  DatagramConnection r = co_await loop.create_datagram_endpoint(
      give_datagrams(receiver), {.local_addr = SocketAddress::ip("127.0.0.1", 0)});
  const auto receiver_address = std::any_cast<SocketAddress>(r.first->get_extra_info("sockname"));

  // allow_broadcast with remote_addr: sendto's default address, but the socket is not connected
  // (asyncio), so a datagram from any other address still arrives.
  auto caster = std::make_shared<Datagrams>(loop);
  DatagramConnection b = co_await loop.create_datagram_endpoint(
      give_datagrams(caster), {.local_addr = SocketAddress::ip("127.0.0.1", 0),
                               .remote_addr = receiver_address,
                               .allow_broadcast = true});
  CHECK_FALSE(b.first->get_extra_info("peername").has_value());
  b.first->sendto("to the default address");
  co_await receiver->got;
  CHECK(receiver->received.at(0).first == "to the default address");
  auto third = std::make_shared<Datagrams>(loop);
  DatagramConnection t = co_await loop.create_datagram_endpoint(
      give_datagrams(third), {.local_addr = SocketAddress::ip("127.0.0.1", 0)});
  t.first->sendto("from a third address",
                  std::any_cast<SocketAddress>(b.first->get_extra_info("sockname")));
  co_await caster->got;
  CHECK(caster->received.at(0).first == "from a third address");

  // A host name is resolved by sendto itself, as Python's socket.sendto does.
  receiver->want = 2;
  receiver->got = loop.create_future<void>();
  t.first->sendto("by name", SocketAddress::ip("localhost", receiver_address.port));
  co_await receiver->got;
  CHECK(receiver->received.at(1).first == "by name");
  CHECK(third->errors.empty());

  // Write-buffer limits, as on stream transports.
  CHECK(t.first->get_write_buffer_limits() == std::pair<std::size_t, std::size_t>(16384, 65536));
  t.first->set_write_buffer_limits(4096, 1024);
  CHECK(t.first->get_write_buffer_limits() == std::pair<std::size_t, std::size_t>(1024, 4096));
  CHECK_THROWS_AS(t.first->set_write_buffer_limits(10, 20), ValueError);

  // asyncio's argument checks.
  std::string error;
  try {
    co_await loop.create_datagram_endpoint(give_datagrams(third),
                                           {.local_addr = SocketAddress::ip("127.0.0.1", 0),
                                            .remote_addr = SocketAddress::ip("::1", 9)});
  } catch (const ValueError& e) {
    error = e.what();
  }
  CHECK(error == "can not get address information");  // no family both addresses have
  const int stream_fd = stream_socket(loop);
  error.clear();
  try {
    co_await loop.create_datagram_endpoint(give_datagrams(third), {.sock = stream_fd});
  } catch (const ValueError& e) {
    error = e.what();
  }
  CHECK(error.rfind("A datagram socket was expected", 0) == 0);
  error.clear();
  try {
    co_await loop.create_datagram_endpoint(give_datagrams(third),
                                           {.allow_broadcast = true, .sock = stream_fd});
  } catch (const ValueError& e) {
    error = e.what();
  }
  CHECK(error ==
        "socket modifier keyword arguments can not be used when sock is specified. "
        "(allow_broadcast=True)");
  close_socket(loop, stream_fd);
  r.first->close();
  b.first->close();
  t.first->close();
  co_await sleep(0);
}

LOOP_TEST(
    "network: datagram endpoints: broadcast is not connected, sendto resolves names, asyncio's "
    "checks",
    "[network][datagrams]") {
  this->loop->run_until_complete(datagram_addresses(*this->loop));
}

// ---- connection_made raising ------------------------------------------------------------------

namespace {
struct RaisingPeer : Peer {
  using Peer::Peer;
  void connection_made(Ref<Transport> t) override {
    Peer::connection_made(t);
    throw ValueError("boom in connection_made");
  }
};
struct RaisingDatagrams : Datagrams {
  using Datagrams::Datagrams;
  void connection_made(Ref<DatagramTransport> t) override {
    Datagrams::connection_made(t);
    throw ValueError("boom in connection_made");
  }
};
}  // namespace

static Coro<void> raise_in_connection_made(EventLoop& loop,
                                           std::shared_ptr<RaisingPeer> server_side,
                                           std::shared_ptr<RaisingPeer> client,
                                           std::shared_ptr<RaisingDatagrams> datagrams) {
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  Connection c =
      co_await wait_for(loop.create_connection(give(client), "127.0.0.1", port_of(server)), 5.0);
  for (int i = 0; i < 100 && !server_side->transport; ++i) co_await sleep(0.001);
  REQUIRE(server_side->transport);
  CHECK(c.first->is_reading());
  CHECK(server_side->transport->is_reading());
  server_side->transport->write("to client");
  client->transport->write("to server");
  for (int i = 0; i < 500 && (client->data.size() < 9 || server_side->data.size() < 9); ++i)
    co_await sleep(0.001);
  CHECK(client->data == "to client");
  CHECK(server_side->data == "to server");
  c.first->close();
  co_await client->lost;
  co_await server_side->lost;
  server->close();
  co_await server->wait_closed();

  DatagramEndpointOptions o;
  o.local_addr = SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection d =
      co_await wait_for(loop.create_datagram_endpoint(give_datagrams(datagrams), o), 5.0);
  auto where = std::any_cast<SocketAddress>(d.first->get_extra_info("sockname"));
  d.first->sendto("to myself", where);
  co_await wait_for(datagrams->got, 5.0);
  CHECK(datagrams->received.at(0).first == "to myself");
  d.first->close();
  co_await sleep(0);
}

// asyncio calls connection_made in a callback of its own: when it raises, the loop reports it and
// the transport carries on: create_connection returns, and both sides read.
LOOP_TEST("network: connection_made raising is reported; the connection still works",
          "[network][faults]") {
  auto server_side = std::make_shared<RaisingPeer>(*this->loop);
  auto client = std::make_shared<RaisingPeer>(*this->loop);
  auto datagrams = std::make_shared<RaisingDatagrams>(*this->loop);
  this->loop->run_until_complete(
      raise_in_connection_made(*this->loop, server_side, client, datagrams));
  CHECK(this->reported.size() == 3);
  for (const auto& r : this->reported) {
    CHECK(r.message == "Exception in callback protocol.connection_made()");
    CHECK_THROWS_MATCHES(std::rethrow_exception(r.exception), ValueError,
                         Catch::Matchers::Message("boom in connection_made"));
  }
  this->reported.clear();
}

// asyncio: datagram_received raising is an exception in the transport's read callback, which the
// loop reports; the endpoint stays open and the next datagram arrives.
namespace {
struct FirstDatagramRaises : Datagrams {
  using Datagrams::Datagrams;
  void datagram_received(std::string_view data, const SocketAddress& from) override {
    Datagrams::datagram_received(data, from);
    if (received.size() == 1) throw ValueError("boom in datagram_received");
  }
};
}  // namespace

static Coro<void> raise_in_datagram_received(EventLoop& loop,
                                             std::shared_ptr<FirstDatagramRaises> receiver) {
  receiver->want = 2;
  DatagramEndpointOptions o;
  o.local_addr = SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection d = co_await loop.create_datagram_endpoint(give_datagrams(receiver), o);
  auto where = std::any_cast<SocketAddress>(d.first->get_extra_info("sockname"));
  d.first->sendto("first", where);
  for (int i = 0; i < 500 && receiver->received.empty(); ++i) co_await sleep(0.001);
  CHECK_FALSE(d.first->is_closing());
  d.first->sendto("second", where);
  co_await wait_for(receiver->got, 5.0);
  CHECK(receiver->received.at(1).first == "second");
  d.first->close();
  co_await sleep(0);
}

LOOP_TEST("network: datagram_received raising is reported; the endpoint stays open",
          "[network][datagrams][faults]") {
  auto receiver = std::make_shared<FirstDatagramRaises>(*this->loop);
  this->loop->run_until_complete(raise_in_datagram_received(*this->loop, receiver));
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].message == "Exception in callback protocol.datagram_received()");
  this->reported.clear();
}

// asyncio's transport drops its protocol after connection_lost. A protocol that keeps its
// transport to the end (no reset in connection_lost) must not keep both alive: the fixture
// checks that no transport outlives the test.
namespace {
struct Clingy : Protocol {
  explicit Clingy(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Ref<Transport> transport;  // never released
  Future<void> lost;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void connection_lost(std::exception_ptr) override { lost.set_result(); }
};
}  // namespace

static Coro<void> clingy_connection(EventLoop& loop, Ref<Transport>* kept) {
  auto server_side = std::make_shared<Peer>(loop);
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  auto clingy = std::make_shared<Clingy>(loop);
  Connection c = co_await loop.create_connection(give(clingy), "127.0.0.1", port_of(server));
  CHECK(c.first->get_protocol() == clingy);
  c.first->close();
  Future<void> lost = clingy->lost;
  co_await lost;
  co_await server_side->lost;
  co_await sleep(0);
  *kept = c.first;
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("network: after connection_lost the transport lets its protocol go",
          "[network][lifecycle]") {
  Ref<Transport> kept;
  this->loop->run_until_complete(clingy_connection(*this->loop, &kept));
  CHECK(kept->get_protocol() == nullptr);
}

// ---- A BufferedProtocol that refuses a buffer ----------------------------------------------

namespace {
struct BufferRefuser : BufferedProtocol {
  BufferRefuser(EventLoop& loop, bool throws) : lost(loop.create_future<void>()), throws(throws) {}
  Ref<Transport> transport;
  Future<void> lost;
  std::exception_ptr lost_exc;
  bool throws;
  int updates = 0;
  void connection_made(Ref<Transport> t) override { transport = t; }
  std::span<char> get_buffer(std::size_t) override {
    if (throws) throw ValueError("no buffer today");
    return {};
  }
  void buffer_updated(std::size_t) override { ++updates; }
  void connection_lost(std::exception_ptr e) override {
    lost_exc = e;
    transport.reset();
    lost.set_result();
  }
};
}  // namespace

static Coro<void> refuse_buffer(EventLoop& loop, std::shared_ptr<BufferRefuser> client) {
  auto server_side = std::make_shared<Peer>(loop);
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  Connection c = co_await loop.create_connection(give(client), "127.0.0.1", port_of(server));
  for (int i = 0; i < 100 && !server_side->transport; ++i) co_await sleep(0.001);
  REQUIRE(server_side->transport);
  server_side->transport->write("hello");
  co_await client->lost;
  co_await server_side->lost;
  server->close();
  co_await server->wait_closed();
}

// asyncio: get_buffer() raising, or giving an empty buffer (RuntimeError), is a fatal error of the
// transport: reported, then connection_lost with that exception. (Natively the refusal happens
// inside libuv's buffer callback, where closing the stream at once used to crash.)
LOOP_TEST("network: a BufferedProtocol whose get_buffer fails loses the connection with that error",
          "[network][buffered]") {
  const bool throws = GENERATE(true, false);
  auto client = std::make_shared<BufferRefuser>(*this->loop, throws);
  this->loop->run_until_complete(refuse_buffer(*this->loop, client));
  CHECK(client->updates == 0);
  REQUIRE(this->reported.size() == 1);
  CHECK(this->reported[0].message == "Fatal error: protocol.get_buffer() call failed.");
  CHECK(this->reported[0].exception == client->lost_exc);
  if (throws)
    CHECK_THROWS_MATCHES(std::rethrow_exception(client->lost_exc), ValueError,
                         Catch::Matchers::Message("no buffer today"));
  else
    CHECK_THROWS_MATCHES(std::rethrow_exception(client->lost_exc), RuntimeError,
                         Catch::Matchers::Message("get_buffer() returned an empty buffer"));
  this->reported.clear();
}

// ---- Closing the loop with everything still open -------------------------------------------

namespace {
struct LeftOpen {
  Ref<Server> server;
  Connection client;
  DatagramConnection datagrams;
  std::vector<int> fds;  // the sockets' descriptors, where they are the system's
};

void note_socket(LeftOpen& left, const BaseTransport& t) {
  std::any fd = t.get_extra_info("socket");
  if (fd.has_value()) left.fds.push_back(std::any_cast<int>(fd));
}
}  // namespace

static Coro<void> open_and_leave(EventLoop& loop, std::shared_ptr<Peer> server_side,
                                 std::shared_ptr<Peer> client, std::shared_ptr<Datagrams> datagrams,
                                 LeftOpen& left) {
  left.server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  left.client = co_await loop.create_connection(give(client), "127.0.0.1", port_of(left.server));
  DatagramEndpointOptions o;
  o.local_addr = SocketAddress::ip("127.0.0.1", 0);
  left.datagrams = co_await loop.create_datagram_endpoint(give_datagrams(datagrams), o);
  for (int i = 0; i < 100 && !server_side->transport; ++i) co_await sleep(0.001);
  REQUIRE(server_side->transport);
  client->transport->write("left in flight");
  note_socket(left, *client->transport);
  note_socket(left, *server_side->transport);
  note_socket(left, *datagrams->transport);
  left.fds.push_back(left.server->sockets()[0].fd);
}

// asyncio leaves what is still open at loop.close() to the garbage collector, which closes the
// sockets. Eddy releases them in close() itself: close() returns at once, no protocol callback
// runs afterwards, transports the program still holds report closing, and nothing is left behind
// (the fixture checks that no transport outlives the references dropped below).
LOOP_TEST("network: closing the loop releases the servers and transports still open",
          "[network][lifecycle]") {
  auto server_side = std::make_shared<Peer>(*this->loop);
  auto client = std::make_shared<Peer>(*this->loop);
  auto datagrams = std::make_shared<Datagrams>(*this->loop);
  LeftOpen left;
  this->loop->run_until_complete(open_and_leave(*this->loop, server_side, client, datagrams, left));
  this->loop->close();
  CHECK(this->loop->stats().live_transports == 3);  // held by the protocols and by `left`
  CHECK(client->events == strings("made"));
  CHECK(server_side->events.size() <= 2);  // made, and data if it arrived before close
  CHECK(left.client.first->is_closing());
  CHECK(left.datagrams.first->is_closing());
  CHECK(server_side->transport->is_closing());
  CHECK_FALSE(left.server->is_serving());
  CHECK(left.server->sockets().empty());
  CHECK(left.client.first->get_write_buffer_size() == 0);
  left.client.first->write("after close");  // dropped, as on a lost connection
  left.client.first->close();
  left.datagrams.first->abort();
#ifndef __EMSCRIPTEN__
  if constexpr (!TestType::virtual_time) {
    CHECK(left.fds.size() == 4);
    for (int fd : left.fds) {
      errno = 0;
      CHECK(::fcntl(fd, F_GETFD) == -1);
      CHECK(errno == EBADF);
    }
  }
#endif
  left = {};
  client->transport.reset();
  server_side->transport.reset();
  datagrams->transport.reset();
}

// ---- Raw sockets: sock_* and add_reader ------------------------------------------------------

namespace {
// socket.socket(...) on whichever network this loop uses.
struct RawSockets {
  EventLoop& loop;
  vnet::Network* net = vnet::find_network(loop);

  int open(SocketKind kind, AddressFamily family = AddressFamily::inet) {
    if (net) return net->socket(family, kind);
#ifndef __EMSCRIPTEN__
    const int fd =
        ::socket(family == AddressFamily::inet6 ? AF_INET6 : AF_INET,
                 (kind == SocketKind::datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
    REQUIRE(fd >= 0);
    return fd;
#else
    FAIL("no network");
    return -1;
#endif
  }
  // Binds to 127.0.0.1:0 and listens (streams); returns the port.
  std::uint16_t listen_any(int fd, bool listen = true) {
    if (net) {
      net->bind(fd, SocketAddress::ip("127.0.0.1", 0));
      if (listen) net->listen(fd, 10);
      return net->getsockname(fd).port;
    }
#ifndef __EMSCRIPTEN__
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (listen) REQUIRE(::listen(fd, 10) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
#else
    return 0;
#endif
  }
  void close(int fd) {
    if (net) net->close(fd);
#ifndef __EMSCRIPTEN__
    else
      ::close(fd);
#endif
  }
};

// A stream connection made with sock_accept and sock_connect on 127.0.0.1.
struct RawConnection {
  int listener, client, server;
  SocketAddress peer;  // the client, as accepted
};
Coro<RawConnection> raw_connection(EventLoop& loop, RawSockets& raw) {
  RawConnection c;
  c.listener = raw.open(SocketKind::stream);
  const std::uint16_t port = raw.listen_any(c.listener);
  c.client = raw.open(SocketKind::stream);
  Task<std::pair<int, SocketAddress>> accepting = loop.create_task(loop.sock_accept(c.listener));
  co_await loop.sock_connect(c.client, SocketAddress::ip("127.0.0.1", port));
  std::pair<int, SocketAddress> accepted = co_await accepting;
  c.server = accepted.first;
  c.peer = accepted.second;
  co_return c;
}

// sock_recv until `n` bytes came.
Coro<std::string> recv_exactly(EventLoop& loop, int fd, std::size_t n) {
  std::string got;
  while (got.size() < n) {
    std::string piece = co_await loop.sock_recv(fd, std::min<std::size_t>(65536, n - got.size()));
    REQUIRE(!piece.empty());
    got += piece;
  }
  co_return got;
}
}  // namespace

// As asyncio, sock_connect resolves the address for the socket's family: an IPv4 address on an
// IPv6 socket is gaierror EAI_ADDRFAMILY (-9) before anything connects, and on the virtual
// network (where "localhost" has both addresses) "localhost" on an IPv6 socket is ::1.
static Coro<std::vector<std::string>> sock_connect_by_socket_family(EventLoop& loop) {
  std::vector<std::string> log;
  vnet::Network* net = vnet::find_network(loop);
  RawSockets raw{loop};
  auto open6 = [&] { return raw.open(SocketKind::stream, AddressFamily::inet6); };
  const int v6 = open6();
  try {
    co_await loop.sock_connect(v6, SocketAddress::ip("127.0.0.1", 9));
    log.push_back("connected");
  } catch (const std::system_error& e) {
    log.push_back("error " + std::to_string(e.code().value()));
  }
  raw.close(v6);
  if (net) {
    const int listener = open6();
    net->bind(listener, SocketAddress::ip("::1", 0));
    net->listen(listener, 10);
    const std::uint16_t port = net->getsockname(listener).port;
    const int client = open6();
    Task<std::pair<int, SocketAddress>> accepting = loop.create_task(loop.sock_accept(listener));
    co_await loop.sock_connect(client, SocketAddress::ip("localhost", port));
    std::pair<int, SocketAddress> accepted = co_await accepting;
    log.push_back("accepted from " + std::string(accepted.second.host()));
    raw.close(accepted.first);
    raw.close(client);
    raw.close(listener);
  }
  co_return log;
}

LOOP_TEST("network: sock_connect resolves for the socket's family, as asyncio",
          "[network][sockets]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("sock_connect")) SKIP("no sockets here");
  std::vector<std::string> log = loop.run_until_complete(sock_connect_by_socket_family(loop));
  std::vector<std::string> expected{"error -9"};
  if (vnet::find_network(loop)) expected.push_back("accepted from ::1");
  CHECK(log == expected);
}

static Coro<void> raw_sockets(EventLoop& loop) {
  RawSockets raw{loop};
  RawConnection c = co_await raw_connection(loop, raw);
  const int listener = c.listener, client = c.client, server = c.server;
  CHECK(c.peer.host() == "127.0.0.1");
  // Asking for nothing returns at once, with nothing sent yet, as Python's socket.recv(0) does
  // (recv(2) itself would wait on a TCP socket).
  std::string nothing = co_await wait_for(loop.sock_recv(server, 0), 5.0);
  CHECK(nothing.empty());
  const std::string big = pattern(0, 1 << 20);
  Task<void> sending = loop.create_task(loop.sock_sendall(client, big));
  std::string got = co_await recv_exactly(loop, server, big.size());
  co_await sending;
  CHECK(got == big);
  // add_reader: level-triggered readiness, removed again.
  Future<void> readable = loop.create_future<void>();
  int calls = 0;
  loop.add_reader(server, [&] {
    ++calls;
    if (!readable.done()) readable.set_result();
  });
  co_await loop.sock_sendall(client, "x");
  co_await readable;
  CHECK(calls >= 1);
  CHECK(loop.remove_reader(server));
  CHECK_FALSE(loop.remove_reader(server));
  std::string x = co_await loop.sock_recv(server, 10);
  CHECK(x == "x");
  raw.close(client);
  std::string eof = co_await loop.sock_recv(server, 10);
  CHECK(eof.empty());
  raw.close(server);
  raw.close(listener);
  // Datagrams: sendto / recvfrom.
  const int a = raw.open(SocketKind::datagram);
  const int b = raw.open(SocketKind::datagram);
  const std::uint16_t bport = raw.listen_any(b, false);
  if (loop.capabilities().supports("sock_sendfile")) {
    bool refused = false;
    try {
      co_await loop.sock_sendfile(a, 0);
    } catch (const ValueError& e) {
      refused = std::string(e.what()) == "only SOCK_STREAM type sockets are supported";
    }
    CHECK(refused);
  }
  co_await loop.sock_sendto(a, "ping", SocketAddress::ip("127.0.0.1", bport));
  auto [data, from] = co_await loop.sock_recvfrom(b, 100);
  CHECK(data == "ping");
  CHECK(from.host() == "127.0.0.1");
  // A name is resolved, as Python's socket.sendto does (for the socket's family: 127.0.0.1).
  co_await loop.sock_sendto(a, "by name", SocketAddress::ip("localhost", bport));
  std::pair<std::string, SocketAddress> named = co_await loop.sock_recvfrom(b, 100);
  CHECK(named.first == "by name");
  raw.close(a);
  raw.close(b);
}

// What Linux says of sockets that are not connected or bound: sending on a TCP socket that never
// connected is EPIPE (BrokenPipeError); an unbound datagram endpoint's sockname is 0.0.0.0:0.
static Coro<std::string> unconnected_sockets(EventLoop& loop, RawSockets& raw) {
  std::string outcome;
  const int fd = raw.open(SocketKind::stream);
  try {
    co_await loop.sock_sendall(fd, "lost");
    outcome = "sent";
  } catch (const std::system_error& e) {
    outcome = std::to_string(e.code().value());
  }
  raw.close(fd);
  DatagramEndpointOptions o;
  o.family = AddressFamily::inet;
  DatagramConnection c = co_await loop.create_datagram_endpoint(
      [] { return std::make_shared<DatagramProtocol>(); }, o);
  const std::any name = c.first->get_extra_info("sockname");
  outcome += name.has_value() ? " " + std::any_cast<SocketAddress>(name).to_string() : " none";
  c.first->close();
  co_await sleep(0);
  co_return outcome;
}

// A write pipe learns at once that its reader went away, as asyncio's watches its pipe for
// reading: connection_lost(None) without a write to fail. Over a pipe, and over a socket whose
// peer closed (asyncio watches sockets too).
struct PipeEnds {
  int read_end, write_end;
};
static PipeEnds os_pipe(EventLoop& loop, bool socket_pair) {
  if (vnet::Network* net = vnet::find_network(loop)) {
    auto ends = socket_pair ? net->socketpair() : net->pipe();
    return {ends.first, ends.second};
  }
#ifndef __EMSCRIPTEN__
  int fds[2];
  if (socket_pair)
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  else
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  return {fds[0], fds[1]};
#else
  FAIL("no pipes");
  return {-1, -1};
#endif
}
static void close_end(EventLoop& loop, int fd) {
  if (vnet::Network* net = vnet::find_network(loop)) return net->close(fd);
#ifndef __EMSCRIPTEN__
  ::close(fd);
#endif
}
static Coro<std::string> reader_leaves(EventLoop& loop, bool socket_pair) {
  const PipeEnds ends = os_pipe(loop, socket_pair);
  auto writer = std::make_shared<Peer>(loop);
  WritePipeConnection wp = co_await loop.connect_write_pipe(give(writer), ends.write_end);
  co_await sleep(0.01);
  CHECK_FALSE(writer->lost.done());
  close_end(loop, ends.read_end);
  for (int i = 0; i < 100 && !writer->lost.done(); ++i) co_await sleep(0.001);
  std::string outcome = writer->lost.done() ? "lost" : "still open";
  if (writer->lost.done()) outcome += writer->lost_exc ? " with an error" : " (None)";
  wp.first->close();
  co_await writer->lost;
  co_return outcome;
}

LOOP_TEST("pipes: a write pipe notices at once that its reader went away", "[network][pipes]") {
  if (!this->loop->capabilities().supports("connect_write_pipe")) SKIP("no pipes here");
  CHECK(this->loop->run_until_complete(reader_leaves(*this->loop, false)) == "lost (None)");
  CHECK(this->loop->run_until_complete(reader_leaves(*this->loop, true)) == "lost (None)");
}

// A regular file is no pipe and cannot be polled: connect_read_pipe raises asyncio's ValueError
// and add_reader EPERM (epoll's answer), on every loop kind (in WebAssembly, a file of
// Emscripten's file system).
static Coro<std::string> regular_file_as_pipe(EventLoop& loop, int fd) {
  std::string outcome;
  try {
    ReadPipeConnection r = co_await loop.connect_read_pipe(give(std::make_shared<Peer>(loop)), fd);
    r.first->close();
    outcome = "adopted";
  } catch (const ValueError& e) {
    outcome = e.what();
  }
  co_return outcome;
}

LOOP_TEST("pipes: a regular file is refused by connect_read_pipe and add_reader",
          "[network][pipes]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("connect_read_pipe")) SKIP("no pipes here");
  const std::string path = "/tmp/eddy-regular-" + std::to_string(::getpid());
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR, 0600);
  REQUIRE(fd >= 0);
  CHECK(loop.run_until_complete(regular_file_as_pipe(loop, fd)) ==
        "Pipe transport is for pipes/sockets only.");
  CHECK(errno_of([&] { loop.add_reader(fd, [] {}); }) == EPERM);
  CHECK_FALSE(loop.remove_reader(fd));
  ::close(fd);
  ::unlink(path.c_str());
}

// In WebAssembly, a device of Emscripten's (/dev/null here; stdin alike) cannot be waited on:
// NotSupportedError naming the call, not EBADF or EPERM.
static Coro<std::string> device_as_pipe(EventLoop& loop, int fd, bool write) {
  std::string outcome = "adopted";
  try {
    if (write) {
      WritePipeConnection w =
          co_await loop.connect_write_pipe(give(std::make_shared<Peer>(loop)), fd);
      w.first->close();
    } else {
      ReadPipeConnection r =
          co_await loop.connect_read_pipe(give(std::make_shared<Peer>(loop)), fd);
      r.first->close();
    }
  } catch (const NotSupportedError& e) {
    outcome = e.method() + " on " + e.target() + ": " + e.what();
  }
  co_return outcome;
}

LOOP_TEST("pipes: in WebAssembly, a device descriptor is NotSupportedError naming the call",
          "[network][pipes]") {
  auto& loop = *this->loop;
  const std::string target = loop.capabilities().target;
  if (target.rfind("wasm", 0) != 0) SKIP("natively a device can be watched");
  const int fd = ::open("/dev/null", O_RDWR);
  REQUIRE(fd >= 0);
  const std::string read = loop.run_until_complete(device_as_pipe(loop, fd, false));
  const std::string write = loop.run_until_complete(device_as_pipe(loop, fd, true));
  CHECK(read.rfind("connect_read_pipe on " + target + ": ", 0) == 0);
  CHECK(write.rfind("connect_write_pipe on " + target + ": ", 0) == 0);
  CHECK(read.find("is Emscripten's (stdin or another device)") != std::string::npos);
  std::string watched;
  try {
    loop.add_reader(fd, [] {});
  } catch (const NotSupportedError& e) {
    watched = e.method();
  }
  CHECK(watched == "add_reader");
  CHECK_FALSE(loop.remove_reader(fd));
  ::close(fd);
}

// asyncio reports an add_reader callback that raised as "Exception in callback <the callback>".
// Eddy named its own internal lambda and the place inside the loop that scheduled it; now the
// caller's callable and the add_reader / add_writer call.
struct FailingReader {
  EventLoop* loop;
  int fd;
  void operator()() const {
    loop->remove_reader(fd);  // level-triggered: once is enough
    throw ValueError("reader failed");
  }
};
LOOP_TEST("add_reader and add_writer callbacks that raise are reported under their own names",
          "[network][sockets][errors]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("add_reader")) SKIP("no file descriptors here");
  const PipeEnds ends = os_pipe(loop, /*socket_pair=*/true);
  loop.set_debug(true);  // the place is kept in debug mode, as asyncio's source traceback
  const std::uint32_t reader_line = __LINE__ + 1;
  loop.add_reader(ends.read_end, FailingReader{&loop, ends.read_end});
  loop.add_writer(ends.write_end, [&] {
    loop.remove_writer(ends.write_end);
    throw ValueError("writer failed");
  });
  loop.run_until_complete(sleep(0.01));
  close_end(loop, ends.write_end);  // the reader sees EOF: readable
  loop.run_until_complete(sleep(0.01));
  CHECK_FALSE(loop.remove_reader(ends.read_end));
  close_end(loop, ends.read_end);
  REQUIRE(this->reported.size() == 2);
  const auto& writer = this->reported[0];
  CHECK(writer.exception_text() == "writer failed");
  CHECK(writer.message.find("lambda") != std::string::npos);
  CHECK(writer.message.find("rewatch_fd") == std::string::npos);
  CHECK(std::string(writer.source.file).find("test_network.cpp") != std::string::npos);
  const auto& reader = this->reported.back();
  CHECK(reader.exception_text() == "reader failed");
  CHECK(reader.message == "Exception in callback FailingReader");
  CHECK(std::string(reader.source.file).find("test_network.cpp") != std::string::npos);
  CHECK(reader.source.line == reader_line);
  loop.set_debug(false);
  this->reported.clear();
}

LOOP_TEST("network: an unconnected TCP socket sends EPIPE; an unbound endpoint's sockname",
          "[network][sockets]") {
  if (!this->loop->capabilities().supports("sock_sendall")) SKIP("no sockets here");
  RawSockets raw{*this->loop};
  CHECK(this->loop->run_until_complete(unconnected_sockets(*this->loop, raw)) ==
        std::to_string(EPIPE) + " 0.0.0.0:0");
}

LOOP_TEST("network: sock_accept, sock_connect, sock_sendall, sock_recv, add_reader, sock_sendto",
          "[network][sockets]") {
  this->loop->run_until_complete(raw_sockets(*this->loop));
}

// ---- sendfile -----------------------------------------------------------------------------------
// Natively the kernel's sendfile(2); on the virtual network the network copies the file into the
// socket the same way. Both refuse a file without offsets (a pipe), which the fallback reads on.

// sock_sendfile without the fallback: a range of the file, more than the socket buffers hold (so
// it waits for room), arrives whole; the file position ends after it.
static Coro<void> sock_sendfile_range(EventLoop& loop, int file, std::size_t junk, std::size_t size,
                                      int pipe_read, int open_pipe_read) {
  RawSockets raw{loop};
  RawConnection c = co_await raw_connection(loop, raw);
  const int listener = c.listener, client = c.client, server = c.server;
  Task<std::size_t> sending = loop.create_task(loop.sock_sendfile(client, file, junk, size, false));
  std::string got = co_await recv_exactly(loop, server, size);
  const std::size_t sent = co_await sending;
  CHECK(sent == size);
  CHECK(got == pattern(0, size));
  CHECK(::lseek(file, 0, SEEK_CUR) == static_cast<off_t>(junk + size));
  // Past the end of the file nothing is sent and the position stays.
  const std::size_t none = co_await loop.sock_sendfile(client, file, junk + size + 1000);
  CHECK(none == 0);
  CHECK(::lseek(file, 0, SEEK_CUR) == static_cast<off_t>(junk + size));
  // A pipe: SendfileNotAvailableError without the fallback, which reads it on.
  bool unavailable = false;
  try {
    co_await loop.sock_sendfile(client, pipe_read, 0, std::nullopt, false);
  } catch (const SendfileNotAvailableError&) {
    unavailable = true;
  }
  CHECK(unavailable);
  const std::size_t piped = co_await loop.sock_sendfile(client, pipe_read, 0, std::nullopt, true);
  CHECK(piped == 5);
  std::string hello = co_await recv_exactly(loop, server, 5);
  CHECK(hello == "hello");
  // A non-blocking pipe whose writer is still there: what it holds, then the end, as asyncio's
  // fallback stops when readinto() finds nothing (an empty pipe in WebAssembly reads so too).
  const std::size_t more =
      co_await loop.sock_sendfile(client, open_pipe_read, 0, std::nullopt, true);
  CHECK(more == 5);
  std::string world = co_await recv_exactly(loop, server, 5);
  CHECK(world == "world");
  raw.close(client);
  raw.close(server);
  raw.close(listener);
}

LOOP_TEST("network: sock_sendfile sends a range of a file; a pipe needs the fallback",
          "[network][sockets][sendfile]") {
  const std::size_t junk = 1000, size = 3 << 20;
  const int file = temp_file_with(std::string(junk, '#') + pattern(0, size) + "trailing");
  int p[2];
  REQUIRE(::pipe(p) == 0);
  REQUIRE(::write(p[1], "hello", 5) == 5);
  ::close(p[1]);
  int open_pipe[2];
  REQUIRE(::pipe(open_pipe) == 0);
  REQUIRE(::fcntl(open_pipe[0], F_SETFL, O_NONBLOCK) == 0);
  REQUIRE(::write(open_pipe[1], "world", 5) == 5);
  this->loop->run_until_complete(
      sock_sendfile_range(*this->loop, file, junk, size, p[0], open_pipe[0]));
  ::close(p[0]);
  ::close(open_pipe[0]);
  ::close(open_pipe[1]);
  ::close(file);
}

// sendfile on a transport whose peer does not read yet: what was written before goes first, the
// file's range follows without the fallback (reading paused meanwhile, write() refused), then
// what is written after.
static Coro<void> sendfile_between_writes(EventLoop& loop, int file, std::size_t junk,
                                          std::size_t size) {
  StalledConnection s;
  co_await stall(loop, s);
  Ref<Transport> t = s.c.first;
  const std::size_t before = more_than_buffered(loop), after = 100000;
  const std::size_t total = before + size + after;
  t->write(pattern(0, before));
  CHECK(t->get_write_buffer_size() > 0);
  Task<std::size_t> sending =
      loop.create_task(loop.sendfile(Ref<WriteTransport>(t.get()), file, junk, size, false));
  co_await sleep(0);
  CHECK_FALSE(t->is_reading());
  std::string refused;
  try {
    t->write("x");
  } catch (const RuntimeError& e) {
    refused = e.what();
  }
  CHECK(refused == "unable to write; sendfile is in progress");
  s.server_side->transport->resume_reading();
  const std::size_t sent = co_await sending;
  CHECK(sent == size);
  CHECK(t->is_reading());
  CHECK(::lseek(file, 0, SEEK_CUR) == static_cast<off_t>(junk + size));
  t->write(pattern(before + size, after));
  while (s.server_side->data.size() < total) co_await sleep(0.001);
  CHECK(s.server_side->data.size() == total);
  CHECK(s.server_side->data == pattern(0, total));
  CHECK(s.client->pauses >= 1);
  CHECK(s.client->resumes == s.client->pauses);
  s.server_side->transport->close();
  co_await s.client->lost;
  co_await s.server_side->lost;
  s.server->close();
  co_await s.server->wait_closed();
}

LOOP_TEST("network: sendfile on a transport between writes, to a reader that starts late",
          "[network][sendfile][flow]") {
  const std::size_t before = more_than_buffered(*this->loop), junk = 777, size = 2 << 20;
  const int file = temp_file_with(std::string(junk, '#') + pattern(before, size) + "trailing");
  this->loop->run_until_complete(sendfile_between_writes(*this->loop, file, junk, size));
  ::close(file);
}

// ---- What only the virtual network has --------------------------------------------------------

// asyncio's _ensure_fd_no_transport: the socket of a transport belongs to it until it closes, so
// add_reader and its kin, and the sock_* calls that would wait, refuse it with a RuntimeError
// naming the transport.
static Coro<void> transports_own_their_sockets(EventLoop& loop, std::shared_ptr<Peer> server_side,
                                               std::shared_ptr<Peer> client,
                                               std::shared_ptr<Datagrams> datagrams) {
  Ref<Server> server = co_await loop.create_server(give(server_side), "127.0.0.1", 0);
  Connection c =
      co_await wait_for(loop.create_connection(give(client), "127.0.0.1", port_of(server)), 5.0);
  const int fd = std::any_cast<int>(c.first->get_extra_info("socket"));
  std::string used = "File descriptor " + std::to_string(fd) + " is used by transport <tcp";
  auto refused = [&used](auto&& call) {
    try {
      call();
    } catch (const RuntimeError& e) {
      return std::string(e.what()).starts_with(used);
    }
    return false;
  };
  CHECK(refused([&] { loop.add_reader(fd, [] {}); }));
  CHECK(refused([&] { loop.add_writer(fd, [] {}); }));
  CHECK(refused([&] { loop.remove_reader(fd); }));
  CHECK(refused([&] { loop.remove_writer(fd); }));
  bool recv_refused = false;
  try {
    co_await loop.sock_recv(fd, 1);
  } catch (const RuntimeError& e) {
    recv_refused = std::string(e.what()).starts_with(used);
  }
  CHECK(recv_refused);
  // As asyncio's sock_* calls, which try the system call first: only a call that would wait is
  // refused. With the transport's reading paused, its data is there for sock_recv.
  c.first->pause_reading();
  while (!server_side->transport) co_await sleep(0.01);
  server_side->transport->write("hello");
  co_await sleep(0.1);
  const std::string nothing = co_await loop.sock_recv(fd, 0);
  CHECK(nothing.empty());
  const std::string got = co_await loop.sock_recv(fd, 10);
  CHECK(got == "hello");
  co_await loop.sock_sendall(fd, "x");
  while (server_side->data.empty()) co_await sleep(0.01);
  CHECK(server_side->data == "x");
  c.first->close();  // a closing transport's socket is free for them again
  CHECK_FALSE(loop.remove_reader(fd));
  co_await client->lost;
  server->close();
  co_await server->wait_closed();

  DatagramEndpointOptions o;
  o.local_addr = SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection d =
      co_await wait_for(loop.create_datagram_endpoint(give_datagrams(datagrams), o), 5.0);
  const int ufd = std::any_cast<int>(d.first->get_extra_info("socket"));
  used = "File descriptor " + std::to_string(ufd) + " is used by transport <udp";
  CHECK(refused([&] { loop.add_reader(ufd, [] {}); }));
  d.first->close();
  CHECK_FALSE(loop.remove_reader(ufd));
  co_await sleep(0);
}

LOOP_TEST(
    "network: a transport's socket is refused to add_reader and waiting sock_* until it closes",
    "[network][sockets][bad-input]") {
  auto server_side = std::make_shared<Peer>(*this->loop);
  auto client = std::make_shared<Peer>(*this->loop);
  auto datagrams = std::make_shared<Datagrams>(*this->loop);
  this->loop->run_until_complete(
      transports_own_their_sockets(*this->loop, server_side, client, datagrams));
}

static Coro<void> timed_round_trip(EventLoop& loop, double* elapsed) {
  auto server_side = std::make_shared<Peer>(loop);
  server_side->echo = true;
  Ref<Server> server = co_await loop.create_server(give(server_side), "10.0.0.2", 7000);
  auto client = std::make_shared<Peer>(loop);
  Connection c = co_await loop.create_connection(give(client), "10.0.0.2", 7000);
  const double t0 = loop.time();
  c.first->write("ping");
  while (client->data.size() < 4) co_await sleep(0.0005);
  *elapsed = loop.time() - t0;
  c.first->close();
  co_await client->lost;
  co_await server_side->lost;
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("virtual network: latency delays each direction", "[network][vnet]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  net.set_link("10.0.0.2", {.latency = 0.025});
  CHECK(net.link("10.0.0.2").latency == 0.025);
  CHECK(net.link("10.0.0.3").latency == 0);
  double elapsed = 0;
  this->loop->run_until_complete(timed_round_trip(*this->loop, &elapsed));
  CHECK(elapsed >= 0.05);
  if (TestType::virtual_time) CHECK(elapsed < 0.052);
}

static Coro<void> timed_transfer(EventLoop& loop, std::size_t total, double* elapsed) {
  auto server_side = std::make_shared<Peer>(loop);
  Ref<Server> server = co_await loop.create_server(give(server_side), "10.0.0.2", 7001);
  auto client = std::make_shared<Peer>(loop);
  Connection c = co_await loop.create_connection(give(client), "10.0.0.2", 7001);
  const double t0 = loop.time();
  c.first->write(pattern(0, total));
  while (server_side->data.size() < total) co_await sleep(0.001);
  *elapsed = loop.time() - t0;
  CHECK(server_side->data == pattern(0, total));
  c.first->close();
  co_await client->lost;
  co_await server_side->lost;
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("virtual network: bandwidth paces a transfer; loss delays it but loses nothing",
          "[network][vnet]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  const bool lossy = GENERATE(false, true);
  net.set_link("10.0.0.2", {.bandwidth = 1e6, .loss = lossy ? 0.3 : 0.0});
  double elapsed = 0;
  this->loop->run_until_complete(timed_transfer(*this->loop, 200000, &elapsed));
  CHECK(elapsed >= 0.2);
  if (TestType::virtual_time && !lossy) CHECK(elapsed < 0.21);
  if (lossy) {
    CHECK(net.stats().retransmissions > 0);
    CHECK(elapsed >= 0.4);  // at least one 200 ms retransmission timeout
  }
}

static Coro<void> reset_after(EventLoop& loop) {
  auto server_side = std::make_shared<Peer>(loop);
  Ref<Server> server = co_await loop.create_server(give(server_side), "10.0.0.9", 80);
  auto client = std::make_shared<Peer>(loop);
  Connection c = co_await loop.create_connection(give(client), "10.0.0.9", 80);
  c.first->write(pattern(0, 100000));
  co_await client->lost;
  co_await server_side->lost;
  CHECK(server_side->data == pattern(0, 1000));  // what crossed before the reset
  CHECK(errno_of_exception(client->lost_exc) == ECONNRESET);
  CHECK(errno_of_exception(server_side->lost_exc) == ECONNRESET);
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("virtual network: reset_after resets a connection on both sides",
          "[network][vnet][faults]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  net.set_link("10.0.0.9", {.latency = 0.001, .reset_after = 1000});
  this->loop->run_until_complete(reset_after(*this->loop));
  CHECK(net.stats().resets == 1);
}

static Coro<void> lossy_datagrams(EventLoop& loop, int* arrived) {
  auto receiver = std::make_shared<Datagrams>(loop);
  DatagramEndpointOptions ro;
  ro.local_addr = SocketAddress::ip("10.0.0.5", 5000);
  DatagramConnection r = co_await loop.create_datagram_endpoint(give_datagrams(receiver), ro);
  auto sender = std::make_shared<Datagrams>(loop);
  DatagramEndpointOptions so;
  so.remote_addr = SocketAddress::ip("10.0.0.5", 5000);
  DatagramConnection s = co_await loop.create_datagram_endpoint(give_datagrams(sender), so);
  for (int i = 0; i < 1000; ++i) s.first->sendto(std::to_string(i));
  co_await sleep(0.1);
  *arrived = static_cast<int>(receiver->received.size());
  for (std::size_t i = 1; i < receiver->received.size(); ++i)
    CHECK(std::stoi(receiver->received[i].first) > std::stoi(receiver->received[i - 1].first));
  CHECK(receiver->received[0].second.host() == "192.0.2.1");  // our address towards other hosts
  s.first->close();
  r.first->close();
  co_await sleep(0);
}

LOOP_TEST("virtual network: datagram loss drops about that share, reproducibly",
          "[network][vnet][datagrams]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  net.set_link("10.0.0.5", {.latency = 0.01, .loss = 0.25});
  int arrived = 0;
  this->loop->run_until_complete(lossy_datagrams(*this->loop, &arrived));
  CHECK(arrived > 700);
  CHECK(arrived < 800);
  CHECK(net.stats().datagrams_dropped == static_cast<std::uint64_t>(1000 - arrived));
}

static Coro<void> pairs_and_pipes(EventLoop& loop, vnet::Network& net) {
  // A socket pair, one end under a transport, the other read raw.
  auto [a, b] = net.socketpair();
  auto side = std::make_shared<Peer>(loop);
  Connection c = co_await loop.connect_accepted_socket(give(side), a);
  c.first->write("through the pair");
  std::string got;
  while (got.size() < 16) {
    std::string piece = co_await loop.sock_recv(b, 100);
    got += piece;
  }
  CHECK(got == "through the pair");
  co_await loop.sock_sendall(b, "back");
  while (side->data.size() < 4) co_await sleep(0.001);
  CHECK(side->data == "back");
  net.close(b);
  co_await side->lost;
  CHECK(joined(side->events) == "made;data;eof;lost;");
  // A pipe: connect_write_pipe on one end, connect_read_pipe on the other.
  auto [r, w] = net.pipe();
  auto reader = std::make_shared<Peer>(loop);
  auto writer = std::make_shared<Peer>(loop);
  ReadPipeConnection rp = co_await loop.connect_read_pipe(give(reader), r);
  WritePipeConnection wp = co_await loop.connect_write_pipe(give(writer), w);
  CHECK(std::any_cast<int>(rp.first->get_extra_info("pipe")) == r);
  CHECK(std::any_cast<int>(wp.first->get_extra_info("pipe")) == w);
  wp.first->write("down the pipe");
  wp.first->close();
  co_await reader->lost;
  co_await writer->lost;
  CHECK(reader->data == "down the pipe");
  CHECK(joined(reader->events) == "made;data;eof;lost;");
}

LOOP_TEST("virtual network: socket pairs and pipes under transports", "[network][vnet]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  this->loop->run_until_complete(pairs_and_pipes(*this->loop, net));
  CHECK(errno_of([&] { net.close(12345); }) == EBADF);
}

static Coro<void> names(EventLoop& loop) {
  std::vector<AddrInfo> r =
      co_await loop.getaddrinfo("server.example", "80", {.kind = SocketKind::stream});
  REQUIRE(r.size() == 2);
  CHECK(r[0].address.host() == "10.0.0.2");
  CHECK(r[1].address.host() == "fd00::2");
  CHECK(r[0].address.port == 80);
  std::vector<AddrInfo> local =
      co_await loop.getaddrinfo("localhost", "http", {.family = AddressFamily::inet});
  REQUIRE(local.size() == 2);  // stream and datagram
  CHECK(local[0].address.host() == "127.0.0.1");
  CHECK(local[0].address.port == 80);
  // An unknown name: the C library's error on the virtual-clock loop; in WebAssembly, which has
  // no DNS, NotSupportedError naming the call (the name may exist out there).
  bool unknown = false;
  std::string refused;
  try {
    co_await loop.getaddrinfo("nowhere.invalid", "80");
  } catch (const NotSupportedError& e) {
    refused = e.method() + " | " + e.what();
  } catch (const std::system_error& e) {
    unknown = std::string(e.what()).find("Name or service not known") != std::string::npos;
  }
  if (vnet::network(loop).options().foreign_hosts_target.empty()) {
    CHECK(unknown);
  } else {
    INFO(refused);
    CHECK(refused.rfind("getaddrinfo | getaddrinfo is not supported on wasm", 0) == 0);
    CHECK(refused.find("\"nowhere.invalid\" is no name on the virtual network") !=
          std::string::npos);
  }
  NameInfo n = co_await loop.getnameinfo(SocketAddress::ip("10.0.0.2", 80));
  CHECK(n.host == "server.example");
  CHECK(n.service == "80");
  // A name reaches a server on its address.
  auto server_side = std::make_shared<Peer>(loop);
  server_side->echo = true;
  Ref<Server> server = co_await loop.create_server(give(server_side), "0.0.0.0", 8080);
  StreamPair pair = co_await open_connection("server.example", 8080);
  pair.second->write("hi");
  std::string back = co_await pair.first->readexactly(2);
  CHECK(back == "hi");
  pair.second->close();
  co_await pair.second->wait_closed();
  server->close();
  co_await server->wait_closed();
}

LOOP_TEST("virtual network: host names resolve through add_host", "[network][vnet][dns]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  net.add_host("server.example", "10.0.0.2");
  net.add_host("server.example", "fd00::2");
  this->loop->run_until_complete(names(*this->loop));
}

LOOP_TEST("virtual network: the capability table, and NotSupportedError for what it lacks",
          "[network][vnet]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  const Capabilities& caps = this->loop->capabilities();
  for (const char* m :
       {"create_connection", "create_server", "create_unix_server", "create_datagram_endpoint",
        "sock_recv", "add_reader", "getaddrinfo", "connect_read_pipe", "connect_accepted_socket",
        "sock_sendfile", "sendfile"})
    CHECK(caps.supports(m));
  for (const char* m : {"subprocess_exec", "add_signal_handler"}) CHECK_FALSE(caps.supports(m));
    // TLS where the build has a TLS library: natively (OpenSSL), not in WebAssembly.
#ifdef __EMSCRIPTEN__
  CHECK_FALSE(caps.supports("start_tls"));
#else
  CHECK(caps.supports("start_tls"));
#endif
  try {
    this->loop->add_signal_handler(2, [] {});
    FAIL("add_signal_handler did not throw");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "add_signal_handler");
    CHECK(e.target() == caps.target);
  }
  const int fd = net.socket(AddressFamily::inet, SocketKind::stream);
  net.bind(fd, SocketAddress::ip("127.0.0.1", 9));
  const int other = net.socket(AddressFamily::inet, SocketKind::stream);
  CHECK(errno_of([&] { net.bind(other, SocketAddress::ip("0.0.0.0", 9)); }) == EADDRINUSE);
  CHECK(errno_of([&] { net.bind(other, SocketAddress::ip("not-an-address", 9)); }) ==
        EADDRNOTAVAIL);
  CHECK(errno_of([&] { net.getpeername(fd); }) == ENOTCONN);
  net.close(fd);
  net.close(other);
  CHECK(net.stats().open_sockets == 0);
}

static Coro<void> routed_without_gateway(EventLoop& loop) {
  auto nobody = std::make_shared<Peer>(loop);
  bool refused = false;
  try {
    co_await loop.create_connection(give(nobody), "echo.example", 80);
  } catch (const NotSupportedError& e) {
    refused = std::string(e.what()).find("ws://127.0.0.1:9/") != std::string::npos;
  }
  CHECK(refused);
}

LOOP_TEST("virtual network: a WebSocket route needs a host with WebSockets",
          "[network][vnet][websocket]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  CHECK_THROWS_AS(net.route_websocket("echo.example", 80, "http://not-a-websocket"), ValueError);
  net.route_websocket("echo.example", 80, "ws://127.0.0.1:9/");
  if (net.has_gateway()) SKIP("this host has WebSockets: the browser test covers the route");
  this->loop->run_until_complete(routed_without_gateway(*this->loop));
}

namespace {

// Stands in for the host's WebSockets: notes the routes it is asked to open.
struct NotingGateway : vnet::detail::Gateway {
  std::vector<std::string>* opened;
  explicit NotingGateway(std::vector<std::string>* opened) : opened(opened) {}
  void open(int, const std::string& url) override { opened->push_back(url); }
  void send(int, std::string_view) override {}
  std::size_t buffered(int) override { return 0; }
  void close(int) override {}
  std::string name() const override { return "noting"; }
};

Coro<void> routed_under_blocking_run(EventLoop& loop, std::string* refusal) {
  auto nobody = std::make_shared<Peer>(loop);
  try {
    co_await loop.create_connection(give(nobody), "echo.example", 80);
    *refusal = "connected";
  } catch (const NotSupportedError& e) {
    *refusal = e.method() + " | " + e.what();
  }
}

// Driven by the host, the same connection goes to the gateway (and is cancelled there).
Coro<void> routed_when_host_driven(EventLoop& loop, const std::vector<std::string>* opened) {
  auto nobody = std::make_shared<Peer>(loop);
  Task<Connection> t = loop.create_task(loop.create_connection(give(nobody), "echo.example", 80));
  for (int i = 0; i < 10 && opened->empty(); ++i) co_await sleep(0);
  t.cancel();
  try {
    co_await t;
  } catch (const CancelledError&) {
  }
}

}  // namespace

LOOP_TEST("virtual network: a WebSocket route is refused while a blocking run keeps the host out",
          "[network][vnet][websocket]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  std::vector<std::string> opened;
  net.core().set_gateway(std::make_unique<NotingGateway>(&opened));
  net.route_websocket("echo.example", 80, "ws://127.0.0.1:9/");
  std::string refusal;
  this->loop->run_until_complete(routed_under_blocking_run(*this->loop, &refusal));
  INFO(refusal);
  CHECK(refusal.rfind("create_connection | create_connection is not supported on ", 0) == 0);
  CHECK(refusal.find("drive this loop with eddy::wasm::run_main or eddy::wasm::drive") !=
        std::string::npos);
  CHECK(opened.empty());
  net.core().host_driven = true;  // as eddy::wasm::drive sets it
  this->loop->run_until_complete(routed_when_host_driven(*this->loop, &opened));
  CHECK(opened == std::vector<std::string>{"ws://127.0.0.1:9/"});
  net.core().host_driven = false;
}

static Coro<void> foreign_address(EventLoop& loop, std::string* outcome) {
  auto nobody = std::make_shared<Peer>(loop);
  try {
    co_await loop.create_connection(give(nobody), "203.0.113.7", 80);
    *outcome = "connected";
  } catch (const NotSupportedError& e) {
    *outcome = "NotSupportedError " + e.method() + " on " + e.target();
  } catch (const std::system_error& e) {
    *outcome = "errno " + std::to_string(e.code().value());
  }
}

// The same with sock_connect on a socket of the network's: the refusal names sock_connect.
static Coro<void> foreign_address_sock(EventLoop& loop, std::string* outcome) {
  vnet::Network& net = vnet::network(loop);
  const int fd = net.socket(AddressFamily::inet, SocketKind::stream);
  try {
    co_await loop.sock_connect(fd, SocketAddress::ip("203.0.113.8", 80));
    *outcome = "connected";
  } catch (const NotSupportedError& e) {
    *outcome = "NotSupportedError " + e.method() + " on " + e.target();
  } catch (const std::system_error& e) {
    *outcome = "errno " + std::to_string(e.code().value());
  }
  net.close(fd);
}

LOOP_TEST(
    "virtual network: an address nobody owns: refused in a world of its own, NotSupported for a "
    "real host",
    "[network][vnet]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  std::string outcome;
  this->loop->run_until_complete(foreign_address(*this->loop, &outcome));
  std::string sock_outcome;
  this->loop->run_until_complete(foreign_address_sock(*this->loop, &sock_outcome));
  if (net.options().foreign_hosts_target.empty()) {
    CHECK(outcome == "errno " + std::to_string(ECONNREFUSED));  // the virtual-clock loop's world
    CHECK(sock_outcome == "errno " + std::to_string(ECONNREFUSED));
  } else {
    CHECK(outcome == "NotSupportedError create_connection on " + this->loop->capabilities().target);
    CHECK(sock_outcome == "NotSupportedError sock_connect on " + this->loop->capabilities().target);
  }
  net.set_link("203.0.113.7",
               {.latency = 0.001});  // a host the network knows of: refused, not unsupported
  this->loop->run_until_complete(foreign_address(*this->loop, &outcome));
  CHECK(outcome == "errno " + std::to_string(ECONNREFUSED));
}

// The same for UDP: a world of its own sends a datagram to an address nobody owns nowhere; a
// loop that stands for a real host refuses it, naming the call, where it used to send it nowhere
// without a word (a browser has no UDP).
static Coro<void> foreign_datagrams(EventLoop& loop, std::vector<std::string>* outcomes) {
  const SocketAddress far = SocketAddress::ip("203.0.113.9", 53);
  DatagramEndpointOptions connected;
  connected.remote_addr = far;
  try {
    DatagramConnection c = co_await loop.create_datagram_endpoint(
        give_datagrams(std::make_shared<Datagrams>(loop)), connected);
    outcomes->push_back("connected");
    c.first->close();
  } catch (const NotSupportedError& e) {
    outcomes->push_back(e.method() + " on " + e.target());
  }
  DatagramEndpointOptions unconnected;
  unconnected.local_addr = SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection u = co_await loop.create_datagram_endpoint(
      give_datagrams(std::make_shared<Datagrams>(loop)), unconnected);
  try {
    u.first->sendto("x", far);
    outcomes->push_back("sent");
  } catch (const NotSupportedError& e) {
    outcomes->push_back(e.method() + " on " + e.target());
  }
  u.first->close();
  vnet::Network& net = vnet::network(loop);
  const int fd = net.socket(AddressFamily::inet, SocketKind::datagram);
  try {
    co_await loop.sock_sendto(fd, "x", far);
    outcomes->push_back("sent");
  } catch (const NotSupportedError& e) {
    outcomes->push_back(e.method() + " on " + e.target());
  }
  net.close(fd);
  co_await sleep(0);  // connection_lost
  co_await sleep(0);
}

LOOP_TEST(
    "virtual network: UDP to an address nobody owns: sent nowhere, or NotSupported for a "
    "real host",
    "[network][vnet]") {
  REQUIRE_VIRTUAL_NETWORK(*this->loop);
  std::vector<std::string> outcomes;
  this->loop->run_until_complete(foreign_datagrams(*this->loop, &outcomes));
  const std::string target = this->loop->capabilities().target;
  if (net.options().foreign_hosts_target.empty())
    CHECK(outcomes == std::vector<std::string>{"connected", "sent", "sent"});
  else
    CHECK(outcomes == std::vector<std::string>{"create_datagram_endpoint on " + target,
                                               "sendto on " + target, "sock_sendto on " + target});
}

LOOP_TEST("vnet::network: NotSupportedError on loops that use the operating system's network",
          "[network][vnet]") {
  if (vnet::find_network(*this->loop)) {
    CHECK(&vnet::network(*this->loop) == vnet::find_network(*this->loop));
    return;
  }
  try {
    vnet::network(*this->loop);
    FAIL("vnet::network did not throw");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "eddy::vnet::network");
    CHECK(e.target() == this->loop->capabilities().target);
  }
}
