// Datagram transports: UDP with Python's asyncio as the peer in both directions, asyncio's
// address checks, and error_received for ICMP errors (the transport stays open). Loop kinds
// without sockets refuse with NotSupportedError.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "support.hpp"

using namespace eddy;

struct DatagramRecorder : DatagramProtocol {
  explicit DatagramRecorder(EventLoop& loop) : lost(loop.create_future<void>()) {}
  Ref<DatagramTransport> transport;
  std::vector<std::string> received;
  std::vector<SocketAddress> senders;
  std::vector<std::string> errors;
  std::size_t expect = 0;
  bool echo = false;
  Future<void> enough, lost;
  std::exception_ptr lost_exc;

  void connection_made(Ref<DatagramTransport> t) override { transport = t; }
  void datagram_received(std::string_view data, const SocketAddress& from) override {
    received.emplace_back(data);
    senders.push_back(from);
    if (echo) transport->sendto(data, from);
    if (received.size() == expect && enough && !enough.done()) enough.set_result();
  }
  void error_received(std::exception_ptr e) override {
    try {
      std::rethrow_exception(e);
    } catch (const std::system_error& se) {
      errors.push_back(se.code().message());
      if (enough && !enough.done()) enough.set_result();
    }
  }
  void connection_lost(std::exception_ptr e) override {
    lost_exc = e;
    transport.reset();
    lost.set_result();
  }
};

static DatagramProtocolFactory give(std::shared_ptr<DatagramRecorder> r) {
  return [r] { return std::static_pointer_cast<DatagramProtocol>(r); };
}

LOOP_TEST("create_datagram_endpoint: NotSupportedError where there are no sockets", "[datagrams]") {
  auto& loop = *this->loop;
  if (loop.capabilities().supports("create_datagram_endpoint")) return;
  auto attempt = [](EventLoop& l) -> Coro<void> {
    co_await l.create_datagram_endpoint([] { return std::shared_ptr<DatagramProtocol>(); },
                                        {.remote_addr = SocketAddress::ip("127.0.0.1", 9)});
  };
  CHECK_THROWS_AS(loop.run_until_complete(attempt(loop)), NotSupportedError);
}

