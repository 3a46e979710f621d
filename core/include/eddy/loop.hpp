// EventLoop: asyncio's event loop on a pluggable Backend. It owns the ready queue (FIFO), the timer
// heap and the thread-safe inbox; run_once() is the one place where callbacks are called (see
// loop.cpp). Create loops with new_event_loop() (policy.hpp) or, for tests, the virtual-clock loop.
//
//   auto loop = eddy::new_event_loop();
//   loop->call_later(0.5, [&] { loop->stop(); });
//   loop->run_forever();
//   loop->close();
#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <span>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eddy/backend.hpp"
#include "eddy/config.hpp"
#include "eddy/detail/pages.hpp"
#include "eddy/errors.hpp"
#include "eddy/handle.hpp"
#include "eddy/inspect.hpp"
#include "eddy/io_options.hpp"
#include "eddy/ref.hpp"

namespace eddy {

class FutureBase;
class TaskBase;
class BaseTransport;
class Executor;
template <class T>
class Future;
template <class T>
class Task;
template <class T>
class Coro;
class CoroutineFrame;
namespace detail {
class AsyncGenPromiseBase;
}

// create_task's keyword arguments.
struct TaskOptions {
  std::string name;                 // default "Task-N"
  std::optional<bool> eager_start;  // start running inside create_task (if the loop runs)
  SourceLocation created_at;        // filled in by create_task: where it was called
};

// What call_exception_handler() receives: asyncio's context dict as a struct. `message` is always
// set; the other keys only when they apply ("exception", "future", "task", "handle", ...).
struct ExceptionContext {
  std::string message;
  std::exception_ptr exception;
  Ref<FutureBase> future;
  Ref<TaskBase> task;
  Handle handle;
  SourceLocation source;  // where the handle was scheduled or the task created
  std::map<std::string, std::string> extra;

  ExceptionContext();
  ExceptionContext(std::string message, std::exception_ptr exception = nullptr);
  ExceptionContext(const ExceptionContext&);
  ExceptionContext(ExceptionContext&&) noexcept;
  ExceptionContext& operator=(const ExceptionContext&);
  ExceptionContext& operator=(ExceptionContext&&) noexcept;
  ~ExceptionContext();

  // Text of the exception, if any ("" otherwise).
  std::string exception_text() const;
};

using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;
using TaskFactory =
    std::function<Ref<TaskBase>(EventLoop&, CoroutineFrame&&, const TaskOptions&)>;

// Counters that prove a loop ended clean: tests assert they are all zero after close().
struct LoopStats {
  std::size_t live_handles = 0;    // handle records not yet freed (queued or held by user code)
  std::size_t ready = 0;           // handles in the ready queue
  std::size_t timers = 0;          // entries in the timer heap (cancelled ones included)
  std::size_t cancelled_timers = 0;
  std::size_t live_futures = 0;    // Future and Task objects alive
  std::uint64_t futures_created = 0;  // Future and Task objects made since the loop was created
  std::size_t live_tasks = 0;      // Task objects alive
  std::size_t pending_tasks = 0;   // Tasks not done
  std::size_t executor_jobs = 0;   // run_in_executor calls whose result has not come back
  std::size_t live_transports = 0; // transports not yet destroyed
  std::uint64_t iterations = 0;    // run_once() passes so far
};

// Lets a host that owns the thread (a browser page, a GUI frame loop) drive the loop: the loop
// calls schedule() when it has work and no pass is in progress; `delay` is 0 for ready work,
// else seconds until the nearest timer.
class HostDriver {
 public:
  virtual ~HostDriver() = default;
  virtual void schedule(double delay) = 0;
};

namespace detail {

// A callback the loop runs each time an event comes (add_reader, add_writer, add_signal_handler),
// with what each run is reported as: the name of the caller's callable and where it was added.
struct RepeatingCallback {
  std::function<void()> fn;
  const char* name;
  SourceLocation where;

