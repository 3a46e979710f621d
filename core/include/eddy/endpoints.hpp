// The byte-moving half of stream transports: what a backend implements for TCP, Unix sockets
// and pipes. Completion-shaped, so libuv's own queues are used directly. The core's
// StreamTransport owns the protocol state machine, the write buffer and flow control; an
// endpoint only reads, writes, shuts down and closes. Every event is delivered on the loop's
// thread from inside Backend::poll(), and none after close().
#pragma once

#include <any>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <system_error>
#include <vector>

#include "eddy/net.hpp"

namespace eddy {

class StreamEvents {
 public:
  virtual ~StreamEvents() = default;
  // Where the next read lands (the endpoint reads at most buffer.size() bytes). An empty span
  // refuses the read: the endpoint then reads nothing and calls read_failed(no_buffer_space),
  // once its platform allows it to be closed (libuv does not inside its buffer callback).
  virtual std::span<char> read_buffer(std::size_t suggested) = 0;
  virtual void read_done(std::size_t nbytes) = 0;  // nbytes > 0, into the last read_buffer
  virtual void read_eof() = 0;
  virtual void read_failed(std::error_code error) = 0;
  // A write() finished (all of it, or failed); writes complete in submission order.
  virtual void write_done(std::error_code error) = 0;
  virtual void shutdown_done(std::error_code error) = 0;
  // The closing handshake that start_closing_handshake() began is over: the peer answered it
  // (or ended the stream), or `error` says what went wrong.
  virtual void closing_handshake_done(std::error_code error) { (void)error; }
};

// The bytes of one endpoint write, in pieces, sent in order.
using WriteBuffers = std::vector<std::string>;

class StreamEndpoint {
 public:
  // Connecting endpoints report once through this callback (from poll()).
  using ConnectDone = std::function<void(std::error_code)>;

  virtual void set_events(StreamEvents* events) noexcept = 0;
  // read_start() may deliver what the endpoint already holds (TLS: decrypted records) before it
  // returns; the transport calls it where asyncio would deliver (not from resume_reading()).
  virtual void read_start() = 0;
  virtual void read_stop() noexcept = 0;
  // Write pipes: reports read_eof() once no reader is left, as asyncio's write pipe transport
  // learns it from a reader callback on its pipe. A no-op where the platform cannot tell (the
  // next write then fails with EPIPE instead).
  virtual void watch_reader() {}
  // Writes what the kernel takes now, without blocking; returns the byte count (0 when it would
  // block). Errors are returned in `error`. An endpoint whose bytes cannot go to the kernel as
  // they are (TLS) always returns 0: write() takes them.
  virtual std::size_t try_write(std::string_view data, std::error_code& error) noexcept = 0;
  // Queues `data`, taking the bytes over; write_done reports it once all of it is out. The pieces
  // are one write (a platform may send them with one gathering system call): the transport
  // gathers what is written while the endpoint still holds a write and hands it over in one.
  virtual void write(WriteBuffers data) = 0;
  // Bytes queued by write() that the platform has not handed to the kernel yet.
  virtual std::size_t queued_bytes() const noexcept = 0;
  // Half-close after queued writes (write_eof).
  virtual void shutdown() = 0;
  virtual bool can_shutdown() const noexcept { return true; }  // false for TLS
  // The protocol's goodbye before close(), where it has one (TLS: close_notify, then reading,
  // application data discarded, until the peer's close_notify or EOF). Called once the transport's
  // writes are done; false where there is none to make (close at once), else
  // closing_handshake_done follows, from poll().
  virtual bool start_closing_handshake() noexcept { return false; }
  // Stops everything; no event after this returns. The endpoint frees itself once the platform
  // has released it. `reset`: abortive close (RST) where the platform supports it.
  virtual void close(bool reset = false) noexcept = 0;
  // "peername", "sockname" (SocketAddress), "socket" or "pipe" (int fd); empty if unknown.
  virtual std::any extra_info(std::string_view name) const = 0;

  // Zero-copy sendfile: the socket Backend::sendfile_chunk may write to directly while nothing
  // is queued, or -1 where the bytes must go through write() (TLS, pipes, virtual sockets).
  virtual int sendfile_socket() const noexcept { return -1; }
  // Calls `ready` once, from poll(), when that socket can take more bytes (or has failed);
  // replaces an earlier request. cancel_writable_wait() drops it; close() does too.
  virtual void wait_writable(std::function<void()> ready);
  virtual void cancel_writable_wait() noexcept {}

