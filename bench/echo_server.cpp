// Eddy's echo server for the harness in ../shared/bench: `echo_server [--api
// protocol|buffered|streams] [--inspect enabled|served|watched] ADDR`, ADDR a TCP port on 127.0.0.1
// or unix:PATH.
// Flow control as the raw libuv anchor: stop reading above 1 MiB queued, resume at 256 KiB (the
// transport's water marks). `--inspect` measures what the inspector costs: `enabled` records and
// publishes snapshots nobody reads, `served` adds the agent, `watched` a client that decodes every
// update.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <thread>

#include "eddy/eddy.hpp"
#include "eddy/inspect_wire.hpp"
#include "eddy/inspector_agent.hpp"

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

// BufferedProtocol API: reads land in our own 256 KiB buffer, page-aligned as the transports'
// own read buffers (the kernel copies into a misaligned one at about half speed on this VM).
struct EchoBuffered final : BufferedProtocol {
  struct Free {
    void operator()(char* p) const noexcept { ::operator delete[](p, std::align_val_t{4096}); }
  };
  Ref<Transport> transport;
  std::unique_ptr<char[], Free> buffer{new (std::align_val_t{4096}) char[256 * 1024]};
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

// The watching client: a thread that attaches to the agent over TCP and parses every update, as
// an inspector would (a client process would cost the machine the same).
static std::unique_ptr<inspector::Agent> g_agent;
static void watch(std::uint16_t port, std::string token) {
  pthread_setname_np(pthread_self(), "inspector-cli");
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return;
  const std::string hello = inspect::client_hello(token);
  if (::write(fd, hello.data(), hello.size()) < 0) return;
  std::string buf;
  std::uint64_t updates = 0, bytes = 0;
  char chunk[65536];
  for (ssize_t n; (n = ::read(fd, chunk, sizeof chunk)) > 0;) {
    buf.append(chunk, static_cast<std::size_t>(n));
    bytes += static_cast<std::uint64_t>(n);
    for (std::size_t nl; (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1))
      if (inspect::json::parse(std::string_view(buf).substr(0, nl)) && ++updates % 50 == 0)
        std::fprintf(stderr, "inspector client: %llu messages, %llu bytes\n",
                     static_cast<unsigned long long>(updates),
                     static_cast<unsigned long long>(bytes));
  }
  std::fprintf(stderr, "inspector client: %llu messages, %llu bytes\n",
               static_cast<unsigned long long>(updates), static_cast<unsigned long long>(bytes));
}

static Coro<void> inspected(Coro<void> server, std::string mode) {
  if (mode == "enabled") {
    inspect::enable(get_running_loop());  // recording and publishing, nobody reading
    co_await std::move(server);
    co_return;
  }
  g_agent = inspector::serve(get_running_loop());
  if (mode == "watched") std::thread(watch, g_agent->port(), g_agent->token()).detach();
  std::fprintf(stderr, "inspector agent on %s\n", g_agent->url().c_str());
  co_await std::move(server);
}

int main(int argc, char** argv) {
  std::string api = "protocol", addr;
  std::string inspect_mode;  // enabled | served | watched
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--api") == 0 && i + 1 < argc)
      api = argv[++i];
    else if (std::strcmp(argv[i], "--inspect") == 0 && i + 1 < argc)
      inspect_mode = argv[++i];
    else
      addr = argv[i];
  }
  if (addr.empty() || (api != "protocol" && api != "buffered" && api != "streams")) {
    std::fprintf(stderr,
                 "usage: %s [--api protocol|buffered|streams] [--inspect enabled|served|watched] "
                 "PORT|unix:PATH\n",
                 argv[0]);
    return 2;
  }
  Coro<void> server = api == "streams" ? serve_streams(addr) : serve(api, addr);
  if (!inspect_mode.empty())
    eddy::run(inspected(std::move(server), inspect_mode));
  else
    eddy::run(std::move(server));
}