  template <class F>
  static std::shared_ptr<RepeatingCallback> make(F&& f, SourceLocation where) {
    return std::make_shared<RepeatingCallback>(RepeatingCallback{
        std::function<void()>(std::forward<F>(f)), callable_name<std::decay_t<F>>(), where});
  }
};
// One run, as a ready handle; `Owner` is a shared_ptr (the run happens even if the callback is
// removed meanwhile, as asyncio's signal handles) or a weak_ptr (it does not, as its fd handles).
// The name is kept too: a callback that removes itself and then raises is still named.
template <class Owner>
struct RunRepeatingCallback {
  Owner callback;
  const char* name;
  void operator()() const {
    if constexpr (std::is_same_v<Owner, std::weak_ptr<RepeatingCallback>>) {
      if (auto c = callback.lock()) c->fn();
    } else {
      callback->fn();
    }
  }
  const char* callback_name() const noexcept { return name; }
};

// Cross-thread queue for call_soon_threadsafe and executor completions. Shared with worker
// threads so that a completion arriving after the loop is gone is dropped safely.
class Inbox {
 public:
  explicit Inbox(Backend* backend) : backend_(backend) {}
  // Returns false when the loop is closed (the callback is then dropped).
  bool post(HandleRecord* rec);
  void take(std::vector<HandleRecord*>& out);
  void close();
  bool has_work() const noexcept { return pending_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::vector<HandleRecord*> queue_;
  Backend* backend_;
  std::atomic<bool> pending_{false};
  bool closed_ = false;
};

// One entry of the ready queue. Most are a tagged address owning one reference: a handle record,
// or work that needs no record because no user code can see its handle: a task's next step
// (asyncio's Task.__step and __wakeup) or a future's first done callback, which the future stores
// inline. A small call_soon callback (detail::fits_ready_entry) is kept in the entry itself: its
// CallbackOps address, tagged, and its eight bytes; the caller's Handle is a ticket for it. A null
// record is a cancelled inline callback.
class ReadyEntry {
 public:
  enum class Kind : unsigned {
    record = 0,
    task_step = 1,
    task_wakeup = 2,
    done_callback = 3,
    inline_callback = 4
  };
  ReadyEntry() noexcept = default;
  ReadyEntry(HandleRecord* r) noexcept : bits_(reinterpret_cast<std::uintptr_t>(r)) {}  // NOLINT
  static ReadyEntry step(TaskBase* t, bool wakeup) noexcept {
    return ReadyEntry(reinterpret_cast<std::uintptr_t>(t) |
                      static_cast<unsigned>(wakeup ? Kind::task_wakeup : Kind::task_step));
  }
  static ReadyEntry first_done_callback(FutureBase* f) noexcept {
    return ReadyEntry(reinterpret_cast<std::uintptr_t>(f) |
                      static_cast<unsigned>(Kind::done_callback));
  }
  template <class F, class G>
  static ReadyEntry inline_callback(G&& callback) noexcept {
    static_assert(fits_ready_entry<F>);
    ReadyEntry e(reinterpret_cast<std::uintptr_t>(&CallbackOpsFor<F>::ops) | kInline);
    ::new (static_cast<void*>(e.payload_)) F(std::forward<G>(callback));
    return e;
  }
  // Tags 1-3 may carry kTraced; a record (tag 0) never does, so 4 alone marks an inline callback.
  Kind kind() const noexcept {
    const std::uintptr_t k = bits_ & kKindBits;
    return k != 0 ? static_cast<Kind>(k) : (bits_ & kInline) ? Kind::inline_callback : Kind::record;
  }
  // The same distinctions in the order the run loop makes them, fewest tests for a task's step.
  bool is_object() const noexcept { return (bits_ & kKindBits) != 0; }  // task, or future
  bool is_future() const noexcept { return (bits_ & kKindBits) == 3; }  // its first done callback
  bool is_inline() const noexcept { return (bits_ & kInline) != 0; }    // when not an object
  // A copy of the first word alone, for any entry but an inline callback.
  ReadyEntry without_payload() const noexcept { return ReadyEntry(bits_); }
  bool is_record() const noexcept { return (bits_ & kTagBits) == 0; }
  HandleRecord* record() const noexcept { return reinterpret_cast<HandleRecord*>(bits_); }
  TaskBase* task() const noexcept { return reinterpret_cast<TaskBase*>(bits_ & ~kTagBits); }
  FutureBase* future() const noexcept { return reinterpret_cast<FutureBase*>(bits_ & ~kTagBits); }
  const CallbackOps* ops() const noexcept {
    return reinterpret_cast<const CallbackOps*>(bits_ & ~kTagBits);
  }
  // An inline callback's bytes. They move with the queue: call it from a copy of the entry.
  void* payload() noexcept { return payload_; }
  const void* payload() const noexcept { return payload_; }
  // Tagged entries only (a record keeps kHandleTraced): the inspector sampled this entry.
  bool traced() const noexcept { return (bits_ & kKindBits) != 0 && (bits_ & kTraced) != 0; }
  void set_traced() noexcept { bits_ |= kTraced; }
  // The inspector's event id: pairs the entry's scheduling with its run.
  std::uintptr_t id() const noexcept { return bits_ & ~kTraced; }
  static constexpr std::size_t kAlignment = 8;

