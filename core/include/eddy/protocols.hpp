// asyncio's protocols: the callbacks a transport calls. A stream protocol sees
// connection_made -> data_received* -> eof_received? -> connection_lost, in that order, once
// each (data_received any number of times); eof_received returning true keeps the transport
// half-open. Protocols are owned by shared_ptr: the transport holds one, the user may hold more.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <span>
#include <string_view>

#include "eddy/net.hpp"
#include "eddy/ref.hpp"

namespace eddy {

class Transport;
class DatagramTransport;
class SubprocessTransport;

class BaseProtocol {
 public:
  virtual ~BaseProtocol() = default;
  // `exc` is null for a regular close (EOF, close(), abort()), else what broke the connection.
  virtual void connection_lost(std::exception_ptr exc) { (void)exc; }
  // Flow control: the transport's write buffer went over the high-water mark / back to the low.
  virtual void pause_writing() {}
  virtual void resume_writing() {}
};

// Stream protocol: received bytes are handed over in the transport's buffer, valid during the
// call only.
class Protocol : public BaseProtocol {
 public:
  virtual void connection_made(Ref<Transport> transport) { (void)transport; }
  virtual void data_received(std::string_view data) { (void)data; }
  // Return true to keep the transport open for writing after the peer's EOF.
  virtual bool eof_received() { return false; }
};

// Stream protocol that supplies its own receive buffer: bytes land in it with no extra copy.
class BufferedProtocol : public BaseProtocol {
 public:
  virtual void connection_made(Ref<Transport> transport) { (void)transport; }
  // A buffer to receive into, not empty; any size is accepted. `sizehint` is the platform's
  // suggested read size (64 KiB natively; on the virtual network the bytes waiting, up to
  // 64 KiB), where asyncio passes -1 ("any size").
  virtual std::span<char> get_buffer(std::size_t sizehint) = 0;
  // `nbytes` bytes were written at the start of the last buffer get_buffer returned.
  virtual void buffer_updated(std::size_t nbytes) = 0;
  virtual bool eof_received() { return false; }
};

class DatagramProtocol : public BaseProtocol {
 public:
  virtual void connection_made(Ref<DatagramTransport> transport) { (void)transport; }
  virtual void datagram_received(std::string_view data, const SocketAddress& addr) {
    (void)data;
    (void)addr;
  }
  // A send or receive failed (e.g. ECONNREFUSED from an ICMP message); the transport stays open.
  virtual void error_received(std::exception_ptr exc) { (void)exc; }
};

class SubprocessProtocol : public BaseProtocol {
 public:
  virtual void connection_made(Ref<SubprocessTransport> transport) { (void)transport; }
  virtual void pipe_data_received(int fd, std::string_view data) {
    (void)fd;
    (void)data;
  }
  virtual void pipe_connection_lost(int fd, std::exception_ptr exc) {
    (void)fd;
    (void)exc;
  }
  virtual void process_exited() {}
};

}  // namespace eddy
