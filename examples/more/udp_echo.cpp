// UDP echo with asyncio's DatagramProtocol: `eddy_udp_echo` starts a server on 127.0.0.1, sends it
// three datagrams from a client endpoint, prints the echoes and exits 0 if all came back.
#include <cstdio>
#include <set>
#include <string>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

using namespace eddy;

struct EchoServer final : DatagramProtocol {
  Ref<DatagramTransport> transport;
  void connection_made(Ref<DatagramTransport> t) override { transport = std::move(t); }
  void datagram_received(std::string_view data, const SocketAddress& from) override {
    std::printf("server: %zu bytes from %s\n", data.size(), from.to_string().c_str());
    transport->sendto(data, from);
  }
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

struct Client final : DatagramProtocol {
  explicit Client(Future<void> done) : done(std::move(done)) {}
  Future<void> done;
  std::set<std::string> echoed;
  void datagram_received(std::string_view data, const SocketAddress&) override {
    std::printf("client: echo '%.*s'\n", static_cast<int>(data.size()), data.data());
    echoed.emplace(data);
    if (echoed.size() == 3 && !done.done()) done.set_result();
  }
};

static Coro<int> udp_echo() {
  EventLoop& loop = get_running_loop();
  DatagramConnection server = co_await loop.create_datagram_endpoint(
      [] { return std::make_shared<EchoServer>(); }, {.local_addr = SocketAddress::ip("127.0.0.1", 0)});
  const auto where = std::any_cast<SocketAddress>(server.first->get_extra_info("sockname"));
  std::printf("listening on %s\n", where.to_string().c_str());
  auto client = std::make_shared<Client>(loop.create_future<void>());
  DatagramProtocolFactory factory = [client] { return client; };  // named: see docs/api.md on gcc 12
  DatagramConnection c = co_await loop.create_datagram_endpoint(factory, {.remote_addr = where});
  c.first->sendto("one");
  c.first->sendto("two");
  c.first->sendto("three");
  TimerHandle timeout = loop.call_later(5.0, [f = client->done]() mutable {
    if (!f.done()) f.set_result();
  });
  co_await client->done;
  timeout.cancel();
  c.first->close();
  server.first->close();
  co_await sleep(0);  // let connection_lost run
  co_return client->echoed.size() == 3 ? 0 : 1;
}

int main() {
  return examples::run_example([] { return eddy::run(udp_echo()); });
}