 private:
  friend class ReadyQueue;
  explicit ReadyEntry(std::uintptr_t bits) noexcept : bits_(bits) {}
  static constexpr std::uintptr_t kKindBits = 3, kTraced = 4, kInline = 4, kTagBits = 7;
  std::uintptr_t bits_ = 0;
  alignas(8) unsigned char payload_[kReadyPayloadSize];
};
static_assert(sizeof(ReadyEntry) == 16);
// For reports and the inspector: the callable's name ("Task.__step" and "Task.__wakeup" for
// task steps) and where the handle was scheduled (a step: where its task was created).
const char* ready_entry_name(const ReadyEntry& e) noexcept;
SourceLocation ready_entry_source(const ReadyEntry& e) noexcept;
// Drops the queue's reference to an entry that will not run (a cancelled one, or the loop closed).
void release_ready_entry(const ReadyEntry& e) noexcept;

// FIFO of ready entries in blocks of 4,096 (64 KiB), so that growing it never copies an entry nor
// touches memory twice: a million pending callbacks take 16 MB, once. Entries are numbered by a
// sequence that never restarts (tickets name them by it); block `s >> kBlockShift` holds entry `s`,
// found through a small ring of block pointers. Emptied blocks are kept for reuse while the loop
// lives: the first few from the heap, later ones carved from 2 MiB arenas faulted in at once
// (the first arena lazily).
class ReadyQueue {
 public:
  explicit ReadyQueue(std::uint64_t first_seq);
  ~ReadyQueue();
  ReadyQueue(const ReadyQueue&) = delete;
  ReadyQueue& operator=(const ReadyQueue&) = delete;
  bool empty() const noexcept { return head_ == tail_; }
  std::size_t size() const noexcept { return static_cast<std::size_t>(tail_ - head_); }
  // Queues a record or a tagged object (one word; the payload is left as it was).
  void push(const ReadyEntry& e) {
    if (EDDY_UNLIKELY((tail_ >> kBlockShift) != last_block_)) add_block();
    tail_block_[tail_++ & kInBlock].bits_ = e.bits_;
  }
  // Queues an inline callback; returns its sequence number.
  std::uint64_t push_inline(const ReadyEntry& e) {
    if (EDDY_UNLIKELY((tail_ >> kBlockShift) != last_block_)) add_block();
    tail_block_[tail_ & kInBlock] = e;
    return tail_++;
  }
  // The oldest entry, and dropping it (its block is let go once passed).
  const ReadyEntry& front() const noexcept { return head_block_[head_ & kInBlock]; }
  void drop_front() noexcept {
    if (EDDY_UNLIKELY((++head_ & kInBlock) == 0)) next_head_block();
  }
  ReadyEntry pop() noexcept {
    const ReadyEntry e = front();
    drop_front();
    return e;
  }
  const ReadyEntry& at(std::size_t i) const noexcept { return *slot(head_ + i); }
  // The queued entry whose sequence number is `seq` modulo 2^bits, or null once it left.
  ReadyEntry* find(std::uint64_t seq, std::uint64_t seq_mask) noexcept {
    const std::uint64_t back = (tail_ - seq) & seq_mask;  // 1 for the newest entry
    return back != 0 && back <= tail_ - head_ ? slot(tail_ - back) : nullptr;
  }
  std::uint64_t head_seq() const noexcept { return head_; }
  std::uint64_t tail_seq() const noexcept { return tail_; }

 private:
  static constexpr unsigned kBlockShift = 12;
  static constexpr std::uint64_t kInBlock = (std::uint64_t{1} << kBlockShift) - 1;
  ReadyEntry* slot(std::uint64_t seq) const noexcept {
    return blocks_[(seq >> kBlockShift) & table_mask_] + (seq & kInBlock);
  }
  void add_block();
  void next_head_block() noexcept;
  ReadyEntry* new_block();

  std::uint64_t head_;
  std::uint64_t tail_;
  ReadyEntry* head_block_;    // holds entry head_
  ReadyEntry* tail_block_;    // the newest block: holds entry tail_ unless that one starts a block
  std::uint64_t last_block_;  // the newest block's number; blocks first..last_block_ are in use
  ReadyEntry** blocks_;       // a power-of-two ring of block pointers, by block number
  std::uint64_t table_mask_;
  std::vector<ReadyEntry*> free_blocks_;
  std::size_t blocks_made_ = 0;
  // A queue of a pass's timers or I/O often outgrows the heap's four blocks, seldom 2 MiB.
  BlockSource source_{sizeof(ReadyEntry) << kBlockShift, 4, platform::PageUse::lazy};
};

// Timer heap entry: the record's pool index and an arming sequence number (FIFO among equal
// deadlines). The deadline itself lives in the record.
struct TimerEntry {
  std::uint32_t index;
  std::uint32_t seq;
};
using TimerHeap = std::vector<TimerEntry, ArrayAllocator<TimerEntry>>;

// A loop's slot in the ticket table (see detail::ticket in handle.hpp), and the sequence number
// its ready queue starts at. No slot (kNoSlot) when every slot is taken: the loop then gives
// every call_soon a record.
struct TicketSlot {
  std::uint32_t index = ticket::kNoSlot;
  std::uint64_t first_seq = 0;
};
TicketSlot claim_ticket_slot(EventLoop* loop) noexcept;
void release_ticket_slot(TicketSlot slot, std::uint64_t next_seq) noexcept;

}  // namespace detail

// The loop running on this thread, or null (with the other module-level calls in task.hpp).
EventLoop* running_loop() noexcept;

class EventLoop : public RefCounted {
 public:
  explicit EventLoop(std::unique_ptr<Backend> backend);
  ~EventLoop() override;

