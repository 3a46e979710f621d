// The capability table: one list of loop methods, filled in per target by the backend.
#include <algorithm>

#include "eddy/backend.hpp"
#include "eddy/errors.hpp"

namespace eddy {

const std::vector<std::string_view>& capability_method_names() {
  static const std::vector<std::string_view> names = {
      // lifecycle and threads
      "run_forever", "run_until_complete", "run_once", "call_soon_threadsafe", "run_in_executor",
      "shutdown_asyncgens",
      // networking and IPC
      "create_connection", "create_server", "create_unix_connection", "create_unix_server",
      "connect_accepted_socket", "create_datagram_endpoint", "sendfile", "start_tls",
      "connect_read_pipe", "connect_write_pipe",
      // sockets
      "sock_recv", "sock_recv_into", "sock_recvfrom", "sock_recvfrom_into", "sock_sendall",
      "sock_sendto", "sock_connect", "sock_accept", "sock_sendfile", "add_reader", "remove_reader",
      "add_writer", "remove_writer",
      // DNS
      "getaddrinfo", "getnameinfo",
      // signals and processes
      "add_signal_handler", "remove_signal_handler", "subprocess_exec", "subprocess_shell"};
  return names;
}

const Capability* Capabilities::find(std::string_view method) const noexcept {
  auto it = std::find_if(methods.begin(), methods.end(),
                         [&](const Capability& c) { return c.method == method; });
  return it == methods.end() ? nullptr : &*it;
}

bool Capabilities::supports(std::string_view method) const noexcept {
  const Capability* c = find(method);
  return c && c->supported;
}

void Capabilities::require(std::string_view method) const {
  const Capability* c = find(method);
  if (c && c->supported) return;
  throw NotSupportedError(std::string(method), target, c ? c->note : "not in the capability table");
}

}  // namespace eddy
