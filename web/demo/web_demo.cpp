// The browser demo: an echo server and clients on the page's virtual network, driven by the
// page's own event loop (eddy::wasm::drive). The page (web/demo.js) starts runs, changes the link
// and the water marks, and reads the counters as JSON; the Playwright test asserts from them.
#include <emscripten.h>

#include <cstdio>
#include <string>
#include <vector>

#include "eddy/eddy.hpp"
#include "host/host_driver.hpp"
#include "selector/virtual_network.hpp"

namespace {

using namespace eddy;

struct Config {
  int clients = 4;
  double megabytes = 1;  // per client
  int message = 16384;
  double latency = 0;    // seconds, one way
  double bandwidth = 0;  // bytes per second, 0: unlimited
  int high = 64 * 1024, low = 16 * 1024;
  double slow = 0;  // the server stops reading this long after every 256 KiB
};

struct ClientState {
  std::size_t sent = 0, echoed = 0, buffer = 0, max_buffer = 0;
  int pauses = 0, resumes = 0;
  bool ok = true, done = false;
};

struct Run {
  Config config;
  std::vector<ClientState> clients;
  int server_pauses = 0;
  bool running = false;
  double started = 0, finished = 0;
  std::string error;
};

LoopRef g_loop;
Run g_run;
std::uint16_t g_next_port = 7000;

char expected_byte(int client, std::size_t offset) {
  return static_cast<char>('a' + (offset * 7 + static_cast<std::size_t>(client)) % 26);
}

// Echoes, and stops reading while its own writes are paused (backpressure end to end). With
// `slow` it also naps after every 256 KiB, a slow consumer.
struct EchoServer : Protocol {
  Ref<Transport> transport;
  std::size_t since_nap = 0;
  bool paused_by_flow = false;
  void connection_made(Ref<Transport> t) override { transport = t; }
  void data_received(std::string_view d) override {
    transport->write(d);
    since_nap += d.size();
    if (g_run.config.slow > 0 && since_nap >= 256 * 1024) {
      since_nap = 0;
      ++g_run.server_pauses;
      transport->pause_reading();
      Ref<Transport> t = transport;
      g_loop->call_later(g_run.config.slow, [this, t] {
        if (!t->is_closing() && !paused_by_flow) t->resume_reading();
      });
    }
  }
  void pause_writing() override {
    paused_by_flow = true;
    transport->pause_reading();
  }
  void resume_writing() override {
    paused_by_flow = false;
    transport->resume_reading();
  }
  void connection_lost(std::exception_ptr) override { transport.reset(); }
};

struct Client : Protocol {
  explicit Client(int index) : index(index), lost(g_loop->create_future<void>()) {}
  int index;
  Ref<Transport> transport;
  Future<void> lost;
  Future<void> resumed;
  Future<void> all_echoed;
  std::exception_ptr error;
  ClientState& state() { return g_run.clients[index]; }
  void connection_made(Ref<Transport> t) override { transport = t; }
  void data_received(std::string_view d) override {
    ClientState& s = state();
    for (std::size_t i = 0; i < d.size() && s.ok; ++i)
      if (d[i] != expected_byte(index, s.echoed + i)) s.ok = false;
    s.echoed += d.size();
    if (all_echoed && !all_echoed.done() && s.echoed >= s.sent && s.sent == total())
      all_echoed.set_result();
  }
  void pause_writing() override { ++state().pauses; }
  void resume_writing() override {
    ++state().resumes;
    if (resumed && !resumed.done()) resumed.set_result();
  }
  void connection_lost(std::exception_ptr e) override {
    error = e;
    transport.reset();
    if (!lost.done()) lost.set_result();
    if (all_echoed && !all_echoed.done()) all_echoed.set_result();
  }
  std::size_t total() const {
    return static_cast<std::size_t>(g_run.config.megabytes * 1024 * 1024);
  }
};

Coro<void> run_client(int index, std::uint16_t port) {
  auto client = std::make_shared<Client>(index);
  ProtocolFactory factory = [client] { return std::static_pointer_cast<BaseProtocol>(client); };
  Connection c = co_await g_loop->create_connection(factory, "10.0.0.2", port);
  c.first->set_write_buffer_limits(g_run.config.high, g_run.config.low);
  ClientState& s = g_run.clients[index];
  const std::size_t total = client->total();
  std::string chunk;
  while (s.sent < total && client->transport) {
    const std::size_t n = std::min<std::size_t>(g_run.config.message, total - s.sent);
    chunk.resize(n);
    for (std::size_t i = 0; i < n; ++i) chunk[i] = expected_byte(index, s.sent + i);
    client->transport->write(chunk);
    s.sent += n;
    s.buffer = client->transport->get_write_buffer_size();
    s.max_buffer = std::max(s.max_buffer, s.buffer);
    if (s.pauses > s.resumes) {
      client->resumed = g_loop->create_future<void>();
      co_await client->resumed;
      if (client->transport) s.buffer = client->transport->get_write_buffer_size();
    }
  }
  if (s.echoed < total && client->transport) {
    client->all_echoed = g_loop->create_future<void>();
    co_await client->all_echoed;
  }
  if (client->transport) client->transport->close();
  co_await client->lost;
  s.buffer = 0;
  s.done = true;
  if (s.echoed != total) s.ok = false;
}

Coro<void> run_demo() {
  const std::uint16_t port = g_next_port++;
  auto& net = vnet::network(*g_loop);
  net.set_link("10.0.0.2", {.latency = g_run.config.latency, .bandwidth = g_run.config.bandwidth});
  ProtocolFactory server_factory = [] {
    return std::static_pointer_cast<BaseProtocol>(std::make_shared<EchoServer>());
  };
  Ref<Server> server = co_await g_loop->create_server(server_factory, "10.0.0.2", port);
  g_run.started = g_loop->time();
  std::vector<Task<void>> tasks;
  for (int i = 0; i < g_run.config.clients; ++i)
    tasks.push_back(g_loop->create_task(run_client(i, port)));
  auto outcomes = co_await gather(return_exceptions, std::move(tasks));
  for (auto& o : outcomes)
    if (!o.ok() && g_run.error.empty()) {
      g_run.error = eddy::exception_text(o.exception());
      for (char& ch : g_run.error)
        if (ch == '"' || ch == '\\') ch = '\'';
    }
  g_run.finished = g_loop->time();
  server->close();
  co_await server->wait_closed();
  g_run.running = false;
}

// Round-trips `total` bytes through a real WebSocket echo server, via the virtual network's route.
struct WebSocketRun {
  std::string status = "idle";
  std::size_t bytes = 0;
  double elapsed = 0;
} g_ws;

Coro<void> websocket_echo(std::string url, std::size_t total) {
  vnet::network(*g_loop).route_websocket("echo.ws.test", 80, url);
  const double t0 = g_loop->time();
  StreamPair pair = co_await open_connection("echo.ws.test", 80);
  auto [reader, writer] = pair;
  std::size_t sent = 0;
  std::string chunk;
  while (sent < total) {
    const std::size_t n = std::min<std::size_t>(16384, total - sent);
    chunk.resize(n);
    for (std::size_t i = 0; i < n; ++i) chunk[i] = expected_byte(99, sent + i);
    writer->write(chunk);
    sent += n;
    co_await writer->drain();
  }
  std::string got;
  while (got.size() < total) {
    std::string piece = co_await reader->read(65536);
    if (piece.empty()) break;
    got += piece;
  }
  bool ok = got.size() == total;
  for (std::size_t i = 0; ok && i < got.size(); ++i) ok = got[i] == expected_byte(99, i);
  g_ws.bytes = got.size();
  g_ws.elapsed = g_loop->time() - t0;
  writer->close();
  co_await writer->wait_closed();
  g_ws.status = ok ? "ok" : "mismatch";
}

}  // namespace