// AF_UNIX datagrams are never dropped on Linux: a receiver that cannot keep up holds the sender
// back (EAGAIN), and the transport buffers what it could not send. Every loop kind with sockets,
// the virtual network included, delivers the whole burst in order.
static std::string unix_dgram_name(const char* tag) {
  return "/tmp/eddy-udg-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}
static Coro<std::size_t> unix_datagram_burst(EventLoop& loop, std::shared_ptr<DatagramRecorder> r,
                                             int count) {
  r->expect = static_cast<std::size_t>(count);
  r->enough = loop.create_future<void>();
  const std::string path = unix_dgram_name("burst");
  DatagramEndpointOptions receiving;
  receiving.local_addr = SocketAddress::unix_path(path);
  DatagramConnection rx = co_await loop.create_datagram_endpoint(give(r), receiving);
  auto sender = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions sending;
  sending.remote_addr = SocketAddress::unix_path(path);
  DatagramConnection tx = co_await loop.create_datagram_endpoint(give(sender), sending);
  for (int i = 0; i < count; ++i) {
    std::string d(999, static_cast<char>('a' + i % 26));
    d.replace(0, std::to_string(i).size(), std::to_string(i));
    tx.first->sendto(d);
  }
  // Counted as asyncio counts it: each datagram waiting plus 8 bytes (999 + 8 = 1007 = 19 * 53,
  // so payload alone would not divide; 600 datagrams are fewer than 1007).
  const std::size_t held_back = tx.first->get_write_buffer_size();
  CHECK(held_back % 1007 == 0);
  co_await r->enough;
  CHECK(sender->errors.empty());
  tx.first->close();
  co_await sender->lost;
  rx.first->close();
  co_await r->lost;
  ::unlink(path.c_str());
  co_return held_back;
}

LOOP_TEST("Unix datagrams: a burst the receiver cannot hold waits in the sender, none is lost",
          "[datagrams][unix]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  auto r = std::make_shared<DatagramRecorder>(loop);
  const int count = 600;  // 600 kB: more than a socket buffer holds, here and in the kernel
  const std::size_t held_back = loop.run_until_complete(unix_datagram_burst(loop, r, count));
  CHECK(held_back > 0);
  REQUIRE(r->received.size() == static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) CHECK(r->received[i].starts_with(std::to_string(i)));
  CHECK(r->errors.empty());
}

// As asyncio's selector datagram transport: pause_reading leaves datagrams in the socket (AF_UNIX
// never drops them), resume_reading delivers them in order; paused from connection_made, the
// transport never starts receiving; is_reading is false once closing.
struct PausingRecorder : DatagramRecorder {
  using DatagramRecorder::DatagramRecorder;
  std::vector<int> reading_seen;
  void connection_made(Ref<DatagramTransport> t) override {
    DatagramRecorder::connection_made(t);
    reading_seen.push_back(t->is_reading() ? 1 : 0);
    t->pause_reading();
    t->pause_reading();  // no effect
    reading_seen.push_back(t->is_reading() ? 1 : 0);
  }
};

static Coro<std::vector<std::string>> datagrams_paused_and_resumed(EventLoop& loop) {
  auto r = std::make_shared<PausingRecorder>(loop);
  const std::string path = unix_dgram_name("paused");
  DatagramEndpointOptions receiving;
  receiving.local_addr = SocketAddress::unix_path(path);
  DatagramConnection rx = co_await loop.create_datagram_endpoint(give(r), receiving);
  auto sender = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions sending;
  sending.remote_addr = SocketAddress::unix_path(path);
  DatagramConnection tx = co_await loop.create_datagram_endpoint(give(sender), sending);
  std::vector<std::string> log;
  for (int seen : r->reading_seen) log.push_back("in connection_made: " + std::to_string(seen));
  for (int i = 0; i < 3; ++i) tx.first->sendto("d" + std::to_string(i));
  co_await sleep(0.05);
  log.push_back("paused: " + std::to_string(r->received.size()));
  r->expect = 3;
  r->enough = loop.create_future<void>();
  rx.first->resume_reading();
  log.push_back(std::string("reading: ") + (rx.first->is_reading() ? "yes" : "no"));
  co_await r->enough;
  for (const auto& d : r->received) log.push_back(d);
  rx.first->pause_reading();
  tx.first->sendto("d3");
  co_await sleep(0.05);
  log.push_back("paused again: " + std::to_string(r->received.size()));
  rx.first->close();
  log.push_back(std::string("closing, reading: ") + (rx.first->is_reading() ? "yes" : "no"));
  rx.first->resume_reading();  // no effect once closing
  co_await r->lost;
  log.push_back("at the end: " + std::to_string(r->received.size()));
  tx.first->close();
  co_await sender->lost;
  ::unlink(path.c_str());
  co_return log;
}

LOOP_TEST("datagrams: pause_reading keeps datagrams waiting, resume_reading delivers them in order",
          "[datagrams][unix][flow]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  CHECK(loop.run_until_complete(datagrams_paused_and_resumed(loop)) ==
        std::vector<std::string>{"in connection_made: 1", "in connection_made: 0", "paused: 0",
                                 "reading: yes", "d0", "d1", "d2", "paused again: 3",
                                 "closing, reading: no", "at the end: 3"});
}

// A name with several addresses of one family: asyncio pairs the addresses by family and keeps
// the last one getaddrinfo gave for each (its dict is overwritten), so the endpoint connects to
// the last. Names exist only on the virtual network.
static Coro<std::string> datagram_to_name_with_two_addresses(EventLoop& loop) {
  vnet::Network& net = *vnet::find_network(loop);
  net.add_host("two.test", "127.0.0.2");
  net.add_host("two.test", "127.0.0.3");
  auto r = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions o;
  o.remote_addr = SocketAddress::ip("two.test", 9);
  DatagramConnection c = co_await loop.create_datagram_endpoint(give(r), o);
  const std::any peer = c.first->get_extra_info("peername");
  const SocketAddress* a = std::any_cast<SocketAddress>(&peer);
  std::string got = a ? a->to_string() : "none";
  c.first->close();
  co_await r->lost;
  co_return got;
}