  // ---- Lifecycle ---------------------------------------------------------------------------
  // Runs until stop(). RuntimeError if closed, already running, or another loop runs here.
  void run_forever();
  // Runs until the future, task or coroutine is done and returns its result (or throws its
  // exception). A coroutine is wrapped in a Task, created where this was called (the inspector's
  // "created at"). Not available where poll cannot block (a browser page): see
  // wasm/host_driver.hpp for the non-blocking alternative.
  template <class T>
  T run_until_complete(Future<T> future);
  template <class T>
  T run_until_complete(Task<T> task);
  template <class T>
  T run_until_complete(Coro<T> coro, SourceLocation where = SourceLocation::current());
  // Callbacks already scheduled still run; the loop stops after the current pass.
  void stop() noexcept;
  // Drops pending callbacks and timers, releases the executor and backend. Idempotent;
  // RuntimeError while running. Tasks still pending are reported and destroyed.
  void close();
  bool is_running() const noexcept { return running_; }
  bool is_closed() const noexcept { return closed_; }
  // Monotonic seconds (the backend's clock; virtual in the test loop).
  double time() { return backend_->now(); }

  // ---- Scheduling ----------------------------------------------------------------------------
  template <class F>
  Handle call_soon(F&& callback, SourceLocation where = SourceLocation::current());
  // Any thread. Wakes the loop if it is blocked in its backend.
  template <class F>
  Handle call_soon_threadsafe(F&& callback, SourceLocation where = SourceLocation::current());
  // Runs `callback` once loop.time() >= time() + delay (never earlier). ValueError for NaN.
  template <class F>
  TimerHandle call_later(double delay, F&& callback,
                         SourceLocation where = SourceLocation::current());
  template <class F>
  TimerHandle call_at(double when, F&& callback, SourceLocation where = SourceLocation::current());

  // ---- Futures and tasks ---------------------------------------------------------------------
  template <class T = void>
  Future<T> create_future();
  template <class T>
  Task<T> create_task(Coro<T> coro, TaskOptions options = {},
                      SourceLocation where = SourceLocation::current());
  template <class T, class Name>
    requires std::is_convertible_v<const Name&, std::string_view>
  Task<T> create_task(Coro<T> coro, const Name& name,
                      SourceLocation where = SourceLocation::current());
  void set_task_factory(TaskFactory factory) { task_factory_ = std::move(factory); }
  const TaskFactory& get_task_factory() const noexcept { return task_factory_; }
  TaskBase* current_task() const noexcept { return current_task_; }
  std::vector<Ref<TaskBase>> all_tasks() const;