extern "C" {

// Starts a WebSocket round trip of `bytes` through `url` (status in demo_stats().websocket).
EMSCRIPTEN_KEEPALIVE void demo_websocket_echo(const char* url, int bytes) {
  g_ws = WebSocketRun{};
  g_ws.status = "running";
  Task<void> t =
      g_loop->create_task(websocket_echo(url, static_cast<std::size_t>(bytes)), "websocket echo");
  t.add_done_callback([](Task<void> done) {
    if (done.exception()) {
      g_ws.status = "error: " + eddy::exception_text(done.exception());
      for (char& ch : g_ws.status)
        if (ch == '"' || ch == '\\') ch = '\'';
    }
  });
}

// Starts a run; returns 0, or -1 while one is still running.
EMSCRIPTEN_KEEPALIVE int demo_start(int clients, double megabytes, int message, double latency_ms,
                                    double bandwidth, int high, int low, double slow_ms) {
  if (g_run.running) return -1;
  g_run = Run{};
  g_run.config = Config{clients,   megabytes, message, latency_ms / 1000.0,
                        bandwidth, high,      low,     slow_ms / 1000.0};
  g_run.clients.resize(static_cast<std::size_t>(clients));
  g_run.running = true;
  g_loop->create_task(run_demo(), "demo");
  return 0;
}

// Changes the link of the running demo, live.
EMSCRIPTEN_KEEPALIVE void demo_set_link(double latency_ms, double bandwidth) {
  g_run.config.latency = latency_ms / 1000.0;
  g_run.config.bandwidth = bandwidth;
  vnet::network(*g_loop).set_link("10.0.0.2",
                                  {.latency = latency_ms / 1000.0, .bandwidth = bandwidth});
}

// Everything the page shows, as JSON.
EMSCRIPTEN_KEEPALIVE const char* demo_stats() {
  static std::string json;
  std::size_t sent = 0, echoed = 0;
  int pauses = 0, resumes = 0, done = 0;
  bool ok = true;
  std::string clients = "[";
  for (std::size_t i = 0; i < g_run.clients.size(); ++i) {
    const ClientState& c = g_run.clients[i];
    sent += c.sent;
    echoed += c.echoed;
    pauses += c.pauses;
    resumes += c.resumes;
    done += c.done;
    ok = ok && c.ok;
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "%s{\"sent\":%zu,\"echoed\":%zu,\"buffer\":%zu,\"max_buffer\":%zu,\"pauses\":%d,"
                  "\"resumes\":%d}",
                  i ? "," : "", c.sent, c.echoed, c.buffer, c.max_buffer, c.pauses, c.resumes);
    clients += buf;
  }
  clients += "]";
  const double end = g_run.running ? (g_loop ? g_loop->time() : 0) : g_run.finished;
  const double elapsed = g_run.started > 0 ? end - g_run.started : 0;
  const auto expected =
      static_cast<std::size_t>(g_run.config.megabytes * 1024 * 1024) * g_run.clients.size();
  const auto ns = vnet::network(*g_loop).stats();
  const auto ds = eddy::wasm::driver_stats();
  char head[900];
  std::snprintf(
      head, sizeof head,
      "{\"running\":%s,\"ok\":%s,\"error\":\"%s\",\"sent\":%zu,\"echoed\":%zu,\"expected\":%zu,"
      "\"pauses\":%d,\"resumes\":%d,\"server_pauses\":%d,\"done_clients\":%d,\"elapsed\":%.6f,"
      "\"mib_per_s\":%.3f,\"high\":%d,\"low\":%d,\"latency_ms\":%.3f,\"bandwidth\":%.0f,"
      "\"net\":{\"connections\":%llu,\"bytes_carried\":%llu,\"segments\":%llu,\"resets\":%llu},"
      "\"driver\":{\"host_tasks\":%llu,\"host_timers\":%llu,\"passes\":%llu},\"clients\":",
      g_run.running ? "true" : "false", ok && g_run.error.empty() ? "true" : "false",
      g_run.error.c_str(), sent, echoed, expected, pauses, resumes, g_run.server_pauses, done,
      elapsed, elapsed > 0 ? static_cast<double>(echoed) / (1024.0 * 1024.0) / elapsed : 0.0,
      g_run.config.high, g_run.config.low, g_run.config.latency * 1000, g_run.config.bandwidth,
      (unsigned long long)ns.connections, (unsigned long long)ns.bytes_carried,
      (unsigned long long)ns.segments, (unsigned long long)ns.resets,
      (unsigned long long)ds.host_tasks, (unsigned long long)ds.host_timers,
      (unsigned long long)ds.passes);
  char ws[400];
  std::snprintf(ws, sizeof ws, ",\"websocket\":{\"status\":\"%s\",\"bytes\":%zu,\"elapsed\":%.6f}",
                g_ws.status.c_str(), g_ws.bytes, g_ws.elapsed);
  json = std::string(head) + clients + ws + "}";
  for (char& ch : json)
    if (ch == '\n') ch = ' ';
  return json.c_str();
}

}  // extern "C"

int main() {
  g_loop = new_event_loop();
  set_event_loop(g_loop);
  eddy::wasm::drive(*g_loop);
  EM_ASM({
    if (Module.onEddyReady) Module.onEddyReady();
  });
  return 0;
}