 protected:
  virtual ~StreamEndpoint() = default;
};

struct EndpointCloser {
  void operator()(StreamEndpoint* e) const noexcept { e->close(); }
};
using StreamEndpointPtr = std::unique_ptr<StreamEndpoint, EndpointCloser>;

struct ListenOptions {
  int backlog = 100;
  bool reuse_address = true;
  bool reuse_port = false;
  bool ipv6_only = true;  // IPv6 sockets do not also accept IPv4, as asyncio sets it
  bool keep_alive = false;
  bool nodelay = true;
  bool unlink_on_close = false;  // Unix sockets: remove the path when the listener closes
};

class StreamListener {
 public:
  // `accepted` gets each new connection; `failed` gets accept errors (the listener keeps going).
  struct Events {
    std::function<void(StreamEndpointPtr)> accepted;
    std::function<void(std::error_code)> failed;
  };
  virtual void listen(Events events) = 0;  // starts accepting
  virtual SocketAddress address() const = 0;
  virtual int fileno() const noexcept = 0;
  virtual void close() noexcept = 0;  // no event after this; frees itself later

 protected:
  virtual ~StreamListener() = default;
};

// What connect_stream throws when binding its local address fails (before any connecting), so
// that create_connection can try the next local address and word the error as asyncio does.
class BindError : public std::system_error {
 public:
  using std::system_error::system_error;
};

struct ListenerCloser {
  void operator()(StreamListener* l) const noexcept { l->close(); }
};
using StreamListenerPtr = std::unique_ptr<StreamListener, ListenerCloser>;

struct ConnectOptions {
  std::optional<SocketAddress> local_addr;  // bound before connecting; a failure is a BindError
  bool nodelay = true;
  bool keep_alive = false;
};

}  // namespace eddy

namespace eddy {

// The byte-moving half of datagram transports (UDP; Unix datagram sockets where supported).
class DatagramEvents {
 public:
  virtual ~DatagramEvents() = default;
  virtual std::span<char> receive_buffer(std::size_t suggested) = 0;
  virtual void received(std::size_t nbytes, const SocketAddress& from) = 0;
  virtual void receive_failed(std::error_code error) = 0;
  virtual void send_done(std::error_code error) = 0;  // a queued send() finished
};

class DatagramEndpoint {
 public:
  virtual void set_events(DatagramEvents* events) noexcept = 0;
  virtual void receive_start() = 0;
  virtual void receive_stop() noexcept = 0;
  // Sends now if the kernel takes it: true when sent, false when it would block; errors in
  // `error`. `to` null: the connected peer.
  virtual bool try_send(std::string_view data, const SocketAddress* to, std::error_code& error) noexcept = 0;
  // Queues a copy; send_done follows.
  virtual void send(std::string_view data, const SocketAddress* to) = 0;
  // Throws NotSupportedError (naming `method` and the target) for a destination this backend can
  // never reach, such as a real host from a browser's virtual network; sendto calls it before it
  // accepts a datagram. Nothing by default.
  virtual void check_destination(const SocketAddress& to, const char* method) const {
    (void)to;
    (void)method;
  }
  virtual std::size_t queued_bytes() const noexcept = 0;
  virtual void close() noexcept = 0;
  virtual std::any extra_info(std::string_view name) const = 0;

 protected:
  virtual ~DatagramEndpoint() = default;
};

struct DatagramCloser {
  void operator()(DatagramEndpoint* e) const noexcept { e->close(); }
};
using DatagramEndpointPtr = std::unique_ptr<DatagramEndpoint, DatagramCloser>;

struct DatagramOptions {
  std::optional<SocketAddress> local;   // bind here (resolved)
  std::optional<SocketAddress> remote;  // connect here (resolved)
  AddressFamily family = AddressFamily::unspec;
  bool reuse_port = false;
  bool allow_broadcast = false;
};

}  // namespace eddy

namespace eddy {

// Child processes (subprocess_exec / subprocess_shell). stdio entries use the values of
// eddy::subprocess (PIPE, STDOUT, DEVNULL, INHERIT) or an fd >= 0.
struct ProcessSpec {
  std::vector<std::string> args;  // args[0] is looked up in PATH
  std::optional<std::string> cwd;
  std::optional<std::vector<std::string>> env;  // "NAME=value"; nullopt: inherit ours
  int stdio[3] = {-1, -1, -1};
  bool start_new_session = false;    // setsid() in the child
  std::optional<int> process_group;  // setpgid(0, n) in the child
};

class ProcessEndpoint {
 public:
  virtual int pid() const noexcept = 0;
  // Nothing when the process is known to be gone (its end is reported, or about to be);
  // system_error for any other failure.
  virtual void send_signal(int sig) = 0;
  // No exit report after this; frees itself.
  virtual void close() noexcept = 0;

 protected:
  virtual ~ProcessEndpoint() = default;
};

struct ProcessCloser {
  void operator()(ProcessEndpoint* p) const noexcept { p->close(); }
};
using ProcessEndpointPtr = std::unique_ptr<ProcessEndpoint, ProcessCloser>;

struct SpawnedProcess {
  ProcessEndpointPtr process;
  StreamEndpointPtr pipes[3];  // our ends of the PIPE entries (null otherwise)
};

}  // namespace eddy
