// Eddy's echo server for the harness in ../shared/bench: `echo_server [--api
// protocol|buffered|streams] ADDR`, ADDR a TCP port on 127.0.0.1 or unix:PATH. Flow control as
// the raw libuv anchor: stop reading above 1 MiB queued, resume at 256 KiB (the transport's
// water marks).
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>

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
  void buffer_updated(std::size_t n) override {
    transport->write(std::string_view(buffer.get(), n));
  }
  void pause_writing() override { transport->pause_reading(); }
  void resume_writing() override { transport->resume_reading(); }
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

// Streams API: the loop asyncio users write (read(256 KiB) -> write -> drain), as the harness's
// asyncio-streams row. The write buffer limits are the other modes' water marks.
static Coro<void> echo_streams(std::shared_ptr<StreamReader> reader,
                               std::shared_ptr<StreamWriter> writer) {
  writer->transport()->set_write_buffer_limits(1 << 20, 256 << 10);
  try {
    for (;;) {
      std::string data = co_await reader->read(262144);
      if (data.empty()) break;
      writer->write(data);
      co_await writer->drain();
    }
  } catch (const std::system_error&) {
    // ConnectionError (reset by the peer): close as asyncio's `except ConnectionError` does.
  }
  writer->close();
}

// Built outside the coroutine: gcc 12 cannot keep braced lists in a coroutine frame. The reader
// limit of 1 MiB keeps its read flow control (pause above 2 * limit buffered) out of the way of
// the harness's pipelined mode (at most 256 KiB unechoed per connection), as the transport's
// own 1 MiB high-water mark does for the write side.
static StreamServerOptions streams_options() {
  StreamServerOptions options;
  options.limit = 1 << 20;
  options.server.backlog = 1024;
  return options;
}

static Coro<void> serve_streams(std::string addr) {
  ClientConnectedCallback cb = echo_streams;
  const StreamServerOptions options = streams_options();
  Ref<Server> server;
  if (addr.rfind("unix:", 0) == 0) {
    std::string path = addr.substr(5);
    server = co_await start_unix_server(cb, path, options);
  } else {
    std::string host = "127.0.0.1";
    const auto port = static_cast<std::uint16_t>(std::stoi(addr));
    server = co_await start_server(cb, host, port, options);
  }
  std::fprintf(stderr, "eddy echo (streams) on %s\n", addr.c_str());
  co_await server->serve_forever();
}

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
    server = co_await loop.create_server(
        factory, "127.0.0.1", static_cast<std::uint16_t>(std::stoi(addr)), {.backlog = 1024});
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
  if (addr.empty() || (api != "protocol" && api != "buffered" && api != "streams")) {
    std::fprintf(stderr, "usage: %s [--api protocol|buffered|streams] PORT|unix:PATH\n", argv[0]);
    return 2;
  }
  if (api == "streams")
    eddy::run(serve_streams(addr));
  else
    eddy::run(serve(api, addr));
}
