// The inspector agent: serves a loop's Snapshots to inspector clients from a thread of its own
// (its own Eddy loop), so watching costs the inspected loop only the snapshots it publishes.
// One port speaks the raw protocol (newline-delimited JSON), WebSocket (GET /ws) and plain HTTP
// for the browser inspector's files. 127.0.0.1 and a token by default; read-only: a client can
// say hello and ping, nothing else. Protocol: docs/inspector-protocol.md.
//
//   auto agent = eddy::inspector::serve(*loop, {.port = 6669, .web_root =
//   "build/wasm-release/web/inspector"}); std::printf("inspect at %s\n", agent->url().c_str());
//
// Native only: in WebAssembly serve() raises NotSupportedError (the browser inspector reads an
// in-page loop directly).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "eddy/inspect.hpp"

namespace eddy {
class EventLoop;
}

namespace eddy::inspector {

struct ServeOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: a free port (see Agent::port)
  std::string token;       // empty: a random 128-bit token
  std::string web_root;    // directory of the browser inspector (index.html); empty: no page
  double interval = 0.1;   // seconds between updates to each client
  std::size_t max_clients = 32;
  double hello_timeout = 5;                   // seconds a new connection has to authenticate
  std::size_t max_client_backlog = 8u << 20;  // a slower client skips updates (counted as dropped)
  inspect::Options inspect;                   // for inspect::enable()
};

class Agent {
 public:
  virtual ~Agent() = default;  // stops serving, closes every client, joins the agent's thread
  virtual std::uint16_t port() const = 0;
  virtual const std::string& token() const = 0;
  // http://HOST:PORT/#token=TOKEN: the browser inspector page, attached to this loop.
  virtual std::string url() const = 0;
  virtual std::size_t clients() const = 0;    // authenticated clients connected now
  virtual std::uint64_t refused() const = 0;  // connections closed for bad input or token
  virtual std::uint64_t updates_sent() const = 0;
};

// Call on the loop's thread: switches inspection on and starts the agent.
std::unique_ptr<Agent> serve(EventLoop& loop, ServeOptions options = {});

}  // namespace eddy::inspector
