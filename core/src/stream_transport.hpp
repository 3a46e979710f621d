// StreamTransport: asyncio's socket transport logic over any backend's StreamEndpoint. It owns
// the protocol state machine (connection_made -> data_received* -> eof_received? ->
// connection_lost), close/abort/write_eof ordering, and the write buffer's flow control. The
// backend only moves bytes. Private to core/.
#pragma once

#include <any>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "eddy/endpoints.hpp"
#include "eddy/future.hpp"
#include "eddy/inspect.hpp"
#include "eddy/loop.hpp"
#include "eddy/transports.hpp"

namespace eddy {

class Server;

// A buffer the platform reads into, page-aligned. The kernel's copy into a destination that is
// not cache-line aligned ran at about half speed here (rep movsb on AMD EPYC): a Protocol echo
// of 64 KiB messages spent twice the system time reading into a 256 KiB heap buffer 16 bytes
// past a line boundary as into the same buffer page-aligned.
inline constexpr std::align_val_t kIoBufferAlignment{4096};
struct IoBufferDelete {
  void operator()(char* p) const noexcept { ::operator delete[](p, kIoBufferAlignment); }
};
using IoBuffer = std::unique_ptr<char[], IoBufferDelete>;
inline IoBuffer make_io_buffer(std::size_t bytes) {
  return IoBuffer(new (kIoBufferAlignment) char[bytes]);
}

// get_extra_info for transports over an endpoint: the addresses cached when the transport was
// made (asyncio keeps them after close), then whatever the endpoint knows.
template <class Endpoint>
std::any lookup_extra_info(std::string_view name, std::any default_value, const std::any& peername,
                           const std::any& sockname, const Endpoint* endpoint) {
  if (name == "peername") return peername.has_value() ? peername : default_value;
  if (name == "sockname") return sockname.has_value() ? sockname : default_value;
  if (endpoint) {
    std::any v = endpoint->extra_info(name);
    if (v.has_value()) return v;
  }
  return default_value;
}

// Runs a protocol callback that asyncio runs in a callback of its own (with call_soon, or as the
// loop's reader callback): what it raises is reported as that callback's exception, "Exception in
// callback protocol.<method>", and the transport carries on.
inline void report_callback_failure(EventLoop& loop, const std::string& callback) noexcept {
  ExceptionContext ctx("Exception in callback " + callback, std::current_exception());
  loop.call_exception_handler(ctx);
}
template <class F>
void call_protocol(EventLoop& loop, const char* method, F&& callback) noexcept {
  try {
    callback();
  } catch (...) {
    report_callback_failure(loop, std::string("protocol.") + method);
  }
}

// asyncio schedules connection_made, the start of reading and the waiter as three callbacks, so
// connection_made raising is reported and the rest still happens: Eddy runs them in one callback
// and reports the exception the same way.
template <class F>
void call_connection_made(EventLoop& loop, F&& connection_made) noexcept {
  call_protocol(loop, "connection_made()", std::forward<F>(connection_made));
}

class StreamTransport final : public Transport,
                              public inspect::TransportProbe,
                              private StreamEvents {
 public:
  // Sockets read and write; a read pipe always closes after EOF; a write pipe never reads, and
  // its write_eof() is close() (asyncio's _UnixReadPipeTransport / _UnixWritePipeTransport).
  enum class Mode { socket, read_pipe, write_pipe };
  // Schedules connection_made (then reading, then `waiter`'s result) with call_soon, as asyncio.
  // `announce` false (start_tls) skips the protocol's connection_made: asyncio's SSLProtocol with
  // call_connection_made=False, for a protocol that already has a connection.
  static Ref<StreamTransport> create(EventLoop& loop, StreamEndpointPtr endpoint,
                                     std::shared_ptr<BaseProtocol> protocol, Server* server,
                                     Future<void> waiter, Mode mode = Mode::socket,
                                     bool announce = true);

  void close() override;
  bool is_closing() const override { return closing_; }
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

  bool is_reading() const override { return mode_ != Mode::write_pipe && !paused_ && !closing_; }
  void pause_reading() override;
  void resume_reading() override;

  using WriteTransport::write;
  void write(std::string_view data) override;
  // RuntimeError after write_eof() even for an empty list, as asyncio's.
  void writelines(std::span<const std::string_view> chunks) override;
  bool can_write_eof() const override { return mode_ != Mode::read_pipe && !over_tls(); }
  void write_eof() override;
  void abort() override;
  std::size_t get_write_buffer_size() const override;
  // start_tls: hands the connected endpoint over (for wrapping) and retires this transport
  // without a connection_lost call, as asyncio replaces the old transport's protocol.
  // RuntimeError if closing or if written data is still buffered (await flushed() first).
  // A server keeps counting the connection through the handshake, as asyncio's keeps the raw
  // transport under the TLS one: close() or abort() meanwhile (Server.close_clients) fail
  // `handshake` with ConnectionAbortedError, and end_handover() lets the server go once the
  // TLS transport (attached to it in turn) exists or the handshake failed.
  StreamEndpointPtr take_endpoint();
  void watch_handover(Future<void> handshake);
  void end_handover() noexcept;
  Server* server() const noexcept { return server_.get(); }
  // TLS endpoints are the ones that cannot half-close.
  bool over_tls() const noexcept { return endpoint_ && !endpoint_->can_shutdown(); }
  // Done once nothing written is still queued in the platform (at once if nothing is), or once
  // the transport is lost.
  Future<void> flushed();
  // loop.sendfile's zero-copy path (asyncio's _sendfile_native): reading paused, what was
  // written before flushed, then the file goes from the kernel straight to the socket; write()
  // is refused meanwhile, and close() or write_eof() wait for it. can_sendfile() is false where
  // the endpoint has no socket for it (TLS, pipes, virtual sockets): the caller falls back.
  bool can_sendfile() const noexcept;
  Coro<std::size_t> sendfile(int file, std::uint64_t offset, std::optional<std::size_t> count);
  // Whether the protocol was told to pause writing and not yet to resume.
  bool writing_paused() const noexcept { return flow_.protocol_paused(); }
  std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
    return {flow_.low(), flow_.high()};
  }
  void set_write_buffer_limits(std::optional<long long> high, std::optional<long long> low) override;
  // TLS: how long close() waits for the peer's close_notify before connection_lost gets
  // TimeoutError (asyncio's ssl_shutdown_timeout; 30 s unless set).
  void set_tls_shutdown_timeout(double seconds) noexcept { tls_shutdown_timeout_ = seconds; }