  // ---- Streams and names (see server.hpp, transports.hpp; native only for now) ---------------
  // Resolves `host` (all addresses of `options.family`), connects to the first that answers
  // (staggered by happy_eyeballs_delay if set), and returns once connection_made has run.
  Coro<Connection> create_connection(ProtocolFactory factory, std::string host, std::uint16_t port,
                                     ConnectionOptions options = {});
  // `hosts` empty: all interfaces. One listening socket per resolved address.
  Coro<Ref<Server>> create_server(ProtocolFactory factory, std::vector<std::string> hosts,
                                  std::uint16_t port, ServerOptions options = {});
  Coro<Ref<Server>> create_server(ProtocolFactory factory, std::string host, std::uint16_t port,
                                  ServerOptions options = {});
  // Upgrades a connected stream transport to TLS; returns the new transport (the old one is
  // retired without connection_lost). As asyncio, `protocol` is not told: it gets the result.
  Coro<Ref<Transport>> start_tls(Ref<Transport> transport, std::shared_ptr<BaseProtocol> protocol,
                                 const TlsContext* context, StartTlsOptions options = {});
  Coro<Connection> create_unix_connection(ProtocolFactory factory, std::string path,
                                          ConnectionOptions options = {});
  Coro<Ref<Server>> create_unix_server(ProtocolFactory factory, std::string path,
                                       ServerOptions options = {});
  // Wraps a socket the caller accepted (or connected) itself; the transport owns it from now.
  Coro<Connection> connect_accepted_socket(ProtocolFactory factory, int sock);
  // A UDP (or Unix datagram) endpoint; returns once connection_made has run.
  Coro<DatagramConnection> create_datagram_endpoint(DatagramProtocolFactory factory,
                                                    DatagramEndpointOptions options = {});
  // Pipes: the fd must be a pipe, socket or character device (ValueError otherwise). A read
  // pipe's protocol sees eof_received() and then connection_lost(); write_eof() on a write pipe
  // closes it once the buffer is flushed.
  Coro<ReadPipeConnection> connect_read_pipe(ProtocolFactory factory, int fd);
  Coro<WritePipeConnection> connect_write_pipe(ProtocolFactory factory, int fd);
  // Child processes, asyncio's SubprocessTransport/SubprocessProtocol model.
  Coro<SubprocessConnection> subprocess_exec(SubprocessProtocolFactory factory, std::vector<std::string> args,
                                             SubprocessOptions options = {});
  Coro<SubprocessConnection> subprocess_shell(SubprocessProtocolFactory factory, std::string command,
                                              SubprocessOptions options = {});
  // ---- File descriptors and raw sockets (asyncio's add_reader family and sock_* calls) -------
  // `callback` runs from the loop while `fd` is readable / writable (level-triggered). A second
  // add replaces the callback. remove_* return whether a callback was registered. All four
  // raise RuntimeError for the socket of a transport that is not closing, as asyncio.
  // Each run is reported (exceptions, slow callbacks, the inspector) under the callable's name
  // and the place of the add_* call.
  template <class F>
  void add_reader(int fd, F&& callback, SourceLocation where = SourceLocation::current()) {
    ensure_fd_no_transport(fd);
    add_fd_callback(fd, 0, detail::RepeatingCallback::make(std::forward<F>(callback), where));
  }
  template <class F>
  void add_writer(int fd, F&& callback, SourceLocation where = SourceLocation::current()) {
    ensure_fd_no_transport(fd);
    add_fd_callback(fd, 1, detail::RepeatingCallback::make(std::forward<F>(callback), where));
  }
  bool remove_reader(int fd) {
    ensure_fd_no_transport(fd);
    return remove_fd_callback(fd, 0);
  }
  bool remove_writer(int fd) {
    ensure_fd_no_transport(fd);
    return remove_fd_callback(fd, 1);
  }
  // The socket must be non-blocking. Results and errors as asyncio's (std::system_error).
  Coro<std::string> sock_recv(int fd, std::size_t nbytes);
  Coro<std::size_t> sock_recv_into(int fd, std::span<char> buffer);
  Coro<std::pair<std::string, SocketAddress>> sock_recvfrom(int fd, std::size_t bufsize);
  Coro<std::pair<std::size_t, SocketAddress>> sock_recvfrom_into(int fd, std::span<char> buffer);
  Coro<void> sock_sendall(int fd, std::string_view data);  // `data` must outlive the call
  Coro<std::size_t> sock_sendto(int fd, std::string_view data, SocketAddress address);
  Coro<void> sock_connect(int fd, SocketAddress address);  // names are resolved first
  Coro<std::pair<int, SocketAddress>> sock_accept(int fd);
  // Sends `count` bytes (nullopt: to the end) of `file` from `offset`; returns the bytes sent and
  // leaves the file position after them. sock_sendfile is zero-copy (sendfile(2)) on a
  // non-blocking stream socket, falling back to read+send for files the kernel cannot send
  // (SendfileNotAvailableError when `fallback` is false). sendfile() on a transport writes
  // through the transport, honouring its flow control (asyncio's fallback path).
  Coro<std::size_t> sock_sendfile(int sock, int file, std::uint64_t offset = 0,
                                  std::optional<std::size_t> count = std::nullopt, bool fallback = true);
  Coro<std::size_t> sendfile(Ref<WriteTransport> transport, int file, std::uint64_t offset = 0,
                             std::optional<std::size_t> count = std::nullopt, bool fallback = true);

  Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port,
                                          AddrInfoOptions options = {});
  Coro<NameInfo> getnameinfo(SocketAddress address, int flags = 0);

  // ---- Signals (asyncio's Unix-only add_signal_handler) --------------------------------------
  // `callback` runs from the loop (never inside the OS signal handler) each time `sig` arrives.
  // Replaces an earlier handler for `sig`. ValueError for an invalid signal number,
  // RuntimeError for one that cannot be caught (SIGKILL, SIGSTOP).
  template <class F>
  void add_signal_handler(int sig, F&& callback, SourceLocation where = SourceLocation::current()) {
    add_signal_handler_impl(sig, detail::RepeatingCallback::make(std::forward<F>(callback), where));
  }
  // False if no handler was set for `sig`; the signal's default disposition is restored.
  bool remove_signal_handler(int sig);

  // ---- Errors ------------------------------------------------------------------------------
  void call_exception_handler(const ExceptionContext& context) noexcept;
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  const ExceptionHandler& get_exception_handler() const noexcept { return exception_handler_; }
  void default_exception_handler(const ExceptionContext& context) noexcept;

  // ---- Debug ---------------------------------------------------------------------------------
  void set_debug(bool enabled) noexcept { debug_ = enabled; }
  bool get_debug() const noexcept { return debug_; }
  double slow_callback_duration() const noexcept { return slow_callback_duration_; }
  void set_slow_callback_duration(double seconds);

  // ---- Executors -------------------------------------------------------------------------------
  // Runs `fn` on `executor` (null: the default one) and returns a Future for its result.
  template <class F>
  auto run_in_executor(std::shared_ptr<Executor> executor, F&& fn);
  void set_default_executor(std::shared_ptr<Executor> executor);
  // Waits (without blocking the loop) for the default executor's jobs and joins its threads.
  // `timeout` < 0: no limit; past it the threads are left to finish and a warning is logged.
  Future<void> shutdown_default_executor(double timeout = -1);

