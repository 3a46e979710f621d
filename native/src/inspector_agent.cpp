// The inspector agent on libuv (see eddy/inspector_agent.hpp): a thread running its own Eddy loop
// with one listening socket that speaks the raw line protocol, WebSocket and plain HTTP. Each
// connection is a small state machine; any malformed, oversized or unauthenticated input closes
// that connection only.
#include "eddy/inspector_agent.hpp"

#include <openssl/evp.h>
#include <pthread.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "eddy/eddy.hpp"
#include "eddy/inspect_wire.hpp"
#include "eddy/version.hpp"

namespace eddy::inspector {

namespace {

constexpr std::size_t kMaxRequestHead = 8192;
constexpr std::size_t kMaxWebSocketPayload = 64 * 1024;

std::string random_token() {
  std::random_device rd;
  std::string t;
  static const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) t += hex[rd() & 15];
  return t;
}

bool same_token(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string base64(const unsigned char* data, std::size_t n) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < n; i += 3) {
    const std::uint32_t v = (std::uint32_t(data[i]) << 16) |
                            (i + 1 < n ? std::uint32_t(data[i + 1]) << 8 : 0) |
                            (i + 2 < n ? std::uint32_t(data[i + 2]) : 0);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += i + 1 < n ? t[(v >> 6) & 63] : '=';
    out += i + 2 < n ? t[v & 63] : '=';
  }
  return out;
}

std::string websocket_accept(const std::string& key) {
  const std::string text = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha1(), nullptr);
  return base64(digest, len);
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

const char* content_type(const std::string& path) {
  auto ends = [&](const char* ext) {
    const std::size_t n = std::strlen(ext);
    return path.size() >= n && path.compare(path.size() - n, n, ext) == 0;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript";
  if (ends(".wasm")) return "application/wasm";
  if (ends(".css")) return "text/css";
  if (ends(".png")) return "image/png";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

// An HTTP/1.1 response that closes the connection.
std::string http_response(int code, const char* reason, const char* type, const std::string& body) {
  std::ostringstream os;
  os << "HTTP/1.1 " << code << ' ' << reason << "\r\nContent-Type: " << type
     << "\r\nContent-Length: " << body.size()
     << "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
     << body;
  return os.str();
}

std::string websocket_frame(std::uint8_t opcode, std::string_view payload) {
  std::string f;
  f += static_cast<char>(0x80 | opcode);
  const std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n < 65536) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xFF);
  } else {
    f += static_cast<char>(127);
    for (int i = 7; i >= 0; --i)
      f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xFF);
  }
  f.append(payload.data(), payload.size());
  return f;
}

class AgentImpl;

// One client connection: sniffing -> (http | websocket | raw) -> authenticated -> streaming.
class Connection : public Protocol {
 public:
  Connection(AgentImpl& agent) : agent_(agent) {}
  void connection_made(Ref<Transport> t) override;
  void data_received(std::string_view data) override;
  void connection_lost(std::exception_ptr) override;

  bool authenticated() const noexcept { return authenticated_; }
  bool open() const noexcept { return transport_ && !transport_->is_closing(); }
  std::size_t backlog() const { return transport_ ? transport_->get_write_buffer_size() : 0; }
  void send_line(std::string_view line) {
    if (!open()) return;
    if (mode_ == Mode::websocket)
      transport_->write(websocket_frame(0x2, line));
    else
      transport_->write(line);
  }
  void refuse(std::string_view why);
  void close_now() {
    if (open()) transport_->close();
  }

  std::uint64_t last_seq = 0;
  std::uint64_t skipped_events = 0;
  inspect::Encoder encoder;

 private:
  enum class Mode { sniffing, http, raw, websocket };
  void on_bytes(std::string_view data);
  void handle_http_head();
  void serve_file(const std::string& path);
  void on_websocket_bytes(std::string_view data);
  void on_line(std::string_view line);

  AgentImpl& agent_;
  Ref<Transport> transport_;
  Mode mode_ = Mode::sniffing;
  std::string in_;     // unparsed bytes of the current layer
  std::string lines_;  // the line protocol's unparsed bytes (raw, or WebSocket payloads)
  bool authenticated_ = false;
  TimerHandle hello_deadline_;
};

