// asyncio's Server: what create_server and create_unix_server return. It owns the listening
// sockets and knows its live connections, so close_clients/abort_clients and wait_closed (which
// waits until the server is closed *and* every connection is gone, as in Python 3.12+) work.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eddy/endpoints.hpp"
#include "eddy/io_options.hpp"
#include "eddy/future.hpp"
#include "eddy/protocols.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"

namespace eddy {

class StreamTransport;

// One listening socket: Server.sockets' entries.
struct ServerSocket {
  int fd = -1;
  SocketAddress address;
};

class Server : public RefCounted {
 public:
  Server(EventLoop& loop, std::vector<StreamListenerPtr> listeners, ProtocolFactory factory);
  ~Server() override;

  EventLoop& get_loop() const noexcept { return *loop_; }
  bool is_serving() const noexcept { return serving_; }
  // Stops listening; existing connections stay open, and so do TLS connections still in their
  // handshake (they get their protocol when it completes), as in asyncio. Idempotent.
  void close();
  // Close / abort every connection, those in a TLS handshake included (dropped).
  void close_clients();
  void abort_clients();
  // Starts accepting (no-op if already serving or closed).
  Coro<void> start_serving();
  // Serves until cancelled; then closes and waits for connections to finish.
  Coro<void> serve_forever();
  // Returns once the server is closed and no connection is left (handshaking ones included).
  Coro<void> wait_closed();
  std::vector<ServerSocket> sockets() const;
  // Connections, those still in a TLS handshake included.
  std::size_t active_connections() const noexcept {
    return transports_.size() + handshakes_.size();
  }

  void set_tls(const TlsContext* context, double handshake_timeout, double shutdown_timeout) {
    tls_ = context;
    tls_timeout_ = handshake_timeout;
    tls_shutdown_timeout_ = shutdown_timeout;
  }

  // Used by StreamTransport: a connection joins and leaves in constant time (it keeps its place
  // in transports_), so closing a server's many clients is linear.
  void attach(StreamTransport* t);
  void detach(StreamTransport* t);
  // Used by EventLoop::close(): closes the listening sockets and drops handshakes in progress,
  // settling nothing (no callback can run any more).
  void loop_closed() noexcept;

 private:
  void start_listening();
  void accepted(StreamEndpointPtr endpoint);
  void wakeup();
  void drop_handshakes();
  void handshake_done(std::uint64_t id, std::error_code ec, const std::string& why,
                      std::shared_ptr<BaseProtocol> protocol);
  struct PendingHandshake {
    StreamEndpointPtr endpoint;
    TimerHandle timer;
  };

  Ref<EventLoop> loop_;
  std::vector<StreamListenerPtr> listeners_;
  std::vector<ServerSocket> sockets_;
  ProtocolFactory factory_;
  std::vector<StreamTransport*> transports_;
  std::vector<Future<void>> waiters_;
  Future<void> serving_forever_;
  const TlsContext* tls_ = nullptr;
  double tls_timeout_ = 60.0;
  double tls_shutdown_timeout_ = 30.0;
  std::map<std::uint64_t, PendingHandshake> handshakes_;
  std::uint64_t next_handshake_id_ = 0;
  bool serving_ = false;
  bool closed_ = false;
  double accept_paused_until_ = 0;
};

}  // namespace eddy