  // ---- Async generators (eddy/asyncgen.hpp) ----------------------------------------------------
  // Closes (aclose, concurrently) every async generator of this loop left suspended at a yield;
  // errors go to the exception handler. Generators first iterated afterwards are logged.
  Coro<void> shutdown_asyncgens();
  // The generators' first iteration registers them; finishing or destruction unregisters.
  void register_asyncgen(detail::AsyncGenPromiseBase* gen) noexcept;
  void unregister_asyncgen(detail::AsyncGenPromiseBase* gen) noexcept;
  std::size_t live_asyncgens() const noexcept { return asyncgen_count_; }

  // ---- Guest mode ------------------------------------------------------------------------------
  // Runs one pass of the loop algorithm: polls I/O for at most `max_wait` seconds (0: don't
  // wait), fires due timers, runs what was ready. For hosts that own the thread. Returns the
  // number of callbacks run.
  std::size_t run_once(double max_wait = 0);
  // Seconds until the loop has work: 0 when callbacks are ready, the time to the nearest timer
  // or to I/O the backend knows is coming, or nothing when only outside I/O or another thread
  // can bring work.
  std::optional<double> time_until_work();
  // Installs (or removes, with null) a host driver that is told when the loop has work.
  void set_host_driver(HostDriver* driver);
  // For backends whose I/O arrives from the host outside poll() (a WebSocket message in a
  // page): wakes a waiting poll and tells the host driver, if any, that a pass is due.
  void notify_io();

  // ---- Introspection -------------------------------------------------------------------------
  LoopStats stats() const noexcept;
  // The recorder while inspection is on (eddy/inspect.hpp), else null.
  inspect::Recorder* inspector() const noexcept { return inspector_; }
  const Capabilities& capabilities() const noexcept { return capabilities_; }
  Backend& backend() noexcept { return *backend_; }
  // Debug-mode check used by non-thread-safe methods (asyncio's _check_thread).
  void check_thread(const char* method) const;
  void check_closed() const;
  // What running the loop would refuse: a closed loop, this loop already running, or another
  // loop running on this thread (asyncio's _check_closed and _check_running).
  // RuntimeError if closed or a loop already runs here; NotSupportedError naming `method` where
  // this loop cannot block (a browser page).
  void check_can_run(const char* method = nullptr) const;

  // ---- Used by Eddy's own types (not part of asyncio's API) --------------------------------------
  void register_task(TaskBase* task) noexcept;
  void unregister_task(TaskBase* task) noexcept;
  void future_created() noexcept {
    ++live_futures_;
    ++futures_created_;
  }
  void transport_created(inspect::TransportProbe* probe) noexcept;
  // The socket transports' descriptors (asyncio's loop._transports): add_reader, add_writer,
  // their removal and the sock_* calls refuse a descriptor a transport that is not closing uses.
  void socket_transport_opened(int fd, const BaseTransport* transport);
  void socket_transport_released(int fd, const BaseTransport* transport) noexcept;
  void ensure_fd_no_transport(int fd) const;
  void transport_destroyed(inspect::TransportProbe* probe) noexcept;
  void server_created(Server* server);
  void server_destroyed(Server* server) noexcept;
  void add_signal_handler_impl(int sig, std::shared_ptr<detail::RepeatingCallback> callback);
  void add_fd_callback(int fd, int which, std::shared_ptr<detail::RepeatingCallback> callback);
  bool remove_fd_callback(int fd, int which);
  Coro<void> wait_fd(int fd, int which);
  // The checks every sock_* call starts with; returns the socket's kind when `need_kind`.
  SocketKind check_sock(int fd, bool need_kind = false);
  void future_destroyed() noexcept { --live_futures_; }
  void set_current_task(TaskBase* task) noexcept { current_task_ = task; }
  // A task whose coroutine raised KeyboardInterrupt: its step re-raises it (asyncio's __step
  // re-raises KeyboardInterrupt and SystemExit after setting them on the task).
  void set_interrupting(std::exception_ptr e) noexcept { interrupting_ = std::move(e); }
  bool interrupting() const noexcept { return static_cast<bool>(interrupting_); }
  std::exception_ptr take_interrupting() noexcept { return std::exchange(interrupting_, nullptr); }
  void timer_cancelled() noexcept { ++timer_cancelled_count_; }
  // For Handle, on a ticket of this loop (see detail::ticket): cancel its callback if still
  // queued; its callback's name (null when it left the queue); make it a record shared with a
  // copy of the handle, returned with the ticket holder's reference.
  void cancel_ticket(std::uint64_t seq) noexcept;
  const char* ticket_callback_name(std::uint64_t seq) noexcept;
  detail::HandleRecord* share_ticket(std::uint64_t seq);
  // Queues an already-built record, taking over its one reference (used by futures to run
  // their done callbacks). RuntimeError if the loop is closed.
  void schedule_record(detail::HandleRecord* rec);
  // For Task: queues the task's next step (asyncio's call_soon(self.__step) or __wakeup) without
  // a handle record. Adopts the reference.
  void schedule_task_step(Ref<TaskBase> task, bool wakeup);
  // Queues a tagged entry (see detail::ReadyEntry), adopting its reference. RuntimeError (and
  // the entry is released) if the loop is closed.
  void schedule_entry(detail::ReadyEntry e);
  // A pooled record with one reference and no callback yet. Where it was scheduled is kept in
  // debug mode and while the inspector is on (asyncio keeps a handle's source traceback only in
  // debug mode).
  detail::HandleRecord* new_record(SourceLocation where) {
    detail::HandleRecord* r = pool_->allocate();
    r->line = 0;
    if (EDDY_UNLIKELY(debug_ || inspector_ != nullptr)) detail::keep_where(r, where);
    r->flags = 0;
    r->shared = 0;
    r->refs = 1;
    return r;
  }
  // For run_in_executor: hands a completion from a worker thread to the loop.
  std::shared_ptr<detail::Inbox> inbox() const noexcept { return inbox_; }
  std::shared_ptr<Executor> default_executor();
  // Shuts `executor` down without blocking the loop; `joined` runs on the loop's thread once its
  // jobs are done and its threads joined.
  void retire_executor(std::shared_ptr<Executor> executor, detail::UniqueFunction joined);
  std::uint64_t add_executor_job(Ref<FutureBase> future);
  Ref<FutureBase> take_executor_job(std::uint64_t id) noexcept;

