// sock_sendfile and sendfile: asyncio's zero-copy path where the kernel can (sendfile(2) on a
// non-blocking socket, waiting for writability when it is full) and its read-and-send fallback.
// A socket transport sends natively once its queued writes are out; TLS and pipe transports take
// the fallback, which lends the transport a protocol that turns pause_writing / resume_writing
// into a drain wait, with reading paused, and then gives the user's protocol back.
#include <algorithm>
#include <functional>
#include <optional>

#include "eddy/errors.hpp"
#include "eddy/loop.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"
#include "stream_transport.hpp"

namespace eddy {

namespace {

constexpr std::size_t kFallbackChunk = 256 * 1024;

bool would_block(const std::error_code& ec) {
  return ec == std::errc::operation_would_block || ec == std::errc::resource_unavailable_try_again ||
         ec == std::errc::interrupted;
}

// sendfile(2) refuses these (EINVAL, ENOSYS, EOPNOTSUPP, ENOTSOCK, ESPIPE for pipes): the
// fallback may take over.
bool not_sendable(const std::error_code& ec) {
  return ec == std::errc::invalid_argument || ec == std::errc::function_not_supported ||
         ec == std::errc::operation_not_supported || ec == std::errc::not_a_socket || ec == std::errc::invalid_seek;
}

void check_count(std::optional<std::size_t> count) {
  if (count && *count == 0) throw ValueError("count must be a positive integer (got 0)");
}

// Stands in for the user's protocol while the fallback writes through the transport.
class SendfileFallbackProtocol final : public Protocol {
 public:
  SendfileFallbackProtocol(EventLoop& loop, std::shared_ptr<BaseProtocol> user, bool paused)
      : loop_(&loop), user_(std::move(user)), paused_(paused) {}
  bool writing_paused() const noexcept { return paused_; }
  void pause_writing() override { paused_ = true; }
  void resume_writing() override {
    paused_ = false;
    if (drained_ && !drained_.done()) drained_.set_result();
  }
  void connection_lost(std::exception_ptr exc) override {
    lost_ = true;
    lost_exc_ = exc;
    if (drained_ && !drained_.done()) drained_.set_result();
    user_->connection_lost(exc);  // the user's protocol still learns it, as in asyncio
  }
  Coro<void> drain() {
    if (lost_) throw_lost();
    if (!paused_) co_return;
    drained_ = loop_->create_future<void>();
    Future<void> f = drained_;
    co_await f;
    if (lost_) throw_lost();
  }

