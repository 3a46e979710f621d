// attach(): the client side of the inspector protocol (docs/inspector-protocol.md).
#include "remote.hpp"

#include "eddy/inspect_wire.hpp"

namespace eddy::inspector {

std::pair<std::string, std::uint16_t> split_host_port(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw ValueError("expected HOST:PORT, got '" + text + "'");
  const std::string port = text.substr(colon + 1);
  for (char c : port)
    if (c < '0' || c > '9') throw ValueError("bad port in '" + text + "'");
  const unsigned long p = std::stoul(port);
  if (p == 0 || p > 65535) throw ValueError("bad port in '" + text + "'");
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return {host, static_cast<std::uint16_t>(p)};
}

Coro<void> attach(std::string host, std::uint16_t port, std::string token,
                  std::function<bool(std::string_view)> sink, Future<void> stop) {
  StreamPair pair = co_await open_connection(host, port);
  std::shared_ptr<StreamReader> reader = pair.first;
  std::shared_ptr<StreamWriter> writer = pair.second;
  writer->write(inspect::client_hello(token));
  co_await writer->drain();
  // Stopping aborts the connection: the pending read then ends.
  stop.add_done_callback([writer](Future<void>) { writer->transport()->abort(); });
  while (!stop.done()) {
    std::string data = co_await reader->read(1 << 20);
    if (data.empty() || !sink(data)) break;
  }
  writer->transport()->abort();
}

}  // namespace eddy::inspector
