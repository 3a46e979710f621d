// Eddy's echo server for the harness in ../shared/bench: `echo_server [--api protocol|buffered]
// ADDR`, ADDR a TCP port on 127.0.0.1 or unix:PATH. Flow control as the raw libuv anchor:
// stop reading above 1 MiB queued, resume at 256 KiB (the transport's water marks).
#include <cstdio>
#include <cstring>
#include <string>

#include "eddy/eddy.hpp"

using namespace eddy;

// Protocol API: data arrives in the loop's read buffer and is written straight back.
struct EchoProtocol final : Protocol {
  Ref<Transport> transport;
  void connection_made(Ref<Transport> t) override {
    transport = std::move(t);
    transport->set_write_buffer_limits(1 << 20, 256 << 10);
  }
  void data_received(std::string_view data) override { transport->write(data); }
  void pause_writing() override { transport->pause_reading(); }
  void resume_writing() override { transport->resume_reading(); }
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

// BufferedProtocol API: reads land in our own 256 KiB buffer.
struct EchoBuffered final : BufferedProtocol {
  Ref<Transport> transport;
  std::unique_ptr<char[]> buffer{new char[256 * 1024]};
  void connection_made(Ref<Transport> t) override {
    transport = std::move(t);
    transport->set_write_buffer_limits(1 << 20, 256 << 10);
  }
  std::span<char> get_buffer(std::size_t) override { return {buffer.get(), 256 * 1024}; }
  void buffer_updated(std::size_t n) override { transport->write(std::string_view(buffer.get(), n)); }
  void pause_writing() override { transport->pause_reading(); }
  void resume_writing() override { transport->resume_reading(); }
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

static Coro<void> serve(std::string api, std::string addr) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory;
  if (api == "buffered")
    factory = [] { return std::make_shared<EchoBuffered>(); };
  else
    factory = [] { return std::make_shared<EchoProtocol>(); };
  Ref<Server> server;
  if (addr.rfind("unix:", 0) == 0)
    server = co_await loop.create_unix_server(factory, addr.substr(5), {.backlog = 1024});
  else
    server = co_await loop.create_server(factory, "127.0.0.1", static_cast<std::uint16_t>(std::stoi(addr)),
                                         {.backlog = 1024});
  std::fprintf(stderr, "eddy echo (%s) on %s\n", api.c_str(), addr.c_str());
  co_await server->serve_forever();
}

int main(int argc, char** argv) {
  std::string api = "protocol", addr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--api") == 0 && i + 1 < argc)
      api = argv[++i];
    else
      addr = argv[i];
  }
  if (addr.empty() || (api != "protocol" && api != "buffered")) {
    std::fprintf(stderr, "usage: %s [--api protocol|buffered] PORT|unix:PATH\n", argv[0]);
    return 2;
  }
  eddy::run(serve(api, addr));
}
