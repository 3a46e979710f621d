// asyncio's streams (Lib/asyncio/streams.py) over Eddy's transports: the StreamReader buffer and
// its read flow control, FlowControlMixin, StreamReaderProtocol, StreamWriter and the
// open_connection / start_server helpers. Platform-free: sockets come from the loop's methods.
#include "eddy/streams.hpp"

#include <algorithm>

#include "eddy/log.hpp"
#include "eddy/loop.hpp"
#include "eddy/policy.hpp"

namespace eddy {

// gcc 12 may destroy the temporary of `co_return co_await f();` twice, and braced lists cannot
// live in a coroutine frame: results are named first, vectors built without braces.

namespace {

std::string expected_text(std::optional<std::size_t> expected) {
  return expected ? std::to_string(*expected) : std::string("undefined");
}

// ConnectionResetError('Connection lost'): ECONNRESET for `catch`, and a what() that is the
// message alone, as str() of it in Python (libstdc++ would append ": Connection reset by peer").
class ConnectionLost : public std::system_error {
 public:
  ConnectionLost()
      : std::system_error(std::make_error_code(std::errc::connection_reset), "Connection lost") {}
  const char* what() const noexcept override { return "Connection lost"; }
};

LoopRef default_loop(EventLoop* loop) {
  if (loop) return LoopRef(loop);
  if (EventLoop* running = running_loop()) return LoopRef(running);
  try {
    return get_event_loop();
  } catch (const RuntimeError&) {
    return nullptr;  // bound to the running loop when a read first waits
  }
}

}  // namespace

IncompleteReadError::IncompleteReadError(std::string partial_, std::optional<std::size_t> expected_)
    : EOFError(std::to_string(partial_.size()) + " bytes read on a total of " +
               expected_text(expected_) + " expected bytes"),
      partial(std::move(partial_)),
      expected(expected_) {}

// ---- StreamReader -------------------------------------------------------------------------------

StreamReader::StreamReader(long long limit, EventLoop* loop) {
  if (limit <= 0) throw ValueError("Limit cannot be <= 0");
  limit_ = static_cast<std::size_t>(limit);
  loop_ = default_loop(loop);
}

StreamReader::~StreamReader() = default;

void StreamReader::set_exception(std::exception_ptr exc) {
  exception_ = exc;
  Future<void> waiter = std::exchange(waiter_, Future<void>());
  if (exc && waiter && !waiter.done()) waiter.set_exception(exc);
}

void StreamReader::wakeup_waiter() {
  Future<void> waiter = std::exchange(waiter_, Future<void>());
  if (waiter && !waiter.done()) waiter.set_result();
}

void StreamReader::set_transport(Ref<ReadTransport> transport) {
  if (transport_) throw RuntimeError("Transport already set");
  transport_ = std::move(transport);
}

void StreamReader::replace_transport(Ref<ReadTransport> transport) {
  // The old transport is retired (start_tls); the new one starts out reading, and stops if the
  // buffer is still over the limit (resumed as the reads drain it).
  transport_ = std::move(transport);
  if (paused_) transport_->pause_reading();
}

void StreamReader::maybe_resume_transport() {
  if (paused_ && size() <= limit_) {
    paused_ = false;
    transport_->resume_reading();
  }
}

void StreamReader::feed_eof() {
  eof_ = true;
  wakeup_waiter();
}

void StreamReader::feed_data(std::string_view data) {
  if (eof_) throw RuntimeError("feed_data after feed_eof");
  if (data.empty()) return;
  if (head_ > 0 && head_ >= buffer_.size() / 2) {
    buffer_.erase(0, head_);
    head_ = 0;
  }
  buffer_.append(data);
  wakeup_waiter();
  if (transport_ && !paused_ && size() > 2 * limit_) {
    try {
      transport_->pause_reading();
      paused_ = true;
    } catch (const NotSupportedError&) {
      transport_.reset();  // it cannot pause: buffer everything
    }
  }
}

namespace {
// take() copies reads of up to kCopyOutBytes out of a buffer of up to kKeptBufferBytes, which it
// keeps (an idle connection holds at most that much); larger ones take the buffer itself.
constexpr std::size_t kCopyOutBytes = 4096, kKeptBufferBytes = 4096;
}  // namespace

std::string StreamReader::take(std::size_t n) {
  n = std::min(n, size());
  if (n == size()) {
    // Everything buffered (the common read(n) case). A little of it is copied out and the buffer
    // keeps its memory for the next data: handed over, every connection would allocate a new
    // buffer as its data arrives, and a poll bringing data to more connections than the C++
    // heap keeps blocks of one size at hand (glibc's thread cache holds 7) would take the slow
    // path of malloc and free for the rest. The copy is of bytes still in the CPU's cache.
    if (n <= kCopyOutBytes && buffer_.capacity() <= kKeptBufferBytes) {
      std::string out(view());
      buffer_.clear();
      head_ = 0;
      return out;
    }
    // More: the buffer is handed over instead of copied; the next feed_data() starts a new one.
    if (head_ > 0) buffer_.erase(0, head_);
    std::string out = std::move(buffer_);
    buffer_.clear();
    head_ = 0;
    return out;
  }
  std::string out = buffer_.substr(head_, n);
  head_ += n;
  if (head_ == buffer_.size()) {
    buffer_.clear();
    head_ = 0;
  }
  return out;
}

Future<void>& StreamReader::new_waiter(const char* function, const SourceLocation* call) {
  // Two readers at once could not know which of them gets the next data.
  if (waiter_)
    throw RuntimeError(std::string(function) +
                       "() called while another coroutine is already waiting for incoming data");
  // Waiting while paused would never end (readexactly(n) with n > limit, for one).
  if (paused_) {
    paused_ = false;
    transport_->resume_reading();
  }
  if (!loop_) loop_ = LoopRef(&get_running_loop());
  if (!call) {
    waiter_ = loop_->create_future<void>();
  } else {
    // A reader waits once per read: the previous read's waiter, done with and held by nobody
    // else, waits again (an allocation and a free less per read).
    if (!spare_waiter_ || spare_waiter_->waiting_call() != call ||
        !spare_waiter_->rearm_if_unused())
      spare_waiter_ = Ref<detail::CallWaiter>(new detail::CallWaiter(*loop_, call));
    waiter_ = Future<void>(Ref<FutureBase>(spare_waiter_));
  }
  return waiter_;
}

StreamReader::DataWait StreamReader::wait_for_data(const char* function) {
  return DataWait(*this, new_waiter(function));
}

namespace {

// The object of a quick call, kept alive by the call (with no owner if it is not shared-owned).
// (shared_from_this takes one reference; weak_from_this().lock() would copy a weak one too.)
template <class Object>
std::shared_ptr<void> quick_self(Object* object) {
  try {
    return object->shared_from_this();
  } catch (const std::bad_weak_ptr&) {
    return std::shared_ptr<void>(std::shared_ptr<void>(), object);
  }
}

}  // namespace

// read(n) awaited inline: data already buffered (or EOF) is taken at once; otherwise the one wait
// for data asyncio's read makes is made in the awaiting frame. n < 0 runs the coroutine.
struct StreamReader::QuickRead {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>& waiting) {
    StreamReader& self = call.object<StreamReader>();
    if (self.exception_) std::rethrow_exception(self.exception_);
    if (call.arg < 0) return detail::QuickStart::frame;
    if (call.arg == 0 || self.size() > 0 || self.eof_) return detail::QuickStart::ready;
    static constexpr SourceLocation kCall{__FILE__, "eddy::StreamReader::read", __LINE__};
    waiting = self.new_waiter("read", &kCall).state();
    return detail::QuickStart::wait;
  }
  static void stop_waiting(detail::QuickCall& call, FutureBase& waited, bool) noexcept {
    call.object<StreamReader>().forget_waiter(&waited);
  }
  static std::string finish(detail::QuickCall& call) {
    if (call.arg == 0) return std::string();
    StreamReader& self = call.object<StreamReader>();
    std::string data = self.take(static_cast<std::size_t>(call.arg));
    self.maybe_resume_transport();
    return data;
  }
  static Coro<std::string> coroutine(detail::QuickCall&& call) {
    auto* self = &call.object<StreamReader>();
    return read_impl(std::static_pointer_cast<StreamReader>(call.self.release_shared()), self,
                     call.arg);
  }
  static constexpr detail::QuickOps<std::string> ops{start, stop_waiting, finish, coroutine};
};

