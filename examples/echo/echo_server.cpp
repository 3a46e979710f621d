// Echo server with asyncio's Protocol API: `eddy_echo_server [PORT | unix:PATH]`. Prints where it
// listens, echoes every connection, and shuts down gracefully after `--max N` connections (0:
// serve forever). Flow control: when the peer reads slower than it sends, stop reading until
// our write buffer drains (pause_writing / resume_writing).
#include <cstdio>
#include <cstring>
#include <string>

#include "eddy/eddy.hpp"

using namespace eddy;

struct Echo final : Protocol {
  explicit Echo(std::function<void()> on_done) : on_done(std::move(on_done)) {}
  std::function<void()> on_done;
  Ref<Transport> transport;
  std::size_t bytes = 0;

  void connection_made(Ref<Transport> t) override {
    transport = std::move(t);
    auto peer = std::any_cast<SocketAddress>(transport->get_extra_info("peername", SocketAddress{}));
    std::printf("connection from %s\n", peer.to_string().c_str());
  }
  void data_received(std::string_view data) override {
    bytes += data.size();
    transport->write(data);
  }
  void pause_writing() override { transport->pause_reading(); }
  void resume_writing() override { transport->resume_reading(); }
  void connection_lost(std::exception_ptr exc) override {
    std::printf("connection closed after %zu bytes%s\n", bytes, exc ? " (with an error)" : "");
    std::fflush(stdout);
    transport.reset();
    on_done();
  }
};

static Coro<int> serve(std::string where, int max_connections) {
  EventLoop& loop = get_running_loop();
  int finished = 0;
  Future<void> enough = loop.create_future<void>();
  ProtocolFactory factory = [&] {
    return std::make_shared<Echo>([&] {
      if (++finished == max_connections && !enough.done()) enough.set_result();
    });
  };
  Ref<Server> server;
  if (where.rfind("unix:", 0) == 0)
    server = co_await loop.create_unix_server(factory, where.substr(5));
  else
    server = co_await loop.create_server(factory, "127.0.0.1", static_cast<std::uint16_t>(std::stoi(where)));
  for (const ServerSocket& s : server->sockets()) std::printf("listening on %s\n", s.address.to_string().c_str());
  std::fflush(stdout);
  if (max_connections > 0) {
    co_await enough;
    server->close();
    co_await server->wait_closed();
  } else {
    co_await server->serve_forever();
  }
  std::printf("served %d connections\n", finished);
  co_return 0;
}

int main(int argc, char** argv) {
  std::string where = "8888";
  int max_connections = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max") == 0 && i + 1 < argc)
      max_connections = std::atoi(argv[++i]);
    else
      where = argv[i];
  }
  return eddy::run(serve(where, max_connections));
}