 private:
  friend class Runner;
  friend class inspect::Recorder;
  friend inspect::Recorder& inspect::enable(EventLoop&, inspect::Options);
  friend void inspect::disable(EventLoop&);
  void destroy_self() noexcept override;
  std::size_t run_pass(double max_wait);
  void run_ready(std::size_t count);
  template <class Invoke>
  void run_callback(const detail::ReadyEntry& e, Invoke&& invoke);
  bool callbacks_timed() const noexcept;  // the inspector or debug mode times each callback
  void run_watched(detail::ReadyEntry e);
  void finish_interrupted(detail::ReadyEntry e) noexcept;
  [[noreturn]] void raise_interrupting(detail::ReadyEntry e);
  void report_handler_error(const ExceptionContext& context, std::exception_ptr error) noexcept;
  static std::string describe_context(const ExceptionContext& c);
  void push_timer(detail::HandleRecord* rec);
  void fire_due_timers(double now);  // now: time() as read after this pass polled
  void purge_cancelled_timers();
  void drain_inbox();  // call when inbox_->has_work()
  double compute_timeout();
  void enter_running(const char* method);
  void leave_running() noexcept;
  void notify_host();
  // The inline entry a ticket names: still queued, or the one whose exception is being reported.
  detail::ReadyEntry* queued_ticket_entry(std::uint64_t seq) noexcept;
  const detail::ReadyEntry* reported_ticket_entry(std::uint64_t seq) const noexcept {
    return reporting_ != nullptr && seq == reporting_seq_ ? reporting_ : nullptr;
  }
  void report_slow_callback(detail::ReadyEntry e, double seconds);
  void report_callback_exception(detail::ReadyEntry e, std::exception_ptr exc);
  template <class F>
  detail::HandleRecord* make_record(F&& callback, SourceLocation where) {
    using Fn = std::decay_t<F>;
    detail::HandleRecord* r = new_record(where);
    detail::CallbackOpsFor<Fn>::construct(r->storage, std::forward<F>(callback));
    r->ops = &detail::CallbackOpsFor<Fn>::ops;
    return r;
  }
  bool timer_less(detail::TimerEntry a, detail::TimerEntry b) const noexcept {
    const double wa = pool_->at(a.index)->when, wb = pool_->at(b.index)->when;
    return wa < wb || (wa == wb && static_cast<std::int32_t>(a.seq - b.seq) < 0);
  }
  // Around every push onto the ready queue: call_soon_threadsafe callbacks posted earlier go
  // first (asyncio appends every callback to one ready queue, in call order), and a host driver
  // learns that the queue is no longer empty.
  void before_push() {
    if (EDDY_UNLIKELY(inbox_->has_work())) drain_inbox();
  }
  void after_push() {
    if (EDDY_UNLIKELY(host_driver_ != nullptr) && ready_.size() == 1 && !in_pass_) notify_host();
  }
  void schedule_ready(detail::HandleRecord* rec) {
    before_push();
    ready_.push(rec);
    EDDY_INSPECT_HOOK(*this, callback_scheduled(rec));
    after_push();
  }

  std::unique_ptr<Backend> backend_;
  detail::HandlePool* pool_;
  detail::TicketSlot ticket_slot_;
  detail::ReadyQueue ready_;
  // While an inline callback's exception is reported: its entry and sequence number, so that the
  // report's handle (a ticket equal to the caller's) still has the callback's name.
  const detail::ReadyEntry* reporting_ = nullptr;
  std::uint64_t reporting_seq_ = 0;
  detail::TimerHeap timers_;
  std::uint32_t timer_seq_ = 0;
  std::size_t timer_cancelled_count_ = 0;
  std::shared_ptr<detail::Inbox> inbox_;
  std::vector<detail::HandleRecord*> inbox_scratch_;

