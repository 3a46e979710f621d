// Datagram transports: UDP with Python's asyncio as the peer in both directions, asyncio's
// address checks, and error_received for ICMP errors (the transport stays open). Loop kinds
// without sockets refuse with NotSupportedError.
#include <algorithm>

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

LOOP_TEST("create_datagram_endpoint: NotSupportedError where there are no sockets", "[datagrams]") {
  auto& loop = *this->loop;
  if (loop.capabilities().supports("create_datagram_endpoint")) return;
  auto attempt = [](EventLoop& l) -> Coro<void> {
    co_await l.create_datagram_endpoint([] { return std::shared_ptr<DatagramProtocol>(); },
                                        {.remote_addr = SocketAddress::ip("127.0.0.1", 9)});
  };
  CHECK_THROWS_AS(loop.run_until_complete(attempt(loop)), NotSupportedError);
}

#ifndef __EMSCRIPTEN__
#include "peer.hpp"

using NativeFixture = LoopFixture<PlatformLoop>;

static DatagramProtocolFactory give(std::shared_ptr<DatagramRecorder> r) {
  return [r] { return std::static_pointer_cast<DatagramProtocol>(r); };
}

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
#endif  // __EMSCRIPTEN__