LOOP_TEST("datagrams: of several addresses of a family, the last is used, as asyncio",
          "[datagrams]") {
  auto& loop = *this->loop;
  if (!vnet::find_network(loop)) SKIP("names need the virtual network");
  CHECK(loop.run_until_complete(datagram_to_name_with_two_addresses(loop)) == "127.0.0.3:9");
}

// Sending to a Unix path nothing is bound to: ENOENT, at connect for a connected endpoint.
static Coro<int> unix_datagram_to_nobody(EventLoop& loop) {
  DatagramEndpointOptions o;
  o.remote_addr = SocketAddress::unix_path(unix_dgram_name("nobody"));
  int code = 0;
  try {
    DatagramConnection c =
        co_await loop.create_datagram_endpoint(give(std::make_shared<DatagramRecorder>(loop)), o);
    c.first->close();
  } catch (const std::system_error& e) {
    code = e.code().value();
  }
  co_return code;
}

// asyncio removes a socket file at a datagram endpoint's local path before binding, even one a
// live endpoint holds: the new endpoint gets what is sent to the path from then on.
static Coro<std::vector<std::string>> unix_datagram_path_taken_over(EventLoop& loop) {
  const std::string path = unix_dgram_name("taken");
  auto first = std::make_shared<DatagramRecorder>(loop);
  auto second = std::make_shared<DatagramRecorder>(loop);
  second->expect = 1;
  second->enough = loop.create_future<void>();
  DatagramEndpointOptions at_path;
  at_path.local_addr = SocketAddress::unix_path(path);
  DatagramConnection a = co_await loop.create_datagram_endpoint(give(first), at_path);
  DatagramConnection b = co_await loop.create_datagram_endpoint(give(second), at_path);
  auto sender = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions to_path;
  to_path.remote_addr = SocketAddress::unix_path(path);
  DatagramConnection tx = co_await loop.create_datagram_endpoint(give(sender), to_path);
  tx.first->sendto("for the new one");
  co_await second->enough;
  std::vector<std::string> got;
  got.push_back("first: " + std::to_string(first->received.size()));
  got.push_back("second: " + second->received.at(0));
  tx.first->close();
  b.first->close();
  a.first->close();
  co_await sender->lost;
  co_await second->lost;
  co_await first->lost;
  ::unlink(path.c_str());
  co_return got;
}

LOOP_TEST("Unix datagrams: a new endpoint takes over a path a live one holds, as asyncio",
          "[datagrams][unix]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  CHECK(loop.run_until_complete(unix_datagram_path_taken_over(loop)) ==
        std::vector<std::string>{"first: 0", "second: for the new one"});
}

// The limited broadcast address without allow_broadcast: EACCES (PermissionError) in
// error_received, as Linux refuses it without SO_BROADCAST; the transport stays open.
static Coro<std::vector<std::string>> broadcast_without_permission(EventLoop& loop) {
  auto r = std::make_shared<DatagramRecorder>(loop);
  r->enough = loop.create_future<void>();
  DatagramEndpointOptions o;
  o.local_addr = SocketAddress::ip("0.0.0.0", 0);
  DatagramConnection c = co_await loop.create_datagram_endpoint(give(r), o);
  c.first->sendto("to everyone", SocketAddress::ip("255.255.255.255", 9));
  if (r->errors.empty()) co_await r->enough;
  std::vector<std::string> errors = r->errors;
  c.first->close();
  co_await r->lost;
  co_return errors;
}

LOOP_TEST("datagrams: a broadcast without allow_broadcast is EACCES in error_received",
          "[datagrams]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  CHECK(loop.run_until_complete(broadcast_without_permission(loop)) ==
        std::vector<std::string>{std::make_error_code(std::errc::permission_denied).message()});
}

LOOP_TEST("Unix datagrams: remote_addr nothing is bound to is ENOENT", "[datagrams][unix]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  CHECK(loop.run_until_complete(unix_datagram_to_nobody(loop)) == ENOENT);
}

// Linux has no SO_REUSEPORT for AF_UNIX: asyncio raises its ValueError before anything is bound.
static Coro<std::string> unix_reuse_port(EventLoop& loop) {
  auto r = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions o;
  o.local_addr = SocketAddress::unix_path(unix_dgram_name("reuse"));
  o.reuse_port = true;
  std::string what = "accepted";
  try {
    DatagramConnection c = co_await loop.create_datagram_endpoint(give(r), o);
    c.first->close();
  } catch (const ValueError& e) {
    what = e.what();
  }
  co_return what;
}

