// Keyword arguments of the loop's connection and server methods (asyncio's create_connection,
// create_server, ...), as option structs for designated initializers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "eddy/net.hpp"
#include "eddy/ref.hpp"

namespace eddy {

class BaseProtocol;
class Transport;
class Server;

using ProtocolFactory = std::function<std::shared_ptr<BaseProtocol>()>;
// What create_connection returns: asyncio's (transport, protocol) pair.
using Connection = std::pair<Ref<Transport>, std::shared_ptr<BaseProtocol>>;

struct ConnectionOptions {
  AddressFamily family = AddressFamily::unspec;
  std::optional<SocketAddress> local_addr;  // host/port to bind before connecting
  std::optional<int> sock;                  // an already connected socket to wrap
  std::optional<double> happy_eyeballs_delay;  // RFC 8305 staggered attempts
  std::optional<int> interleave;            // reorder addresses by family (1 = alternate)
  bool keep_alive = false;
};

struct ServerOptions {
  AddressFamily family = AddressFamily::unspec;
  int backlog = 100;
  std::optional<bool> reuse_address;  // default: true on POSIX, as asyncio
  bool reuse_port = false;
  bool start_serving = true;
  bool keep_alive = false;
  bool cleanup_socket = true;  // Unix servers: remove the path on close (Python 3.13)
};

}  // namespace eddy