// readexactly(n) awaited inline with n bytes already buffered; anything else runs the coroutine.
struct StreamReader::QuickReadExactly {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>&) {
    StreamReader& self = call.object<StreamReader>();
    if (call.arg < 0) throw ValueError("readexactly size can not be less than zero");
    if (self.exception_) std::rethrow_exception(self.exception_);
    if (self.size() < static_cast<std::size_t>(call.arg)) return detail::QuickStart::frame;
    return detail::QuickStart::ready;
  }
  static Coro<std::string> coroutine(detail::QuickCall&& call) {
    auto* self = &call.object<StreamReader>();
    return readexactly_impl(std::static_pointer_cast<StreamReader>(call.self.release_shared()),
                            self, call.arg);
  }
  // The n bytes are there: taken as read(n) takes them.
  static constexpr detail::QuickOps<std::string> ops{start, detail::never_waits, QuickRead::finish,
                                                     coroutine};
};

// readuntil(separator) awaited inline with a separator of up to 7 bytes (kept in the call's
// argument, its length in the low byte) found in the buffer within the limit: taken at once. A
// longer separator, or anything that needs more (waiting, EOF, the limit, an empty separator),
// runs the coroutine.
struct StreamReader::QuickReadUntil {
  static constexpr std::size_t kMaxSeparator = 7;
  static std::int64_t pack(std::string_view separator) noexcept {
    std::uint64_t packed = separator.size();
    for (std::size_t i = 0; i < separator.size(); ++i)
      packed |= std::uint64_t{static_cast<unsigned char>(separator[i])} << (8 * (i + 1));
    return static_cast<std::int64_t>(packed);
  }
  static std::string_view unpack(std::int64_t arg, char (&bytes)[kMaxSeparator]) noexcept {
    const auto packed = static_cast<std::uint64_t>(arg);
    const std::size_t size = packed & 0xff;
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(packed >> (8 * (i + 1)));
    return std::string_view(bytes, size);
  }
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>&) {
    StreamReader& self = call.object<StreamReader>();
    char bytes[kMaxSeparator];
    const std::string_view separator = unpack(call.arg, bytes);
    if (separator.empty()) return detail::QuickStart::frame;  // its ValueError
    if (self.exception_) std::rethrow_exception(self.exception_);
    return take_through(self, separator, call);
  }
  // Ready when `separator` is buffered within the limit (call.arg becomes what QuickRead::finish
  // takes: up to and with the separator); else the coroutine, which finds the buffer untouched.
  static detail::QuickStart take_through(StreamReader& self, std::string_view separator,
                                         detail::QuickCall& call) {
    const std::size_t at = self.view().find(separator);
    if (at == std::string_view::npos || at > self.limit_) return detail::QuickStart::frame;
    call.arg = static_cast<std::int64_t>(at + separator.size());
    return detail::QuickStart::ready;
  }
  static Coro<std::string> coroutine(detail::QuickCall&& call) {
    auto* self = &call.object<StreamReader>();
    char bytes[kMaxSeparator];
    std::vector<std::string> separators;
    separators.emplace_back(unpack(call.arg, bytes));
    return readuntil_impl(std::static_pointer_cast<StreamReader>(call.self.release_shared()), self,
                          std::move(separators));
  }
  static constexpr detail::QuickOps<std::string> ops{start, detail::never_waits, QuickRead::finish,
                                                     coroutine};
};