LOOP_TEST("Unix datagrams: reuse_port is asyncio's ValueError", "[datagrams][unix]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  CHECK(loop.run_until_complete(unix_reuse_port(loop)) ==
        "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented.");
}

// Cancelled while it waits for connection_made: as asyncio, the transport it made is closed (the
// protocol sees connection_made, then connection_lost), not left open with nobody holding it.
static Coro<std::string> cancelled_endpoint(EventLoop& loop) {
  auto r = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions o;
  o.family = AddressFamily::inet;
  Task<DatagramConnection> t = loop.create_task(loop.create_datagram_endpoint(give(r), o));
  co_await sleep(0);
  const bool cancelling = t.cancel();
  bool cancelled = false;
  try {
    co_await t;
  } catch (const CancelledError&) {
    cancelled = true;
  }
  for (int i = 0; i < 10 && !r->lost.done(); ++i) co_await sleep(0);
  co_return std::string(cancelling && cancelled ? "cancelled" : "not cancelled") +
      (r->lost.done() ? ", closed" : ", still open");
}

LOOP_TEST("datagrams: create_datagram_endpoint cancelled before it returns closes its transport",
          "[datagrams][cancel]") {
  auto& loop = *this->loop;
  if (!loop.capabilities().supports("create_datagram_endpoint")) SKIP("no sockets here");
  CHECK(loop.run_until_complete(cancelled_endpoint(loop)) == "cancelled, closed");
}

#ifndef __EMSCRIPTEN__
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "peer.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

static Coro<void> udp_client(EventLoop& loop, std::uint16_t port, std::shared_ptr<DatagramRecorder> r) {
  r->expect = 3;
  r->enough = loop.create_future<void>();
  DatagramConnection c =
      co_await loop.create_datagram_endpoint(give(r), {.remote_addr = SocketAddress::ip("127.0.0.1", port)});
  auto peer = std::any_cast<SocketAddress>(c.first->get_extra_info("peername"));
  CHECK(peer.port == port);
  CHECK(std::any_cast<SocketAddress>(c.first->get_extra_info("sockname")).port != 0);
  CHECK_THROWS_AS(c.first->sendto("x", SocketAddress::ip("127.0.0.1", static_cast<std::uint16_t>(port + 1))), ValueError);
  c.first->sendto("one");
  c.first->sendto("two", SocketAddress::ip("127.0.0.1", port));  // the connected address is allowed
  c.first->sendto(std::string(4000, 'z'));
  co_await r->enough;
  CHECK(c.first->get_write_buffer_size() == 0);
  c.first->close();
  CHECK(c.first->is_closing());
  c.first->sendto("dropped after close");
  co_await r->lost;
}

struct AdoptedConnected {
  std::string received;
  bool peer_known = false;
  int reuse_address = -1;
};

// A UDP socket connected before it is given (sock=): as asyncio, every datagram goes to its peer
// (sendto without an address works), and its SO_REUSEADDR is left as it was (off).
static Coro<void> adopted_connected_socket(EventLoop& loop, AdoptedConnected* out) {
  auto receiver = std::make_shared<DatagramRecorder>(loop);
  receiver->expect = 1;
  receiver->enough = loop.create_future<void>();
  DatagramEndpointOptions ro;
  ro.local_addr = SocketAddress::ip("127.0.0.1", 0);
  DatagramConnection rc = co_await loop.create_datagram_endpoint(give(receiver), ro);
  const auto where = std::any_cast<SocketAddress>(rc.first->get_extra_info("sockname"));
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(where.port);
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  auto sender = std::make_shared<DatagramRecorder>(loop);
  DatagramEndpointOptions so;
  so.sock = fd;
  DatagramConnection sc = co_await loop.create_datagram_endpoint(give(sender), so);
  int reuse = -1;
  socklen_t len = sizeof reuse;
  ::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len);
  out->reuse_address = reuse;
  out->peer_known = sc.first->get_extra_info("peername").has_value();
  sc.first->sendto("to the peer");
  co_await receiver->enough;
  out->received = receiver->received.front();
  sc.first->close();
  co_await sender->lost;
  rc.first->close();
  co_await receiver->lost;
}