class AgentImpl final : public Agent {
 public:
  AgentImpl(EventLoop& loop, ServeOptions options) : options_(std::move(options)) {
    if (options_.token.empty()) options_.token = random_token();
    feed_ = inspect::enable(loop, options_.inspect).feed();
    std::promise<std::uint16_t> bound;
    auto port = bound.get_future();
    thread_ = std::thread([this, p = std::move(bound)]() mutable {
      pthread_setname_np(pthread_self(), "eddy-inspector");  // as top -H and /proc show it
      run(std::move(p));
    });
    try {
      port_ = port.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }
  ~AgentImpl() override {
    if (EventLoop* l = running_.load())
      l->call_soon_threadsafe([this] {
        stopping_ = true;
        loop_->stop();
      });
    thread_.join();
  }

  std::uint16_t port() const override { return port_; }
  const std::string& token() const override { return options_.token; }
  std::string url() const override {
    return "http://" + options_.host + ":" + std::to_string(port_) + "/#token=" + options_.token;
  }
  std::size_t clients() const override { return authenticated_.load(); }
  std::uint64_t refused() const override { return refused_.load(); }
  std::uint64_t updates_sent() const override { return updates_.load(); }

  const ServeOptions& options() const noexcept { return options_; }
  EventLoop& loop() { return *loop_; }
  void count_refused() { ++refused_; }
  void authenticated(Connection* c) {
    ++authenticated_;
    clients_.push_back(c);
    c->send_line(inspect::welcome_message(std::string("eddy ") + eddy::version));
    push(*c);
  }
  void gone(Connection* c) {
    auto it = std::find(clients_.begin(), clients_.end(), c);
    if (it != clients_.end()) {
      clients_.erase(it);
      --authenticated_;
    }
    std::erase(connections_, c);
  }
  void connected(Connection* c) { connections_.push_back(c); }
  std::size_t open_connections() const { return connections_.size(); }

 private:
  void run(std::promise<std::uint16_t> bound) {
    LoopRef loop = new_event_loop();
    try {
      auto factory = [this] {
        return std::static_pointer_cast<BaseProtocol>(std::make_shared<Connection>(*this));
      };
      server_ =
          loop->run_until_complete(loop->create_server(factory, options_.host, options_.port));
    } catch (...) {
      loop->close();
      bound.set_exception(std::current_exception());
      return;
    }
    loop_ = loop;
    running_ = loop.get();
    bound.set_value(server_->sockets()[0].address.port);
    tick_ = loop->call_later(options_.interval, [this] { tick(); });
    loop->run_forever();
    tick_.cancel();
    server_->close();
    for (Connection* c : std::vector<Connection*>(connections_)) c->close_now();
    loop->run_until_complete(server_->wait_closed());
    server_ = nullptr;
    loop->run_until_complete(sleep(0));
    loop_ = nullptr;
    loop->close();
  }

  void push(Connection& c) {
    for (const auto& s : feed_->since(c.last_seq)) {
      if (c.last_seq && s->seq > c.last_seq + 1)
        c.skipped_events += s->seq - c.last_seq - 1;  // left the history
      c.last_seq = s->seq;
      if (c.backlog() > options_.max_client_backlog) {
        c.skipped_events += s->events.size();  // a slow client misses this update, counted
        continue;
      }
      c.send_line(c.encoder.update(*s, std::exchange(c.skipped_events, 0)));
      ++updates_;
    }
  }

  void tick() {
    if (stopping_) return;
    if (!clients_.empty()) {
      for (Connection* c : std::vector<Connection*>(clients_)) push(*c);
      // An idle loop does not run passes, so it does not publish: ask it to, but only when
      // nothing new came in a whole tick (a busy loop publishes on its own; asking it too would
      // double the snapshots it builds).
      auto latest = feed_->latest();
      const std::uint64_t seq = latest ? latest->seq : 0;
      if (seq == seq_at_last_tick_) feed_->request();
      seq_at_last_tick_ = seq;
    }
    tick_ = loop_->call_later(options_.interval, [this] { tick(); });
  }

  ServeOptions options_;
  std::shared_ptr<inspect::Feed> feed_;
  std::thread thread_;
  LoopRef loop_;                              // the agent thread's own
  std::atomic<EventLoop*> running_{nullptr};  // the same, for the destructor on another thread
  Ref<Server> server_;
  TimerHandle tick_;
  std::uint16_t port_ = 0;
  bool stopping_ = false;
  std::uint64_t seq_at_last_tick_ = 0;
  std::vector<Connection*> connections_;
  std::vector<Connection*> clients_;
  std::atomic<std::size_t> authenticated_{0};
  std::atomic<std::uint64_t> refused_{0}, updates_{0};
};

void Connection::connection_made(Ref<Transport> t) {
  transport_ = t;
  agent_.connected(this);
  if (agent_.open_connections() > agent_.options().max_clients) {
    refuse("too many clients");
    return;
  }
  hello_deadline_ = agent_.loop().call_later(agent_.options().hello_timeout, [this] {
    if (!authenticated_) refuse("no hello in time");
  });
}

void Connection::connection_lost(std::exception_ptr) {
  hello_deadline_.cancel();
  agent_.gone(this);
  transport_ = nullptr;
}

void Connection::refuse(std::string_view why) {
  if (!open()) return;
  agent_.count_refused();
  if (mode_ == Mode::raw || mode_ == Mode::websocket) send_line(inspect::error_message(why));
  if (mode_ == Mode::websocket)
    transport_->write(websocket_frame(0x8, std::string_view("\x03\xf0", 2)));
  transport_->close();
}

void Connection::data_received(std::string_view data) {
  if (!open()) return;
  if (mode_ == Mode::websocket) return on_websocket_bytes(data);
  if (mode_ == Mode::raw) {
    lines_.append(data.data(), data.size());
    std::size_t start = 0;
    for (std::size_t nl; open() && (nl = lines_.find('\n', start)) != std::string::npos;
         start = nl + 1)
      on_line(std::string_view(lines_).substr(start, nl - start));
    lines_.erase(0, start);
    if (lines_.size() > inspect::kMaxClientLine) refuse("line too long");
    return;
  }
  in_.append(data.data(), data.size());
  if (mode_ == Mode::sniffing) {
    if (in_.size() < 4) return;
    if (in_.compare(0, 4, "GET ") == 0) {
      mode_ = Mode::http;
    } else {
      mode_ = Mode::raw;
      std::string bytes = std::move(in_);
      in_.clear();
      return data_received(bytes);
    }
  }
  if (mode_ == Mode::http) {
    if (in_.find("\r\n\r\n") != std::string::npos)
      handle_http_head();
    else if (in_.size() > kMaxRequestHead)
      refuse("request head too large");
  }
}

void Connection::handle_http_head() {
  const std::size_t end = in_.find("\r\n\r\n");
  const std::string head = in_.substr(0, end);
  std::string rest = in_.substr(end + 4);
  in_.clear();
  std::istringstream is(head);
  std::string request_line;
  std::getline(is, request_line);
  std::string method, target, version;
  std::istringstream rl(request_line);
  rl >> method >> target >> version;
  std::map<std::string, std::string> headers;
  for (std::string line; std::getline(is, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    headers[lower(line.substr(0, colon))] = value;
  }
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/ws") {
    if (lower(headers["upgrade"]) != "websocket" || headers["sec-websocket-key"].empty()) {
      agent_.count_refused();
      transport_->write(
          http_response(400, "Bad Request", "text/plain", "WebSocket upgrade expected\n"));
      transport_->close();
      return;
    }
    transport_->write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        websocket_accept(headers["sec-websocket-key"]) + "\r\n\r\n");
    mode_ = Mode::websocket;
    if (!rest.empty()) on_websocket_bytes(rest);
    return;
  }
  serve_file(path);
}