  void describe(inspect::TransportInfo& out, const void*& server) const override;
  void loop_closed() noexcept override;

 private:
  friend class Server;  // keeps server_slot_
  StreamTransport(EventLoop& loop, StreamEndpointPtr endpoint, std::shared_ptr<BaseProtocol> protocol,
                  Server* server);
  ~StreamTransport() override;

  // StreamEvents (from the backend, inside poll()).
  std::span<char> read_buffer(std::size_t suggested) override;
  void read_done(std::size_t nbytes) override;
  void read_eof() override;
  void read_failed(std::error_code error) override;
  void write_done(std::error_code error) override;
  void shutdown_done(std::error_code error) override;
  void closing_handshake_done(std::error_code error) override;

  void connection_made(bool announce);
  // close()/abort() during start_tls's handshake: true if there was one to fail.
  bool abort_handover();
  // close() once the written data is out: the endpoint's closing handshake (TLS), then
  // connection_lost.
  void finish_closing();
  void peer_closed_write_pipe();
  // The protocol's eof_received(): false if it raised (the transport is then failing). Over TLS a
  // true result is ignored, with asyncio's warning.
  bool call_eof_received(bool& keep_open);
  void fatal_error(std::exception_ptr exc, const char* message);
  void force_close(std::exception_ptr exc);
  void call_connection_lost(std::exception_ptr exc);
  // Drops the endpoint, the server's count, the protocol and the self-reference (the last one
  // may destroy this).
  void let_go() noexcept;
  // Lets the endpoint go, keeping what get_extra_info answers about TLS after the connection.
  void drop_endpoint() noexcept;
  // Takes this transport's socket out of the loop's registry (asyncio's loop._transports).
  void release_socket_fd() noexcept;
  void report(const char* message, std::exception_ptr exc);
  void wake_flush_waiters();
  // Gives `data` to the endpoint; one that pauses the protocol in two parts, so that
  // resume_writing can come at the low mark.
  void hand_over(WriteBuffers data, std::size_t bytes);
  void gather(std::string_view data);
  // Hands pending_ to the endpoint (then the FIN, if write_eof() came meanwhile).
  void submit_pending();
  Coro<void> wait_sendfile_writable();
  void finish_sendfile(bool resume_reading);

  Ref<EventLoop> loop_;
  StreamEndpointPtr endpoint_;
  std::shared_ptr<BaseProtocol> protocol_;
  Protocol* stream_protocol_ = nullptr;
  BufferedProtocol* buffered_protocol_ = nullptr;
  Ref<Server> server_;
  std::size_t server_slot_ = 0;  // its index in server_->transports_ (Server::attach)
  Ref<StreamTransport> self_;  // held while the endpoint is open: the endpoint points at us
  int socket_fd_ = -1;         // registered with the loop while this transport holds it
  int dropped_writes_ = 0;     // write pipes after close or loss, TLS after close_notify
  WriteFlowControl flow_;
  Mode mode_ = Mode::socket;
  std::any peername_, sockname_;
  mutable std::optional<std::string> peer_text_;  // peername_ as the inspector shows it, once
  std::size_t writes_in_flight_ = 0;  // writes the endpoint holds: one, or a long one in two parts
  // What is written while the endpoint still holds a write: handed over as one write when that
  // one is done, so a burst of small writes leaves in one system call, as from asyncio's buffer.
  // Small writes share blocks; nothing already gathered is ever copied again.
  WriteBuffers pending_;
  std::size_t pending_bytes_ = 0;
  std::vector<Future<void>> flush_waiters_;
  std::exception_ptr get_buffer_failure_;  // BufferedProtocol.get_buffer() refused a read
  Future<void> sendfile_writable_;  // set when the socket can take more, or the transport is lost
  double tls_shutdown_timeout_ = 30.0;  // asyncio's SSL_SHUTDOWN_TIMEOUT
  TimerHandle tls_shutdown_timer_;      // from close() until connection_lost, over TLS
  Future<void> handover_;               // start_tls's handshake, while it runs
  // As asyncio's SSLProtocol keeps peercert and cipher after connection_lost (not ssl_object:
  // the TLS library's object goes with the endpoint).
  struct RetainedTls {
    std::any cipher, peercert, ssl_version;
  };
  std::unique_ptr<RetainedTls> retained_tls_;
  int conn_lost_ = 0;
  bool closing_ = false;
  bool paused_ = false;       // pause_reading()
  bool eof_written_ = false;  // write_eof() was called
  bool eof_received_ = false;
  bool protocol_connected_ = false;
  bool sendfile_active_ = false;
  bool closing_handshake_ = false;  // the endpoint's closing handshake began
};

}  // namespace eddy