TEST_CASE_METHOD(NativeFixture,
                 "UDP: a socket given connected sends to its peer, options untouched",
                 "[datagrams][sock]") {
  AdoptedConnected r;
  loop->run_until_complete(adopted_connected_socket(*loop, &r));
  CHECK(r.received == "to the peer");
  CHECK(r.peer_known);
  CHECK(r.reuse_address == 0);
}

TEST_CASE_METHOD(NativeFixture, "UDP: datagrams echoed by an asyncio server", "[datagrams][peer]") {
  PythonPeer peer(strings("udp-echo-server", "udp:127.0.0.1:0", "3"));
  const auto port = static_cast<std::uint16_t>(std::stoi(peer.ready()));
  auto r = std::make_shared<DatagramRecorder>(*loop);
  loop->run_until_complete(udp_client(*loop, port, r));
  std::vector<std::string> got = r->received;
  std::sort(got.begin(), got.end());
  CHECK(got == strings("one", "two", std::string(4000, 'z')));
  CHECK_FALSE(r->lost_exc);
  peer.finish();
}

static Coro<void> udp_server(EventLoop& loop, std::shared_ptr<DatagramRecorder> r, std::string* said) {
  r->echo = true;
  r->expect = 5;
  r->enough = loop.create_future<void>();
  DatagramConnection c =
      co_await loop.create_datagram_endpoint(give(r), {.local_addr = SocketAddress::ip("127.0.0.1", 0)});
  const auto me = std::any_cast<SocketAddress>(c.first->get_extra_info("sockname"));
  PythonPeer peer(strings("udp-client", "udp:127.0.0.1:" + std::to_string(me.port), "5"));
  co_await r->enough;
  *said = peer.finish();
  c.first->close();
  co_await r->lost;
}

TEST_CASE_METHOD(NativeFixture, "UDP: an asyncio client's datagrams echoed by Eddy", "[datagrams][peer]") {
  auto r = std::make_shared<DatagramRecorder>(*loop);
  std::string said;
  loop->run_until_complete(udp_server(*loop, r, &said));
  CHECK(said == "OK 5\n");
  REQUIRE(r->senders.size() == 5);
  CHECK(r->senders[0].host() == "127.0.0.1");
}

static Coro<void> icmp_refused(EventLoop& loop, std::shared_ptr<DatagramRecorder> r) {
  r->enough = loop.create_future<void>();
  // Port 9 (discard) has no listener here: the kernel answers with ICMP port unreachable.
  DatagramConnection c =
      co_await loop.create_datagram_endpoint(give(r), {.remote_addr = SocketAddress::ip("127.0.0.1", 9)});
  c.first->sendto("anyone?");
  Future<void> enough = r->enough;
  TimerHandle guard = loop.call_later(5.0, [enough]() mutable {
    if (!enough.done()) enough.set_result();  // the assertions below then fail instead of hanging
  });
  co_await enough;
  guard.cancel();
  REQUIRE(r->errors.size() == 1);
  CHECK(r->errors[0] == std::make_error_code(std::errc::connection_refused).message());
  CHECK_FALSE(c.first->is_closing());  // error_received does not close the transport
  c.first->abort();
  co_await r->lost;
}

TEST_CASE_METHOD(NativeFixture, "UDP: ICMP port unreachable reaches error_received, the transport stays open",
                 "[datagrams][faults]") {
  auto r = std::make_shared<DatagramRecorder>(*loop);
  loop->run_until_complete(icmp_refused(*loop, r));
  CHECK(r->received.empty());
}
struct RaisingOnError : DatagramRecorder {
  using DatagramRecorder::DatagramRecorder;
  void error_received(std::exception_ptr e) override {
    DatagramRecorder::error_received(e);
    throw ValueError("boom in error_received");
  }
};

static Coro<void> icmp_refused_raising(EventLoop& loop, std::shared_ptr<RaisingOnError> r) {
  r->enough = loop.create_future<void>();
  DatagramConnection c = co_await loop.create_datagram_endpoint(
      give(r), {.remote_addr = SocketAddress::ip("127.0.0.1", 9)});
  c.first->sendto("anyone?");
  Future<void> enough = r->enough;
  co_await wait_for(enough, 5.0);
  co_await sleep(0.01);
  CHECK_FALSE(c.first->is_closing());
  c.first->abort();
  co_await r->lost;
}