 private:
  void throw_lost() {
    if (lost_exc_) std::rethrow_exception(lost_exc_);
    throw std::system_error(std::make_error_code(std::errc::connection_reset), "Connection closed by peer");
  }
  EventLoop* loop_;
  std::shared_ptr<BaseProtocol> user_;
  Future<void> drained_;
  std::exception_ptr lost_exc_;
  bool paused_ = false;
  bool lost_ = false;
};

// The fallback: reads `file` in chunks (pread, or read for pipes) and hands each to `sink`.
using ChunkSink = std::function<Coro<void>(std::string_view)>;
Coro<std::size_t> copy_file(EventLoop& loop, int file, std::uint64_t offset, std::optional<std::size_t> count,
                            ChunkSink sink) {
  std::size_t total = 0;
  std::string chunk(kFallbackChunk, '\0');
  for (;;) {
    std::size_t want = chunk.size();
    if (count) want = std::min(want, *count - total);
    if (want == 0) break;
    std::error_code ec;
    const std::size_t n = loop.backend().read_file(file, offset + total, std::span<char>(chunk.data(), want), ec);
    // A non-blocking file with nothing to read now ends the copy, as asyncio's readinto()
    // returning None does: what was there is sent, and the count says how much.
    if (ec && would_block(ec)) break;
    if (ec) throw std::system_error(ec, "read");
    if (n == 0) break;
    co_await sink(std::string_view(chunk.data(), n));
    total += n;
  }
  co_return total;
}

// The zero-copy loop of both sendfile calls: sendfile(2) from `file` to `socket()` until `count`
// bytes or the end of the file, awaiting `writable()` whenever the socket is full, reporting each
// chunk to `sent`. SendfileNotAvailableError if the kernel refuses this file before any byte
// went; any other error as std::system_error. The file position ends after what was sent.
struct ZeroCopyTarget {
  std::function<int()> socket;  // may throw if the target went away
  std::function<Coro<void>()> writable;
  std::function<void(std::size_t)> sent;
};
Coro<std::size_t> send_zero_copy(Backend& backend, ZeroCopyTarget target, int file,
                                 std::uint64_t offset, std::optional<std::size_t> count) {
  std::size_t total = 0;
  for (;;) {
    std::size_t want = std::size_t(1) << 30;
    if (count) want = std::min(want, *count - total);
    if (want == 0) break;
    std::error_code ec;
    const std::size_t n = backend.sendfile_chunk(target.socket(), file, offset + total, want, ec);
    if (ec && would_block(ec)) {
      co_await target.writable();
      continue;
    }
    if (ec && total == 0 && not_sendable(ec))
      throw SendfileNotAvailableError("os.sendfile() is not available for this socket and file: " +
                                      ec.message());
    if (ec) {
      if (total > 0) backend.seek_file(file, offset + total);
      throw std::system_error(ec, "sendfile");
    }
    if (n == 0) break;  // end of file
    total += n;
    if (target.sent) target.sent(n);
  }
  if (total > 0) backend.seek_file(file, offset + total);  // as asyncio: only when bytes went
  co_return total;
}

// The native attempt on a socket transport; empty when the kernel refuses this file and the
// fallback may take over.
Coro<std::optional<std::size_t>> send_natively(StreamTransport& transport, int file,
                                               std::uint64_t offset,
                                               std::optional<std::size_t> count, bool fallback) {
  std::optional<std::size_t> sent;
  try {
    sent = co_await transport.sendfile(file, offset, count);
  } catch (const SendfileNotAvailableError&) {
    if (!fallback) throw;
  }
  co_return sent;
}

}  // namespace

bool StreamTransport::can_sendfile() const noexcept {
  return mode_ == Mode::socket && endpoint_ && !conn_lost_ && endpoint_->sendfile_socket() >= 0;
}

Coro<std::size_t> StreamTransport::sendfile(int file, std::uint64_t offset,
                                            std::optional<std::size_t> count) {
  Ref<StreamTransport> keep(this);
  if (sendfile_active_) throw RuntimeError("sendfile is already in progress on this transport");
  if (eof_written_) throw RuntimeError("Cannot call sendfile() after write_eof()");
  const bool was_reading = is_reading();
  pause_reading();
  sendfile_active_ = true;  // write() refuses from here on
  struct Finish {
    StreamTransport* t;
    bool resume;
    ~Finish() { t->finish_sendfile(resume); }
  } finish{this, was_reading};
  co_await flushed();
  ZeroCopyTarget target{
      [this] {
        if (conn_lost_ || !endpoint_)
          throw std::system_error(std::make_error_code(std::errc::connection_aborted),
                                  "sendfile: the transport was closed");
        return endpoint_->sendfile_socket();
      },
      [this] { return wait_sendfile_writable(); }, [this](std::size_t n) { bytes_out += n; }};
  std::exception_ptr failed;
  std::size_t total = 0;
  try {
    total = co_await send_zero_copy(loop_->backend(), std::move(target), file, offset, count);
  } catch (const std::system_error&) {
    failed = std::current_exception();
  }
  if (failed) {
    if (!conn_lost_) fatal_error(failed, "Fatal write error on socket transport");
    std::rethrow_exception(failed);
  }
  co_return total;
}

// Its own coroutine: a try around co_await inside a loop is miscompiled by Emscripten 3.1.6.
Coro<void> StreamTransport::wait_sendfile_writable() {
  sendfile_writable_ = loop_->create_future<void>();
  Future<void> ready = sendfile_writable_;
  endpoint_->wait_writable([ready]() mutable {
    if (!ready.done()) ready.set_result();
  });
  std::exception_ptr cancelled;
  try {
    co_await ready;
  } catch (...) {
    cancelled = std::current_exception();
  }
  sendfile_writable_ = {};
  if (endpoint_) endpoint_->cancel_writable_wait();
  if (cancelled) std::rethrow_exception(cancelled);
}

void StreamTransport::finish_sendfile(bool resume) {
  sendfile_active_ = false;
  if (conn_lost_) return;
  if (closing_ && writes_in_flight_ == 0) {  // close() came meanwhile: now the data is out
    finish_closing();
    return;
  }
  if (eof_written_ && endpoint_) endpoint_->shutdown();  // write_eof() came meanwhile
  if (resume) resume_reading();
}

Coro<std::size_t> EventLoop::sock_sendfile(int sock, int file, std::uint64_t offset, std::optional<std::size_t> count,
                                           bool fallback) {
  capabilities().require("sock_sendfile");
  if (check_sock(sock, true) != SocketKind::stream)
    throw ValueError("only SOCK_STREAM type sockets are supported");
  check_count(count);
  ZeroCopyTarget target{[sock] { return sock; }, [this, sock] { return wait_fd(sock, 1); },
                        nullptr};
  bool use_fallback = false;
  std::size_t total = 0;
  try {
    total = co_await send_zero_copy(backend(), std::move(target), file, offset, count);
  } catch (const SendfileNotAvailableError&) {
    if (!fallback) throw;
    use_fallback = true;
  }
  if (use_fallback) {
    ChunkSink send = [this, sock](std::string_view chunk) { return sock_sendall(sock, chunk); };
    total = co_await copy_file(*this, file, offset, count, send);
    if (total > 0) backend().seek_file(file, offset + total);
  }
  co_return total;
}

Coro<std::size_t> EventLoop::sendfile(Ref<WriteTransport> transport, int file, std::uint64_t offset,
                                      std::optional<std::size_t> count, bool fallback) {
  capabilities().require("sendfile");
  check_count(count);
  if (transport->is_closing()) throw RuntimeError("Transport is closing");
  auto* stream = dynamic_cast<StreamTransport*>(transport.get());
  if (stream && stream->can_sendfile()) {
    std::optional<std::size_t> sent =
        co_await send_natively(*stream, file, offset, count, fallback);
    if (sent) co_return *sent;
  }
  if (!fallback)
    throw RuntimeError(
        "fallback is disabled and native sendfile is not supported for this transport");
  auto* reader = dynamic_cast<ReadTransport*>(transport.get());
  const bool was_reading = reader && reader->is_reading();
  if (reader) reader->pause_reading();
  std::shared_ptr<BaseProtocol> user = transport->get_protocol();
  const bool paused =
      stream ? stream->writing_paused()
             : transport->get_write_buffer_size() > transport->get_write_buffer_limits().second;
  auto lent = std::make_shared<SendfileFallbackProtocol>(*this, user, paused);
  transport->set_protocol(lent);
  // The user's protocol comes back however this ends, told of the pause or resume it missed,
  // unless the connection was lost meanwhile: then the transport has let go of both protocols
  // (the user's got connection_lost through ours), and must not take the user's back.
  struct Restore {
    EventLoop& loop;
    Ref<WriteTransport> t;
    std::shared_ptr<BaseProtocol> user;
    std::shared_ptr<SendfileFallbackProtocol> lent;
    ReadTransport* r;
    bool user_paused, resume;
    ~Restore() {
      if (t->get_protocol() != lent) return;
      t->set_protocol(user);
      if (user && lent->writing_paused() != user_paused) {
        try {
          if (user_paused)
            user->resume_writing();
          else
            user->pause_writing();
        } catch (...) {
          ExceptionContext ctx(
              user_paused ? "protocol.resume_writing() failed" : "protocol.pause_writing() failed",
              std::current_exception());
          loop.call_exception_handler(ctx);
        }
      }
      if (resume && r && !t->is_closing()) r->resume_reading();
    }
  } restore{*this, transport, user, lent, reader, paused, was_reading};
  ChunkSink write = [lent, transport](std::string_view chunk) -> Coro<void> {
    co_await lent->drain();
    transport->write(chunk);
  };
  const std::size_t total = co_await copy_file(*this, file, offset, count, write);
  co_await lent->drain();
  if (total > 0) backend().seek_file(file, offset + total);
  co_return total;
}

}  // namespace eddy