// readline() awaited inline with a whole line buffered, its newline within the limit: taken at
// once, as readuntil("\n") takes it. Anything else (a line still coming, EOF, a line over the
// limit, a stored exception) runs readline's coroutine, for its ValueError instead of
// LimitOverrunError, and its handling of a stored IncompleteReadError or LimitOverrunError
// (asyncio's readline catches them from readuntil whoever raised them).
struct StreamReader::QuickReadline {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>&) {
    StreamReader& self = call.object<StreamReader>();
    if (self.exception_) return detail::QuickStart::frame;
    return QuickReadUntil::take_through(self, "\n", call);
  }
  static Coro<std::string> coroutine(detail::QuickCall&& call) {
    auto* self = &call.object<StreamReader>();
    return readline_impl(std::static_pointer_cast<StreamReader>(call.self.release_shared()), self);
  }
  static constexpr detail::QuickOps<std::string> ops{start, detail::never_waits, QuickRead::finish,
                                                     coroutine};
};

Coro<std::string> StreamReader::read(long long n) {
  return Coro<std::string>::quick(QuickRead::ops,
                                  detail::QuickCall{detail::KeepAlive(quick_self(this)), n});
}

Coro<std::string> StreamReader::readexactly(long long n) {
  return Coro<std::string>::quick(QuickReadExactly::ops,
                                  detail::QuickCall{detail::KeepAlive(quick_self(this)), n});
}