void Connection::serve_file(const std::string& path) {
  hello_deadline_.cancel();
  const std::string& root = agent_.options().web_root;
  std::string rel = path == "/" ? "/index.html" : path;
  if (root.empty() || rel.find("..") != std::string::npos || rel.find('\\') != std::string::npos) {
    transport_->write(http_response(404, "Not Found", "text/plain", "not found\n"));
    transport_->close();
    return;
  }
  std::ifstream f(root + rel, std::ios::binary);
  if (!f) {
    transport_->write(http_response(404, "Not Found", "text/plain", "not found\n"));
    transport_->close();
    return;
  }
  std::ostringstream body;
  body << f.rdbuf();
  transport_->write(http_response(200, "OK", content_type(rel), body.str()));
  transport_->close();
}

void Connection::on_websocket_bytes(std::string_view data) {
  in_.append(data.data(), data.size());
  while (open()) {
    if (in_.size() < 2) return;
    const auto b0 = static_cast<std::uint8_t>(in_[0]), b1 = static_cast<std::uint8_t>(in_[1]);
    const std::uint8_t opcode = b0 & 0x0F;
    if ((b0 & 0x70) != 0 || !(b1 & 0x80))
      return refuse("bad WebSocket frame");  // RSV bits / unmasked
    std::uint64_t len = b1 & 0x7F;
    std::size_t at = 2;
    if (len == 126) {
      if (in_.size() < 4) return;
      len = (std::uint64_t(static_cast<std::uint8_t>(in_[2])) << 8) |
            static_cast<std::uint8_t>(in_[3]);
      at = 4;
    } else if (len == 127) {
      if (in_.size() < 10) return;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(in_[2 + i]);
      at = 10;
    }
    if (len > kMaxWebSocketPayload) return refuse("WebSocket message too large");
    if (in_.size() < at + 4 + len) return;
    const char* mask = in_.data() + at;
    std::string payload = in_.substr(at + 4, static_cast<std::size_t>(len));
    for (std::size_t i = 0; i < payload.size(); ++i)
      payload[i] = static_cast<char>(payload[i] ^ mask[i % 4]);
    in_.erase(0, at + 4 + static_cast<std::size_t>(len));
    switch (opcode) {
      case 0x0:  // continuation: the stream is a byte stream anyway
      case 0x1:
      case 0x2: {
        lines_ += payload;
        std::size_t start = 0;
        for (std::size_t nl; open() && (nl = lines_.find('\n', start)) != std::string::npos;
             start = nl + 1)
          on_line(std::string_view(lines_).substr(start, nl - start));
        lines_.erase(0, start);
        if (lines_.size() > inspect::kMaxClientLine) return refuse("line too long");
        break;
      }
      case 0x8:
        transport_->write(websocket_frame(0x8, {}));
        transport_->close();
        return;
      case 0x9:
        transport_->write(websocket_frame(0xA, payload));
        break;
      case 0xA:
        break;
      default:
        return refuse("bad WebSocket opcode");
    }
  }
}

void Connection::on_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!authenticated_) {
    auto hello = inspect::parse_client_hello(line);
    if (!hello) return refuse("expected a hello");
    if (hello->protocol != inspect::kProtocolVersion) return refuse("unsupported protocol version");
    if (!same_token(hello->token, agent_.options().token)) return refuse("invalid token");
    authenticated_ = true;
    hello_deadline_.cancel();
    agent_.authenticated(this);
    return;
  }
  // Read-only: a ping is the only thing a client may say after hello.
  auto v = inspect::json::parse(line, nullptr, inspect::json::Limits{inspect::kMaxClientLine, 4});
  if (!v || v->str("type") != "ping") return refuse("read-only agent: only ping is accepted");
  send_line("{\"type\":\"pong\"}\n");
}

}  // namespace

std::unique_ptr<Agent> serve(EventLoop& loop, ServeOptions options) {
  loop.check_closed();
  if (!(options.interval > 0)) throw ValueError("inspector::serve: interval must be > 0");
  return std::make_unique<AgentImpl>(loop, std::move(options));
}

}  // namespace eddy::inspector