// asyncio: error_received raising inside the read callback is that callback's exception,
// reported; the transport stays open.
TEST_CASE_METHOD(NativeFixture, "UDP: error_received raising is reported; the transport stays open",
                 "[datagrams][faults]") {
  auto r = std::make_shared<RaisingOnError>(*loop);
  loop->run_until_complete(icmp_refused_raising(*loop, r));
  CHECK(r->errors.size() == 1);
  REQUIRE(reported.size() == 1);
  CHECK(reported[0].message == "Exception in callback protocol.error_received()");
  reported.clear();
}

// ---- Unix datagram sockets (libuv has none: native/src/unix_datagram.cpp) ----------------------

static std::string dgram_path(const char* tag) {
  return "/tmp/eddy-dgram-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

static Coro<void> unix_dgram_client(EventLoop& loop, std::string server, std::shared_ptr<DatagramRecorder> r) {
  r->expect = 3;
  r->enough = loop.create_future<void>();
  const SocketAddress me = SocketAddress::unix_path(dgram_path("eddy-client"));
  DatagramConnection c = co_await loop.create_datagram_endpoint(
      give(r), {.local_addr = me, .remote_addr = SocketAddress::unix_path(server)});
  CHECK(std::any_cast<SocketAddress>(c.first->get_extra_info("sockname")) == me);
  CHECK(std::any_cast<SocketAddress>(c.first->get_extra_info("peername")).host() == server);
  CHECK(std::any_cast<int>(c.first->get_extra_info("socket")) >= 0);
  c.first->sendto("one");
  c.first->sendto("two");
  c.first->sendto(std::string(4000, 'z'));
  co_await r->enough;
  CHECK(c.first->get_write_buffer_size() == 0);
  c.first->close();
  co_await r->lost;
  ::unlink(me.host_c_str());
}

TEST_CASE_METHOD(NativeFixture, "Unix datagrams: echoed by an asyncio server", "[datagrams][peer][unix]") {
  const std::string path = dgram_path("py-server");
  PythonPeer peer(strings("unix-dgram-echo-server", "unix:" + path, "3"));
  CHECK(peer.ready() == path);
  auto r = std::make_shared<DatagramRecorder>(*loop);
  loop->run_until_complete(unix_dgram_client(*loop, path, r));
  CHECK(r->received == strings("one", "two", std::string(4000, 'z')));  // whole and in order
  REQUIRE(r->senders.size() == 3);
  CHECK(r->senders[0].family == AddressFamily::unix_socket);
  CHECK(r->senders[0].host() == path);
  CHECK_FALSE(r->lost_exc);
  peer.finish();
  ::unlink(path.c_str());
}

static Coro<void> unix_dgram_server(EventLoop& loop, std::shared_ptr<DatagramRecorder> r, std::string* said) {
  r->echo = true;
  r->expect = 5;
  r->enough = loop.create_future<void>();
  const std::string path = dgram_path("eddy-server");
  ::close(::open(path.c_str(), O_CREAT | O_WRONLY, 0600));  // a plain file there is not replaced...
  bool refused = false;
  try {
    DatagramConnection over_a_file = co_await loop.create_datagram_endpoint(
        give(std::make_shared<DatagramRecorder>(loop)), {.local_addr = SocketAddress::unix_path(path)});
    over_a_file.first->close();
  } catch (const std::system_error& e) {
    refused = e.code() == std::errc::address_in_use;
  }
  CHECK(refused);
  ::unlink(path.c_str());
  auto before = std::make_shared<DatagramRecorder>(loop);
  DatagramConnection stale =  // ...but a stale socket file is, as asyncio does
      co_await loop.create_datagram_endpoint(give(before), {.local_addr = SocketAddress::unix_path(path)});
  stale.first->close();
  co_await before->lost;  // its socket file stays behind
  DatagramConnection c =
      co_await loop.create_datagram_endpoint(give(r), {.local_addr = SocketAddress::unix_path(path)});
  PythonPeer peer(strings("unix-dgram-client", "unix:" + path, "5", dgram_path("py-client")));
  co_await r->enough;
  *said = peer.finish();
  c.first->close();
  co_await r->lost;
  ::unlink(path.c_str());
  ::unlink(dgram_path("py-client").c_str());
}

TEST_CASE_METHOD(NativeFixture, "Unix datagrams: an asyncio client's datagrams echoed by Eddy", "[datagrams][peer][unix]") {
  auto r = std::make_shared<DatagramRecorder>(*loop);
  std::string said;
  loop->run_until_complete(unix_dgram_server(*loop, r, &said));
  CHECK(said == "OK 5\n");
  REQUIRE(r->senders.size() == 5);
  CHECK(r->senders[0].host() == dgram_path("py-client"));
}

// A receiver that does not read: the kernel's queue for it fills, sends queue in the transport
// (pause_writing past the high water mark), and once it reads, every datagram arrives, in order.
struct CountingFlow : DatagramRecorder {
  using DatagramRecorder::DatagramRecorder;
  int pauses = 0, resumes = 0;
  void pause_writing() override { ++pauses; }
  void resume_writing() override { ++resumes; }
};

static Coro<void> unix_dgram_backpressure(EventLoop& loop, std::shared_ptr<CountingFlow> r, int* in_order) {
  const std::string path = dgram_path("slow");
  const int receiver = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  REQUIRE(::bind(receiver, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  DatagramConnection c =
      co_await loop.create_datagram_endpoint(give(r), {.remote_addr = SocketAddress::unix_path(path)});
  constexpr int kCount = 3000;
  for (int i = 0; i < kCount; ++i) {
    std::string d = std::to_string(i) + ":";
    d.resize(2048, 'x');
    c.first->sendto(d);
  }
  CHECK(c.first->get_write_buffer_size() > 64 * 1024);
  CHECK(r->pauses == 1);
  CHECK(r->resumes == 0);
  char buf[4096];
  int got = 0;
  for (double last = loop.time(); got < kCount && loop.time() - last < 5.0;) {
    const ssize_t n = ::recv(receiver, buf, sizeof buf, 0);
    if (n < 0) {
      co_await sleep(0.001);  // let the transport send what it queued
      continue;
    }
    last = loop.time();
    if (n == 2048 && std::atoi(buf) == got) ++*in_order;
    ++got;
  }
  INFO("still queued: " << c.first->get_write_buffer_size());
  CHECK(got == kCount);
  CHECK(c.first->get_write_buffer_size() == 0);
  CHECK(r->resumes == 1);
  c.first->close();
  co_await r->lost;
  ::close(receiver);
  ::unlink(path.c_str());
}

TEST_CASE_METHOD(NativeFixture, "Unix datagrams: a receiver that does not read; pause, resume, nothing lost",
                 "[datagrams][unix][flow]") {
  auto r = std::make_shared<CountingFlow>(*loop);
  int in_order = 0;
  loop->run_until_complete(unix_dgram_backpressure(*loop, r, &in_order));
  CHECK(in_order == 3000);
}

static Coro<void> unix_dgram_nobody(EventLoop& loop, std::shared_ptr<DatagramRecorder> r) {
  r->enough = loop.create_future<void>();
  const SocketAddress me = SocketAddress::unix_path(dgram_path("lonely"));
  DatagramConnection c = co_await loop.create_datagram_endpoint(give(r), {.local_addr = me});
  c.first->sendto("anyone?", SocketAddress::unix_path(dgram_path("nobody")));
  co_await sleep(0);
  REQUIRE(r->errors.size() == 1);  // FileNotFoundError in asyncio
  CHECK(r->errors[0] == std::make_error_code(std::errc::no_such_file_or_directory).message());
  CHECK_FALSE(c.first->is_closing());
  c.first->abort();
  co_await r->lost;
  ::unlink(me.host_c_str());
}

TEST_CASE_METHOD(NativeFixture, "Unix datagrams: sending to a path nobody bound reaches error_received",
                 "[datagrams][unix][faults]") {
  auto r = std::make_shared<DatagramRecorder>(*loop);
  loop->run_until_complete(unix_dgram_nobody(*loop, r));
}
#endif  // __EMSCRIPTEN__
