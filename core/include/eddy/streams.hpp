// asyncio's Streams: StreamReader (a buffer with read/readexactly/readline/readuntil that pauses
// its transport when it holds more than twice its limit), StreamWriter (write plus drain, which
// waits while the transport is over its high-water mark), the StreamReaderProtocol between them,
// and open_connection / start_server and their Unix-socket twins.
//
//   auto [reader, writer] = co_await eddy::open_connection("example.org", 80);
//   writer->write("GET / HTTP/1.0\r\n\r\n");
//   co_await writer->drain();
//   std::string status = co_await reader->readline();
//   writer->close();
//   co_await writer->wait_closed();
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "eddy/errors.hpp"
#include "eddy/io_options.hpp"
#include "eddy/protocols.hpp"
#include "eddy/server.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"

namespace eddy {

// asyncio's _DEFAULT_LIMIT: a StreamReader's line limit, and half its buffer limit.
inline constexpr long long kDefaultStreamLimit = 64 * 1024;

// Python's EOFError.
class EOFError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// asyncio.IncompleteReadError: EOF came before `expected` bytes (nullopt: before the separator).
class IncompleteReadError : public EOFError {
 public:
  IncompleteReadError(std::string partial, std::optional<std::size_t> expected);
  std::string partial;  // what was read before EOF (it is no longer in the reader's buffer)
  std::optional<std::size_t> expected;
};

// asyncio.LimitOverrunError: the separator was not found within the limit. The data stays in
// the buffer; `consumed` is how many bytes to skip to get past the limit.
class LimitOverrunError : public std::runtime_error {
 public:
  LimitOverrunError(const std::string& message, std::size_t consumed)
      : std::runtime_error(message), consumed(consumed) {}
  std::size_t consumed;
};

class StreamReaderProtocol;
class StreamWriter;

// asyncio.StreamReader. Own it by shared_ptr (the protocol and the user share it); a read that is
// waiting keeps the reader alive. One coroutine at a time may wait for data.
class StreamReader : public std::enable_shared_from_this<StreamReader> {
 public:
  // ValueError if limit <= 0. `loop` defaults to the running loop (else get_event_loop()).
  explicit StreamReader(long long limit = kDefaultStreamLimit, EventLoop* loop = nullptr);
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;
  ~StreamReader();

  // Up to n bytes as soon as any are buffered; n < 0: everything until EOF; "" at EOF.
  Coro<std::string> read(long long n = -1);
  // Exactly n bytes; IncompleteReadError at EOF (the buffer is emptied into `partial`).
  Coro<std::string> readexactly(long long n);
  // One line with its "\n"; the partial last line at EOF; ValueError when over the limit (the
  // line is dropped if its newline was found, else the whole buffer is).
  Coro<std::string> readline();
  // Data up to and including the separator. Several separators: the shortest result wins.
  // LimitOverrunError (data kept), IncompleteReadError at EOF (buffer emptied).
  Coro<std::string> readuntil(std::string_view separator = "\n");
  Coro<std::string> readuntil(std::vector<std::string> separators);
  // `async for line in reader`: the next line (readline), nullopt once it gives "" (EOF).
  //   while (auto line = co_await reader->next()) handle(*line);
  Coro<std::optional<std::string>> next();

  bool at_eof() const noexcept { return eof_ && size() == 0; }
  void feed_data(std::string_view data);  // RuntimeError after feed_eof()
  void feed_eof();
  std::exception_ptr exception() const noexcept { return exception_; }
  // Reads raise `exc` from now on; a waiting read raises it at once.
  void set_exception(std::exception_ptr exc);
  template <class E>
  requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>) void set_exception(E&& e) {
    set_exception(std::make_exception_ptr(std::forward<E>(e)));
  }
  // The transport paused (over 2 * limit buffered) and resumed (back to <= limit) as asyncio's
  // read flow control. RuntimeError if one is already set.
  void set_transport(Ref<ReadTransport> transport);
  std::size_t limit() const noexcept { return limit_; }
  // Eddy: bytes buffered and not yet read.
  std::size_t buffer_size() const noexcept { return size(); }

