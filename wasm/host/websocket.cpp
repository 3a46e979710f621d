// The virtual network's way out in WebAssembly: stream connections routed with
// Network::route_websocket are carried by the host's WebSocket (a page's, or Node's where it has
// one). Bytes written become binary messages; messages that arrive are appended to the stream;
// the socket's send buffer is bounded by what the WebSocket still buffers (bufferedAmount).
#include <emscripten.h>

#include <string>
#include <unordered_map>

#include "selector/virtual_sockets.hpp"

// clang-format off
EM_JS(int, eddy_js_has_websocket, (), { return typeof WebSocket === 'function' ? 1 : 0; });
EM_JS(void, eddy_js_ws_open, (int id, const char* url), {
  if (!Module.__eddyWs) Module.__eddyWs = {};
  let ws;
  try { ws = new WebSocket(UTF8ToString(url)); } catch (e) { setTimeout(function () { Module._eddy_ws_event(id, 4, 0); }, 0); return; }
  ws.binaryType = 'arraybuffer';
  Module.__eddyWs[id] = ws;
  let opened = false;
  ws.onopen = function () { opened = true; Module._eddy_ws_event(id, 0, 0); };
  ws.onmessage = function (ev) {
    const bytes = typeof ev.data === 'string' ? new TextEncoder().encode(ev.data) : new Uint8Array(ev.data);
    const p = Module._eddy_ws_buffer(bytes.length);
    HEAPU8.set(bytes, p);
    Module._eddy_ws_event(id, 1, bytes.length);
  };
  ws.onclose = function (ev) {
    delete Module.__eddyWs[id];
    Module._eddy_ws_event(id, opened ? (ev.wasClean ? 2 : 3) : 4, 0);
  };
});
EM_JS(void, eddy_js_ws_send, (int id, const char* data, int n), {
  const ws = Module.__eddyWs && Module.__eddyWs[id];
  if (ws && ws.readyState === 1) ws.send(HEAPU8.slice(data, data + n));
});
EM_JS(double, eddy_js_ws_buffered, (int id), {
  const ws = Module.__eddyWs && Module.__eddyWs[id];
  return ws ? ws.bufferedAmount : 0;
});
EM_JS(void, eddy_js_ws_close, (int id), {
  const ws = Module.__eddyWs && Module.__eddyWs[id];
  if (ws && ws.readyState < 2) ws.close(1000);
});
// clang-format on

namespace eddy::vnet::detail {

namespace {

class WebSocketGateway;
struct Route {
  WebSocketGateway* gateway;
  int fd;
};
std::unordered_map<int, Route> g_connections;  // WebSocket id -> its socket
int g_next_id = 1;
std::string g_incoming;

class WebSocketGateway final : public Gateway {
 public:
  explicit WebSocketGateway(NetworkCore& net) : net_(net) {}
  ~WebSocketGateway() override {
    for (auto it = g_connections.begin(); it != g_connections.end();) {
      if (it->second.gateway == this) {
        eddy_js_ws_close(it->first);
        it = g_connections.erase(it);
      } else {
        ++it;
      }
    }
  }

  void open(int fd, const std::string& url) override {
    const int id = g_next_id++;
    g_connections[id] = {this, fd};
    ids_[fd] = id;
    eddy_js_ws_open(id, url.c_str());
  }
  void send(int fd, std::string_view data) override {
    if (auto it = ids_.find(fd); it != ids_.end())
      eddy_js_ws_send(it->second, data.data(), static_cast<int>(data.size()));
  }
  std::size_t buffered(int fd) override {
    auto it = ids_.find(fd);
    return it == ids_.end() ? 0 : static_cast<std::size_t>(eddy_js_ws_buffered(it->second));
  }
  void close(int fd) override {
    if (auto it = ids_.find(fd); it != ids_.end()) eddy_js_ws_close(it->second);
  }
  std::string name() const override { return "WebSocket"; }

  void event(int id, int fd, int kind, std::string_view data) {
    switch (kind) {
      case 0:
        net_.gateway_opened(fd, {});
        break;
      case 1:
        net_.gateway_data(fd, data);
        break;
      case 4:
        net_.gateway_opened(fd, std::make_error_code(std::errc::connection_refused));
        [[fallthrough]];
      default:
        net_.gateway_closed(fd, kind == 2);
        ids_.erase(fd);
        g_connections.erase(id);
    }
  }

 private:
  NetworkCore& net_;
  std::unordered_map<int, int> ids_;  // fd -> WebSocket id
};

}  // namespace

std::unique_ptr<Gateway> make_websocket_gateway(NetworkCore& net) {
  if (!eddy_js_has_websocket()) return nullptr;
  return std::make_unique<WebSocketGateway>(net);
}

}  // namespace eddy::vnet::detail

extern "C" {

EMSCRIPTEN_KEEPALIVE char* eddy_ws_buffer(int n) {
  eddy::vnet::detail::g_incoming.resize(static_cast<std::size_t>(n));
  return eddy::vnet::detail::g_incoming.data();
}

EMSCRIPTEN_KEEPALIVE void eddy_ws_event(int id, int kind, int n) {
  using namespace eddy::vnet::detail;
  auto it = g_connections.find(id);
  if (it == g_connections.end()) return;
  Route r = it->second;
  r.gateway->event(
      id, r.fd, kind,
      std::string_view(g_incoming.data(), kind == 1 ? static_cast<std::size_t>(n) : 0));
}

}  // extern "C"