  bool running_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  bool debug_ = false;
  bool in_pass_ = false;
  std::thread::id thread_id_;
  double slow_callback_duration_ = 0.1;
  std::uint64_t iterations_ = 0;

  ExceptionHandler exception_handler_;
  TaskFactory task_factory_;
  TaskBase* current_task_ = nullptr;
  std::exception_ptr interrupting_;
  TaskBase* tasks_head_ = nullptr;
  detail::AsyncGenPromiseBase* asyncgens_head_ = nullptr;
  std::size_t asyncgen_count_ = 0;
  bool asyncgens_shutdown_called_ = false;
  std::size_t task_count_ = 0;
  std::size_t live_futures_ = 0;
  std::uint64_t futures_created_ = 0;
  std::size_t live_transports_ = 0;
  std::map<int, std::shared_ptr<detail::RepeatingCallback>> signal_handlers_;
  struct FdWatch {
    std::shared_ptr<detail::RepeatingCallback> callbacks[2];  // reader, writer
  };
  std::map<int, FdWatch> fd_watches_;
  std::unordered_map<int, const BaseTransport*> socket_transports_;
  void rewatch_fd(int fd, const FdWatch& w);

  std::shared_ptr<Executor> default_executor_;
  bool executor_shutdown_called_ = false;
  std::unordered_map<std::uint64_t, Ref<FutureBase>> executor_jobs_;
  std::uint64_t next_executor_job_ = 0;
  std::vector<std::shared_ptr<Executor>> retiring_executors_;  // shut down, joined when done
  std::vector<std::thread> executor_shutdown_threads_;

  HostDriver* host_driver_ = nullptr;
  Capabilities capabilities_;

  inspect::Recorder* inspector_ = nullptr;  // owned; null while inspection is off
  inspect::TransportProbe* transports_head_ = nullptr;
  std::uint64_t next_transport_id_ = 0;
  std::vector<std::pair<Server*, std::uint64_t>> servers_;
  std::uint64_t next_server_id_ = 0;
};

using LoopRef = Ref<EventLoop>;

// ---- Template definitions that need only this header --------------------------------------------

template <class F>
Handle EventLoop::call_soon(F&& callback, SourceLocation where) {
  if (EDDY_UNLIKELY(closed_)) check_closed();
  using Fn = std::decay_t<F>;
  if constexpr (detail::fits_ready_entry<Fn>) {
    // No record: the callback waits in the queue itself. Debug mode and the inspector want the
    // place it was scheduled at, which only a record keeps.
    if (EDDY_LIKELY(!debug_ && inspector_ == nullptr &&
                    ticket_slot_.index != detail::ticket::kNoSlot)) {
      before_push();
      const std::uint64_t seq =
          ready_.push_inline(detail::ReadyEntry::inline_callback<Fn>(std::forward<F>(callback)));
      after_push();
      return Handle::from_ticket(detail::ticket::make(ticket_slot_.index, seq));
    }
  }
  if (EDDY_UNLIKELY(debug_)) check_thread("call_soon");
  detail::HandleRecord* r = make_record(std::forward<F>(callback), where);
  r->refs = 2;  // the ready queue's reference and the returned Handle's
  schedule_ready(r);
  return Handle::adopt(r);
}

template <class F>
Handle EventLoop::call_soon_threadsafe(F&& callback, SourceLocation where) {
  if (EDDY_UNLIKELY(closed_)) check_closed();
  using Fn = std::decay_t<F>;
  detail::HandleRecord* r = detail::new_shared_record(where.file, where.line);
  r->refs = 2;
  detail::CallbackOpsFor<Fn>::construct(r->storage, std::forward<F>(callback));
  r->ops = &detail::CallbackOpsFor<Fn>::ops;
  if (running_loop() == this) {
    // From the loop's own thread, as call_soon: queued in call order, and no wake-up to send.
    schedule_ready(r);
  } else if (!inbox_->post(r)) {
    detail::release_handle(r);
    check_closed();
  }
  return Handle::adopt(r);
}

template <class F>
TimerHandle EventLoop::call_at(double when, F&& callback, SourceLocation where) {
  if (EDDY_UNLIKELY(std::isnan(when))) throw ValueError("call_at: when must not be NaN");
  if (EDDY_UNLIKELY(closed_)) check_closed();
  if (EDDY_UNLIKELY(debug_)) check_thread("call_at");
  detail::HandleRecord* r = make_record(std::forward<F>(callback), where);
  r->refs = 2;  // the timer heap's reference and the returned handle's
  r->when = when;
  r->flags = detail::kHandleTimer | detail::kHandleScheduled;
  push_timer(r);
  return TimerHandle(Handle::adopt(r));
}

template <class F>
TimerHandle EventLoop::call_later(double delay, F&& callback, SourceLocation where) {
  if (EDDY_UNLIKELY(std::isnan(delay))) throw ValueError("call_later: delay must not be NaN");
  return call_at(time() + delay, std::forward<F>(callback), where);
}

}  // namespace eddy