 private:
  friend class StreamReaderProtocol;
  static Coro<std::string> read_impl(std::shared_ptr<StreamReader> keep, StreamReader* self,
                                     long long n);
  static Coro<std::string> readexactly_impl(std::shared_ptr<StreamReader> keep, StreamReader* self,
                                            long long n);
  static Coro<std::string> readline_impl(std::shared_ptr<StreamReader> keep, StreamReader* self);
  static Coro<std::optional<std::string>> next_impl(std::shared_ptr<StreamReader> keep,
                                                    StreamReader* self);
  static Coro<std::string> readuntil_impl(std::shared_ptr<StreamReader> keep, StreamReader* self,
                                          std::vector<std::string> separators);
  // Awaited by the reads: resumes on feed_data, feed_eof or set_exception. A plain awaitable,
  // not a coroutine, so that a read which has to wait costs no second frame.
  class DataWait;
  DataWait wait_for_data(const char* function);
  void forget_waiter(const FutureBase* waiter) noexcept {
    if (waiter_.base() == waiter) waiter_ = Future<void>();
  }
  void wakeup_waiter();
  void maybe_resume_transport();
  void replace_transport(Ref<ReadTransport> transport);  // start_tls
  std::size_t size() const noexcept { return buffer_.size() - head_; }
  std::string_view view() const noexcept { return std::string_view(buffer_).substr(head_); }
  std::string take(std::size_t n);
  std::shared_ptr<StreamReader> keep_alive() { return weak_from_this().lock(); }
  // read()'s frame-free path (detail::QuickOps).
  struct QuickRead;
  struct QuickReadExactly;
  struct QuickReadline;
  struct QuickReadUntil;
  // `call`: the waiter of a call awaited without a frame, named in await chains.
  Future<void>& new_waiter(const char* function, const SourceLocation* call = nullptr);

  std::size_t limit_;
  LoopRef loop_;
  std::string buffer_;
  std::size_t head_ = 0;  // bytes of buffer_ already read
  bool eof_ = false;
  bool paused_ = false;
  Future<void> waiter_;
  // The last frame-free read's waiter, kept to be reused by the next one (new_waiter).
  Ref<detail::CallWaiter> spare_waiter_;
  std::exception_ptr exception_;
  Ref<ReadTransport> transport_;
};

class StreamReader::DataWait {
 public:
  using eddy_awaitable = void;
  DataWait(StreamReader& reader, Future<void> waiter) noexcept
      : reader_(&reader), waiter_(std::move(waiter)) {}

  struct Awaiter {
    detail::FutureAwaiter<void> wait;
    StreamReader* reader;
    bool await_ready() const noexcept { return wait.await_ready(); }
    void await_suspend(coro::coroutine_handle<> h) {
      try {
        wait.await_suspend(h);
      } catch (...) {
        reader->forget_waiter(wait.future.get());  // not awaited from a task: never waited
        throw;
      }
    }
    // asyncio's `finally: self._waiter = None`, also when the wait was cancelled.
    void await_resume() {
      reader->forget_waiter(wait.future.get());
      wait.await_resume();
    }
  };
  Awaiter make_awaiter(PromiseBase* awaiting, SourceLocation where) {
    return Awaiter{detail::FutureAwaiter<void>{waiter_.state(), awaiting, where}, reader_};
  }

 private:
  StreamReader* reader_;
  Future<void> waiter_;
};

// asyncio's FlowControlMixin: the write-side flow control a StreamWriter's protocol provides.
// Protocols derive from it next to their Protocol base and forward pause_writing,
// resume_writing and connection_lost to the flow_* calls.
class FlowControlMixin {
 public:
  explicit FlowControlMixin(EventLoop* loop = nullptr);
  virtual ~FlowControlMixin();
  // What StreamWriter::drain waits on: ConnectionResetError (std::system_error ECONNRESET)
  // once the connection is lost; while paused, until resumed (or lost, raising its error).
  Coro<void> drain_helper();
  // The future StreamWriter::wait_closed awaits for `stream`.
  virtual Future<void> close_waiter(const StreamWriter& stream) = 0;
  bool writing_paused() const noexcept { return paused_; }
  bool connection_lost() const noexcept { return connection_lost_; }
  EventLoop& get_loop() const noexcept { return *loop_; }