Coro<std::string> StreamReader::readline() {
  return Coro<std::string>::quick(QuickReadline::ops,
                                  detail::QuickCall{detail::KeepAlive(quick_self(this)), 0});
}

Coro<std::optional<std::string>> StreamReader::next() {
  return next_impl(keep_alive(), this);
}

Coro<std::optional<std::string>> StreamReader::next_impl(std::shared_ptr<StreamReader> keep,
                                                         StreamReader* self) {
  std::string line = co_await detail::awaiting_as("eddy::StreamReader::next", self->readline());
  if (line.empty()) co_return std::nullopt;
  co_return std::optional<std::string>(std::move(line));
}

Coro<std::string> StreamReader::readuntil(std::string_view separator) {
  if (separator.size() <= QuickReadUntil::kMaxSeparator)
    return Coro<std::string>::quick(
        QuickReadUntil::ops,
        detail::QuickCall{detail::KeepAlive(quick_self(this)), QuickReadUntil::pack(separator)});
  std::vector<std::string> separators;
  separators.emplace_back(separator);
  return readuntil_impl(keep_alive(), this, std::move(separators));
}

Coro<std::string> StreamReader::readuntil(std::vector<std::string> separators) {
  return readuntil_impl(keep_alive(), this, std::move(separators));
}

Coro<std::string> StreamReader::read_impl(std::shared_ptr<StreamReader> keep, StreamReader* self,
                                          long long n) {
  (void)keep;
  if (self->exception_) std::rethrow_exception(self->exception_);
  if (n == 0) co_return std::string();
  if (n < 0) {
    // Block by block (limit bytes each) until EOF, so the transport is never left paused.
    std::string all;
    for (;;) {
      std::string block = co_await detail::awaiting_as(
          "eddy::StreamReader::read", self->read(static_cast<long long>(self->limit_)));
      if (block.empty()) break;
      all += block;
    }
    co_return all;
  }
  if (self->size() == 0 && !self->eof_)
    co_await detail::awaiting_as("eddy::StreamReader::read", self->wait_for_data("read"));
  std::string data = self->take(static_cast<std::size_t>(n));
  self->maybe_resume_transport();
  co_return data;
}

Coro<std::string> StreamReader::readexactly_impl(std::shared_ptr<StreamReader> keep,
                                                 StreamReader* self, long long n) {
  (void)keep;
  if (n < 0) throw ValueError("readexactly size can not be less than zero");
  if (self->exception_) std::rethrow_exception(self->exception_);
  if (n == 0) co_return std::string();
  const auto want = static_cast<std::size_t>(n);
  while (self->size() < want) {
    if (self->eof_) {
      std::string partial = self->take(self->size());
      throw IncompleteReadError(std::move(partial), want);
    }
    co_await detail::awaiting_as("eddy::StreamReader::readexactly",
                                 self->wait_for_data("readexactly"));
  }
  std::string data = self->take(want);
  self->maybe_resume_transport();
  co_return data;
}

