// Attaching to a remote agent, written against Eddy's own streams so the same code runs on the
// desktop (a libuv loop on a helper thread, TCP) and in the browser (the page's loop, where the
// virtual network routes host:port to the agent's WebSocket).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "eddy/eddy.hpp"

namespace eddy::inspector {

// Connects, says hello with `token`, and hands every byte received to `sink` until the agent
// closes, `sink` returns false, or `stop` is done. Connection errors propagate.
Coro<void> attach(std::string host, std::uint16_t port, std::string token,
                  std::function<bool(std::string_view)> sink, Future<void> stop);

// "HOST:PORT" -> (host, port); ValueError when malformed.
std::pair<std::string, std::uint16_t> split_host_port(const std::string& text);

}  // namespace eddy::inspector