 protected:
  void flow_pause_writing();
  void flow_resume_writing();
  void flow_connection_lost(std::exception_ptr exc);

 private:
  LoopRef loop_;
  std::vector<Future<void>> drain_waiters_;
  bool paused_ = false;
  bool connection_lost_ = false;
};

// start_server's client_connected_cb: a callable taking (reader, writer) and returning either
// Coro<void> (run as a Task per connection, as asyncio does) or void (called in connection_made).
// Copies share the callable, which lives as long as any task it started. The per-connection
// tasks are shown as created where the callable became this (the start_server call, usually).
class ClientConnectedCallback {
 public:
  using Reader = std::shared_ptr<StreamReader>;
  using Writer = std::shared_ptr<StreamWriter>;
  ClientConnectedCallback() = default;
  ClientConnectedCallback(std::nullptr_t) {}
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, ClientConnectedCallback> &&
           std::is_invocable_v<std::decay_t<F>&, Reader, Writer>)
      ClientConnectedCallback(F&& f, SourceLocation where = SourceLocation::current()) {
    using R = std::invoke_result_t<std::decay_t<F>&, Reader, Writer>;
    auto impl = std::make_shared<Impl>();
    impl->where = where;
    if constexpr (std::is_void_v<R>) {
      impl->plain = std::forward<F>(f);
    } else {
      static_assert(std::is_same_v<R, Coro<void>>,
                    "client_connected_cb must return void or eddy::Coro<void>");
      impl->coro = std::forward<F>(f);
    }
    impl_ = std::move(impl);
  }
  explicit operator bool() const noexcept { return bool(impl_); }
  // A plain callback runs now and the result is an empty Coro; a coroutine callback's Coro is
  // returned unstarted.
  Coro<void> call(Reader reader, Writer writer) const;
  SourceLocation where() const noexcept { return impl_ ? impl_->where : SourceLocation{}; }

 private:
  struct Impl {
    std::function<Coro<void>(Reader, Writer)> coro;
    std::function<void(Reader, Writer)> plain;
    SourceLocation where;
  };
  std::shared_ptr<const Impl> impl_;
};

// asyncio.StreamReaderProtocol: feeds a StreamReader from a stream transport. eof_received keeps
// the connection half-open (true) except over TLS; connection_lost ends the reader with EOF or
// the error and resolves wait_closed. With a client_connected_cb (start_server) it makes the
// StreamWriter and starts the callback; a callback task that fails is reported
// ("Unhandled exception in client_connected_cb") and its connection closed. Create it with
// make_shared. StreamWriter::start_tls switches it and its reader to the TLS transport.
class StreamReaderProtocol : public Protocol,
                             public FlowControlMixin,
                             public std::enable_shared_from_this<StreamReaderProtocol> {
 public:
  explicit StreamReaderProtocol(std::shared_ptr<StreamReader> reader,
                                ClientConnectedCallback client_connected_cb = {},
                                EventLoop* loop = nullptr);
  ~StreamReaderProtocol() override;

  void connection_made(Ref<Transport> transport) override;
  void connection_lost(std::exception_ptr exc) override;
  void data_received(std::string_view data) override;
  bool eof_received() override;
  void pause_writing() override { flow_pause_writing(); }
  void resume_writing() override { flow_resume_writing(); }
  Future<void> close_waiter(const StreamWriter& stream) override;

  bool server_side() const noexcept { return bool(client_connected_cb_); }
  std::shared_ptr<StreamReader> reader() const { return reader_.lock(); }
  // The client_connected_cb task (start_server), until connection_lost.
  Task<void> client_task() const { return task_; }

 private:
  friend class StreamWriter;
  // start_tls (asyncio's _replace_transport): the TLS transport replaces the retired one.
  void replace_transport(Ref<Transport> transport);

  std::weak_ptr<StreamReader> reader_;
  std::shared_ptr<StreamReader> strong_reader_;  // server side, until connection_made
  ClientConnectedCallback client_connected_cb_;
  Task<void> task_;
  Ref<Transport> transport_;
  Future<void> closed_;
  bool over_ssl_ = false;
};