Coro<std::string> StreamReader::readline_impl(std::shared_ptr<StreamReader> keep,
                                              StreamReader* self) {
  std::vector<std::string> separators(1, std::string("\n"));
  std::string line;
  try {
    line = co_await detail::awaiting_as("eddy::StreamReader::readline",
                                        readuntil_impl(keep, self, std::move(separators)));
  } catch (const IncompleteReadError& e) {
    line = e.partial;
  } catch (const LimitOverrunError& e) {
    // Drop the over-long line if its newline is here, else everything buffered.
    if (self->view().substr(std::min(e.consumed, self->size())).starts_with('\n'))
      self->take(e.consumed + 1);
    else
      self->take(self->size());
    self->maybe_resume_transport();
    throw ValueError(e.what());
  }
  co_return line;
}

Coro<std::string> StreamReader::readuntil_impl(std::shared_ptr<StreamReader> keep,
                                               StreamReader* self,
                                               std::vector<std::string> separators) {
  (void)keep;
  if (separators.empty()) throw ValueError("Separator should contain at least one element");
  // The shortest separator first: among matches ending at the same place it wins.
  std::stable_sort(separators.begin(), separators.end(),
                   [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
  const std::size_t min_seplen = separators.front().size();
  const std::size_t max_seplen = separators.back().size();
  if (min_seplen == 0) throw ValueError("Separator should be at least one-byte string");
  if (self->exception_) std::rethrow_exception(self->exception_);

  // `offset`: how far from the start of the buffer no separator can begin. The last
  // max_seplen - 1 bytes are searched again once more data came, as asyncio does.
  std::size_t offset = 0;
  std::size_t match_start = 0, match_end = 0;
  for (;;) {
    const std::string_view buf = self->view();
    if (buf.size() >= offset + min_seplen) {
      bool found = false;
      for (const std::string& sep : separators) {
        const std::size_t at = buf.find(sep, offset);
        if (at == std::string_view::npos) continue;
        const std::size_t end = at + sep.size();
        if (!found || end < match_end) {
          found = true;
          match_start = at;
          match_end = end;
        }
      }
      if (found) break;
      offset = buf.size() + 1 > max_seplen ? buf.size() + 1 - max_seplen : 0;
      if (offset > self->limit_)
        throw LimitOverrunError("Separator is not found, and chunk exceed the limit", offset);
    }
    // A chunk that completes the separator may come with EOF: the buffer is searched first.
    if (self->eof_) {
      std::string partial = self->take(self->size());
      throw IncompleteReadError(std::move(partial), std::nullopt);
    }
    co_await detail::awaiting_as("eddy::StreamReader::readuntil", self->wait_for_data("readuntil"));
  }
  if (match_start > self->limit_)
    throw LimitOverrunError("Separator is found, but chunk is longer than limit", match_start);
  std::string chunk = self->take(match_end);
  self->maybe_resume_transport();
  co_return chunk;
}

// ---- FlowControlMixin ---------------------------------------------------------------------------

FlowControlMixin::FlowControlMixin(EventLoop* loop)
    : loop_(loop ? LoopRef(loop) : get_event_loop()) {}

FlowControlMixin::~FlowControlMixin() = default;

void FlowControlMixin::flow_pause_writing() {
  paused_ = true;
}

void FlowControlMixin::flow_resume_writing() {
  paused_ = false;
  for (Future<void>& w : drain_waiters_)
    if (!w.done()) w.set_result();
}

void FlowControlMixin::flow_connection_lost(std::exception_ptr exc) {
  connection_lost_ = true;
  if (!paused_) return;  // nobody waits in drain
  for (Future<void>& w : drain_waiters_) {
    if (w.done()) continue;
    if (exc)
      w.set_exception(exc);
    else
      w.set_result();
  }
}

Coro<void> FlowControlMixin::drain_helper() {
  if (connection_lost_) throw ConnectionLost();
  if (!paused_) co_return;
  Future<void> waiter = loop_->create_future<void>();
  drain_waiters_.push_back(waiter);
  std::exception_ptr error;
  try {
    co_await detail::awaiting_as("eddy::FlowControlMixin::drain_helper", waiter);
  } catch (...) {
    error = std::current_exception();
  }
  std::erase(drain_waiters_, waiter);
  if (error) std::rethrow_exception(error);
}

// ---- ClientConnectedCallback --------------------------------------------------------------------

Coro<void> ClientConnectedCallback::call(Reader reader, Writer writer) const {
  if (!impl_) return Coro<void>();
  if (impl_->plain) {
    impl_->plain(std::move(reader), std::move(writer));
    return Coro<void>();
  }
  return impl_->coro(std::move(reader), std::move(writer));
}

namespace {

// Keeps the callable (a lambda's captures) alive while the coroutine it made runs.
Coro<void> run_client_connected(ClientConnectedCallback keep, Coro<void> body) {
  (void)keep;
  co_await body;
}

bool over_tls(const BaseTransport& t) {
  return t.get_extra_info("sslcontext").has_value() || t.get_extra_info("ssl_object").has_value();
}

}  // namespace

// ---- StreamReaderProtocol -----------------------------------------------------------------------

StreamReaderProtocol::StreamReaderProtocol(std::shared_ptr<StreamReader> reader,
                                           ClientConnectedCallback client_connected_cb,
                                           EventLoop* loop)
    : FlowControlMixin(loop),
      reader_(reader),
      client_connected_cb_(std::move(client_connected_cb)),
      closed_(get_loop().create_future<void>()) {
  // start_server's readers have no other owner until the callback gets them.
  if (client_connected_cb_) strong_reader_ = std::move(reader);
}

StreamReaderProtocol::~StreamReaderProtocol() {
  // The error wait_closed would raise counts as seen whether or not anyone waited.
  if (closed_.done() && !closed_.cancelled()) (void)closed_.exception();
}

void StreamReaderProtocol::connection_made(Ref<Transport> transport) {
  std::shared_ptr<StreamReader> reader = reader_.lock();
  transport_ = transport;
  if (reader) reader->set_transport(Ref<ReadTransport>(transport));
  over_ssl_ = over_tls(*transport);
  if (!client_connected_cb_) return;
  std::shared_ptr<StreamReaderProtocol> self = weak_from_this().lock();
  if (!self) throw RuntimeError("StreamReaderProtocol must be owned by a shared_ptr");
  // The writer is the callback's alone, as in asyncio 3.12+: when the handler drops it (returns
  // without keeping it), the last reference closes the transport.
  auto writer = std::make_shared<StreamWriter>(Ref<WriteTransport>(transport),
                                               std::static_pointer_cast<FlowControlMixin>(self),
                                               reader, get_loop());
  strong_reader_.reset();
  Coro<void> body = client_connected_cb_.call(reader, std::move(writer));
  if (!body) return;
  task_ = get_loop().create_task(run_client_connected(client_connected_cb_, std::move(body)),
                                 TaskOptions{}, client_connected_cb_.where());
  EventLoop* loop = &get_loop();
  std::weak_ptr<StreamReaderProtocol> weak = self;
  task_.add_done_callback([transport, loop, weak](Task<void> task) {
    // The protocol needs the finished task no more (its frame, with the writer it was given,
    // went when the coroutine returned).
    if (auto protocol = weak.lock()) protocol->task_ = Task<void>();
    if (task.cancelled()) {
      transport->close();
      return;
    }
    if (std::exception_ptr e = task.exception()) {
      ExceptionContext ctx("Unhandled exception in client_connected_cb", e);
      ctx.extra["transport"] = "stream transport";
      loop->call_exception_handler(ctx);
      transport->close();
    }
  });
}

void StreamReaderProtocol::replace_transport(Ref<Transport> transport) {
  transport_ = transport;
  if (std::shared_ptr<StreamReader> reader = reader_.lock())
    reader->replace_transport(Ref<ReadTransport>(transport));
  over_ssl_ = over_tls(*transport);
}

void StreamReaderProtocol::connection_lost(std::exception_ptr exc) {
  std::shared_ptr<StreamReaderProtocol> keep = weak_from_this().lock();
  if (std::shared_ptr<StreamReader> reader = reader_.lock()) {
    if (exc)
      reader->set_exception(exc);
    else
      reader->feed_eof();
  }
  if (!closed_.done()) {
    if (exc)
      closed_.set_exception(exc);
    else
      closed_.set_result();
  }
  flow_connection_lost(exc);
  reader_.reset();
  strong_reader_.reset();
  task_ = Task<void>();
  transport_.reset();
}

void StreamReaderProtocol::data_received(std::string_view data) {
  if (std::shared_ptr<StreamReader> reader = reader_.lock()) reader->feed_data(data);
}

bool StreamReaderProtocol::eof_received() {
  if (std::shared_ptr<StreamReader> reader = reader_.lock()) reader->feed_eof();
  // Keep the connection half-open for writing; TLS has no half-close.
  return !over_ssl_;
}

Future<void> StreamReaderProtocol::close_waiter(const StreamWriter&) {
  return closed_;
}

// ---- StreamWriter -------------------------------------------------------------------------------

StreamWriter::StreamWriter(Ref<WriteTransport> transport,
                           std::shared_ptr<FlowControlMixin> protocol,
                           std::shared_ptr<StreamReader> reader, EventLoop& loop)
    : transport_(std::move(transport)),
      protocol_(std::move(protocol)),
      reader_(std::move(reader)),
      loop_(&loop) {
  if (!transport_) throw TypeError("StreamWriter needs a transport");
  if (!protocol_) throw TypeError("StreamWriter needs a protocol");
}

StreamWriter::~StreamWriter() {
  if (!transport_ || transport_->is_closing() || loop_->is_closed()) return;
  if (loop_->get_debug()) log(LogLevel::warning, "unclosed StreamWriter: closing its transport");
  try {
    transport_->close();
  } catch (...) {
  }
}

void StreamWriter::writelines(const std::vector<std::string>& chunks) {
  std::vector<std::string_view> views(chunks.begin(), chunks.end());
  transport_->writelines(views);
}

// drain() awaited inline with nothing to wait for (the common case): no frame. A reader's
// exception is raised at once; closing, paused or lost connections run the coroutine.
struct StreamWriter::QuickDrain {
  static detail::QuickStart start(detail::QuickCall& call, Ref<FutureBase>&) {
    StreamWriter& self = call.object<StreamWriter>();
    if (self.reader_) {
      if (std::exception_ptr e = self.reader_->exception()) std::rethrow_exception(e);
    }
    if (self.transport_->is_closing() || self.protocol_->writing_paused() ||
        self.protocol_->connection_lost())
      return detail::QuickStart::frame;
    return detail::QuickStart::ready;
  }
  static void finish(detail::QuickCall&) {}
  static Coro<void> coroutine(detail::QuickCall&& call) {
    StreamWriter& self = call.object<StreamWriter>();
    return drain_impl(self.transport_, self.protocol_, self.reader_);
  }
  static constexpr detail::QuickOps<void> ops{start, detail::never_waits, finish, coroutine};
};

Coro<void> StreamWriter::drain() {
  return Coro<void>::quick(QuickDrain::ops,
                           detail::QuickCall{detail::KeepAlive(quick_self(this)), 0});
}

Coro<void> StreamWriter::drain_impl(Ref<WriteTransport> transport,
                                    std::shared_ptr<FlowControlMixin> protocol,
                                    std::shared_ptr<StreamReader> reader) {
  if (reader) {
    if (std::exception_ptr e = reader->exception()) std::rethrow_exception(e);
  }
  // Closing: one pass so that connection_lost can run and drain sees its error (a loop of
  // write + drain would otherwise never notice).
  if (transport->is_closing()) co_await detail::awaiting_as("eddy::StreamWriter::drain", sleep(0));
  // drain_helper's nothing-to-wait-for case, without its frame: the common one.
  if (!protocol->writing_paused() && !protocol->connection_lost()) co_return;
  co_await detail::awaiting_as("eddy::StreamWriter::drain", protocol->drain_helper());
}

namespace {
Coro<void> await_closed(Future<void> closed, std::shared_ptr<FlowControlMixin> keep) {
  (void)keep;
  co_await detail::awaiting_as("eddy::StreamWriter::wait_closed", closed);
}
}  // namespace

Coro<void> StreamWriter::wait_closed() {
  return await_closed(protocol_->close_waiter(*this), protocol_);
}

Coro<void> StreamWriter::start_tls(const TlsContext* context, StartTlsOptions options) {
  std::shared_ptr<StreamWriter> keep = weak_from_this().lock();
  return start_tls_impl(std::move(keep), this, context, options);
}

Coro<void> StreamWriter::start_tls_impl(std::shared_ptr<StreamWriter> keep, StreamWriter* self,
                                        const TlsContext* context, StartTlsOptions options) {
  (void)keep;
  std::shared_ptr<StreamReaderProtocol> protocol =
      std::dynamic_pointer_cast<StreamReaderProtocol>(self->protocol_);
  if (!protocol) throw TypeError("start_tls needs a writer made by a StreamReaderProtocol");
  Ref<Transport> transport(dynamic_cast<Transport*>(self->transport_.get()));
  if (!transport) throw TypeError("start_tls needs a stream transport");
  co_await self->drain();
  EventLoop& loop = *self->loop_;
  Ref<Transport> upgraded = co_await loop.start_tls(transport, protocol, context, options);
  self->transport_ = Ref<WriteTransport>(upgraded);
  protocol->replace_transport(upgraded);
}

// ---- Module-level helpers -----------------------------------------------------------------------

namespace {

struct ClientSide {
  std::shared_ptr<StreamReader> reader;
  std::shared_ptr<StreamReaderProtocol> protocol;
  ProtocolFactory factory;
};

ClientSide client_side(EventLoop& loop, long long limit) {
  ClientSide c;
  c.reader = std::make_shared<StreamReader>(limit, &loop);
  c.protocol = std::make_shared<StreamReaderProtocol>(c.reader, nullptr, &loop);
  std::shared_ptr<BaseProtocol> p = c.protocol;
  c.factory = [p] { return p; };
  return c;
}

ProtocolFactory server_factory(EventLoop& loop, long long limit, ClientConnectedCallback cb) {
  if (limit <= 0) throw ValueError("Limit cannot be <= 0");
  if (!cb) throw TypeError("start_server needs a client_connected_cb");
  EventLoop* lp = &loop;
  return [lp, limit, cb]() -> std::shared_ptr<BaseProtocol> {
    auto reader = std::make_shared<StreamReader>(limit, lp);
    return std::make_shared<StreamReaderProtocol>(reader, cb, lp);
  };
}

}  // namespace

Coro<StreamPair> open_connection(std::string host, std::uint16_t port,
                                 StreamConnectionOptions options) {
  EventLoop& loop = get_running_loop();
  ClientSide side = client_side(loop, options.limit);
  Connection c =
      co_await loop.create_connection(side.factory, std::move(host), port, options.connection);
  auto writer = std::make_shared<StreamWriter>(Ref<WriteTransport>(c.first), side.protocol,
                                               side.reader, loop);
  StreamPair result(side.reader, std::move(writer));
  co_return result;
}

Coro<StreamPair> open_unix_connection(std::string path, StreamConnectionOptions options) {
  EventLoop& loop = get_running_loop();
  ClientSide side = client_side(loop, options.limit);
  Connection c =
      co_await loop.create_unix_connection(side.factory, std::move(path), options.connection);
  auto writer = std::make_shared<StreamWriter>(Ref<WriteTransport>(c.first), side.protocol,
                                               side.reader, loop);
  StreamPair result(side.reader, std::move(writer));
  co_return result;
}

Coro<Ref<Server>> start_server(ClientConnectedCallback client_connected_cb, std::string host,
                               std::uint16_t port, StreamServerOptions options) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory = server_factory(loop, options.limit, std::move(client_connected_cb));
  Ref<Server> server = co_await loop.create_server(factory, std::move(host), port, options.server);
  co_return server;
}

Coro<Ref<Server>> start_server(ClientConnectedCallback client_connected_cb,
                               std::vector<std::string> hosts, std::uint16_t port,
                               StreamServerOptions options) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory = server_factory(loop, options.limit, std::move(client_connected_cb));
  Ref<Server> server = co_await loop.create_server(factory, std::move(hosts), port, options.server);
  co_return server;
}

Coro<Ref<Server>> start_unix_server(ClientConnectedCallback client_connected_cb, std::string path,
                                    StreamServerOptions options) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory = server_factory(loop, options.limit, std::move(client_connected_cb));
  Ref<Server> server = co_await loop.create_unix_server(factory, std::move(path), options.server);
  co_return server;
}

}  // namespace eddy
