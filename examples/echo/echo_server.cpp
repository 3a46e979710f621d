// Echo server with asyncio's Protocol API: `eddy_echo_server [--max N] [PORT | unix:PATH]` (by
// default 127.0.0.1:8888). Prints where it listens, echoes every connection, and shuts down
// gracefully after `--max N` connections (0: serve until Ctrl-C). Flow control: when the peer reads slower than it sends, stop reading until
// our write buffer drains (pause_writing / resume_writing).
#include <cstdio>
#include <cstring>
#include <string>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

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
    const std::string error = eddy::exception_text(exc);
    std::printf("connection closed after %zu bytes%s%s\n", bytes, error.empty() ? "" : ": ",
                error.c_str());
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
    server = co_await loop.create_server(factory, "127.0.0.1", examples::parse_port(where));
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
  std::string where, max = "0";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max") == 0 && i + 1 < argc) {
      max = argv[++i];
    } else if (argv[i][0] == '-' || !where.empty()) {  // --help, an unknown flag, a second place
      std::fprintf(stderr, "usage: %s [--max N] [PORT | unix:PATH]   (default: 127.0.0.1:8888)\n",
                   argv[0]);
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    } else {
      where = argv[i];
    }
  }
  if (where.empty()) where = "8888";
  return examples::run_example([&] {
    const int max_connections =
        static_cast<int>(examples::parse_number(max, 1000000, "connection count"));
    return eddy::run(serve(where, max_connections));
  });
}