// asyncio.StreamWriter. Dropping the last reference to a writer whose transport is still open
// closes it (asyncio's StreamWriter.__del__).
class StreamWriter : public std::enable_shared_from_this<StreamWriter> {
 public:
  StreamWriter(Ref<WriteTransport> transport, std::shared_ptr<FlowControlMixin> protocol,
               std::shared_ptr<StreamReader> reader, EventLoop& loop);
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;
  ~StreamWriter();

  const Ref<WriteTransport>& transport() const noexcept { return transport_; }
  void write(std::string_view data) { transport_->write(data); }
  void writelines(std::span<const std::string_view> chunks) { transport_->writelines(chunks); }
  void writelines(const std::vector<std::string>& chunks);
  bool can_write_eof() const { return transport_->can_write_eof(); }
  void write_eof() { transport_->write_eof(); }
  void close() { transport_->close(); }
  bool is_closing() const { return transport_->is_closing(); }
  std::any get_extra_info(std::string_view name, std::any default_value = {}) const {
    return transport_->get_extra_info(name, std::move(default_value));
  }
  // Raises the reader's exception if it has one; yields once if the transport is closing (so
  // connection_lost can run); then waits while the transport is over its high-water mark.
  // After the connection is lost: its error, else ConnectionResetError.
  Coro<void> drain();
  // Returns once the connection is closed; raises the error it was lost with, if any.
  Coro<void> wait_closed();
  // Drains, then upgrades the connection to TLS (EventLoop::start_tls); reader and writer go on
  // over the new transport.
  Coro<void> start_tls(const TlsContext* context, StartTlsOptions options = {});

 private:
  struct QuickDrain;  // drain()'s frame-free path (detail::QuickOps)
  static Coro<void> drain_impl(Ref<WriteTransport> transport,
                               std::shared_ptr<FlowControlMixin> protocol,
                               std::shared_ptr<StreamReader> reader);
  static Coro<void> start_tls_impl(std::shared_ptr<StreamWriter> keep, StreamWriter* self,
                                   const TlsContext* context, StartTlsOptions options);

  Ref<WriteTransport> transport_;
  std::shared_ptr<FlowControlMixin> protocol_;
  std::shared_ptr<StreamReader> reader_;
  LoopRef loop_;
};

// open_connection's result: asyncio's (reader, writer) pair.
using StreamPair = std::pair<std::shared_ptr<StreamReader>, std::shared_ptr<StreamWriter>>;

// open_connection / open_unix_connection keyword arguments: the reader's limit and
// create_connection's options.
struct StreamConnectionOptions {
  long long limit = kDefaultStreamLimit;
  ConnectionOptions connection;
};
// start_server / start_unix_server keyword arguments: the readers' limit and create_server's.
struct StreamServerOptions {
  long long limit = kDefaultStreamLimit;
  ServerOptions server;
};
static_assert(std::is_trivially_destructible_v<StreamConnectionOptions>);
static_assert(std::is_trivially_destructible_v<StreamServerOptions>);

// Must run inside a task of the running loop. Name the callback (a ClientConnectedCallback or a
// lambda variable) before a co_await expression: gcc 12 may destroy lambda temporaries there
// twice.
Coro<StreamPair> open_connection(std::string host, std::uint16_t port,
                                 StreamConnectionOptions options = {});
Coro<Ref<Server>> start_server(ClientConnectedCallback client_connected_cb, std::string host,
                               std::uint16_t port, StreamServerOptions options = {});
Coro<Ref<Server>> start_server(ClientConnectedCallback client_connected_cb,
                               std::vector<std::string> hosts, std::uint16_t port,
                               StreamServerOptions options = {});
Coro<StreamPair> open_unix_connection(std::string path, StreamConnectionOptions options = {});
Coro<Ref<Server>> start_unix_server(ClientConnectedCallback client_connected_cb, std::string path,
                                    StreamServerOptions options = {});

}  // namespace eddy
