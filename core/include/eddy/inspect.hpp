// Introspection for the inspector: the Recorder a loop carries while inspection is switched on,
// the events its hooks record, and the Snapshots it publishes for other threads. No GUI here:
// the inspector (inspector/) and the agent (eddy::inspector::serve) read Snapshots from a Feed.
//
//   auto& rec = eddy::inspect::enable(*loop);          // runtime switch (EDDY_INSPECT builds)
//   auto feed = rec.feed();                            // any thread: feed->latest()
//
// Built with -DEDDY_INSPECTOR=OFF the hooks compile to nothing and enable() throws
// NotSupportedError.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eddy/config.hpp"

#ifndef EDDY_INSPECT
#define EDDY_INSPECT 0
#endif

namespace eddy {

class EventLoop;
class TaskBase;
class BaseTransport;
struct ExceptionContext;
namespace detail {
struct HandleRecord;
class ReadyEntry;
}

namespace inspect {

// The one list of live-handle kinds, shared by the loop's counters, the wire protocol and the
// inspector's Overview: X(identifier, label).
#define EDDY_HANDLE_KINDS(X)                   \
  X(callback, "ready callbacks")               \
  X(timer, "timers")                           \
  X(task, "tasks")                             \
  X(future, "futures")                         \
  X(stream_transport, "stream transports")     \
  X(datagram_transport, "datagram transports") \
  X(subprocess_transport, "subprocesses")      \
  X(server, "servers")                         \
  X(fd_watch, "fd watchers")                   \
  X(signal_handler, "signal handlers")         \
  X(executor_job, "executor jobs")             \
  X(async_generator, "async generators")

enum class HandleKind : std::uint8_t {
#define EDDY_KIND_ENUM(id, label) id,
  EDDY_HANDLE_KINDS(EDDY_KIND_ENUM)
#undef EDDY_KIND_ENUM
};
constexpr std::size_t kHandleKindCount = 0
#define EDDY_KIND_COUNT(id, label) +1
    EDDY_HANDLE_KINDS(EDDY_KIND_COUNT)
#undef EDDY_KIND_COUNT
    ;
const char* kind_name(HandleKind k) noexcept;   // "callback"
const char* kind_label(HandleKind k) noexcept;  // "ready callbacks"

// What the hooks record. `id` is a handle record's address (scheduled/run/timer events), a task
// id or a transport id; `value` is a duration in seconds, a size in bytes or a deadline.
#define EDDY_EVENT_KINDS(X)                                          \
  X(callback_scheduled) /* id: handle */                             \
  X(callback_run)       /* id: handle, value: duration */            \
  X(timer_armed)        /* id: handle, value: when */                \
  X(timer_cancelled)    /* id: handle */                             \
  X(timer_fired)        /* id: handle, value: lateness */            \
  X(task_created)       /* id: task */                               \
  X(task_step)          /* id: task, value: duration */              \
  X(task_done)          /* id: task */                               \
  X(transport_created)  /* id: transport */                          \
  X(transport_closed)   /* id: transport */                          \
  X(write_buffer)       /* id: transport, value: bytes buffered */   \
  X(pause_writing)      /* id: transport, value: bytes buffered */   \
  X(resume_writing)     /* id: transport, value: bytes buffered */   \
  X(pause_reading)      /* id: transport */                          \
  X(resume_reading)     /* id: transport */                          \
  X(bytes_in)           /* id: transport, value: bytes */            \
  X(exception)          /* value: index into Snapshot::exceptions */ \
  X(slow_callback)      /* id: handle, value: duration */

enum class EventKind : std::uint8_t {
#define EDDY_EVENT_ENUM(id) id,
  EDDY_EVENT_KINDS(EDDY_EVENT_ENUM)
#undef EDDY_EVENT_ENUM
};
const char* event_name(EventKind k) noexcept;
bool event_kind_from_name(const std::string& name, EventKind& out) noexcept;

// 40 bytes. `name` and `file` point at static strings (callable type names, __FILE__).
struct Event {
  double time;
  std::uint64_t id;
  double value;
  const char* name;
  const char* file;
  std::uint32_t line;
  EventKind kind;
};

// One pass of the loop: when it started and how long each phase took.
struct PassSample {
  double start;
  float poll, timers, ready;
  std::uint32_t ready_depth;  // callbacks run in this pass
};

struct HandleInfo {
  std::string name, file;
  std::uint32_t line = 0;
  bool cancelled = false;
  double when = 0;  // timers only
};

// Text that is usually static on the loop's side (a source file, a coroutine's name, a fixed
// description such as "<Future pending>"): then it is kept and copied as a pointer, as the loop
// builds every task's row ten times a second. Decoded snapshots own theirs.
class Text {
 public:
  Text() = default;
  Text(std::string text) : owned_(std::move(text)) {}
  Text(const char* text) : owned_(text ? text : "") {}
  // `text` lives as long as the program (a literal, __FILE__, a function's name).
  static Text of_static(const char* text) noexcept {
    Text t;
    t.static_ = text;
    return t;
  }
  std::string_view view() const noexcept { return static_ ? std::string_view(static_) : owned_; }
  const char* c_str() const noexcept { return static_ ? static_ : owned_.c_str(); }
  bool empty() const noexcept { return static_ ? *static_ == 0 : owned_.empty(); }
  std::string str() const { return std::string(view()); }
  std::size_t find(std::string_view part) const noexcept { return view().find(part); }
  operator std::string_view() const noexcept { return view(); }
  friend bool operator==(const Text& a, const Text& b) noexcept { return a.view() == b.view(); }
  friend bool operator==(const Text& a, std::string_view b) noexcept { return a.view() == b; }
  friend bool operator==(const Text& a, const char* b) noexcept { return a.view() == b; }
  friend bool operator==(const Text& a, const std::string& b) noexcept { return a.view() == b; }

 private:
  const char* static_ = nullptr;
  std::string owned_;
};

struct AwaitInfo {
  Text function, awaiting, file;
  std::uint32_t line = 0;
  bool operator==(const AwaitInfo&) const = default;
};

struct TaskInfo {
  std::uint64_t id = 0;
  std::string name, state;  // state: pending, running, done, cancelled, failed
  double created = 0;       // loop time (0: created before inspection was on)
  std::uint64_t runs = 0;
  double busy = 0;  // seconds spent in its steps since inspection was on
  Text file;
  std::uint32_t line = 0;
  std::vector<AwaitInfo> await_chain;  // outermost first
  bool operator==(const TaskInfo&) const = default;
};

struct TransportInfo {
  std::uint64_t id = 0, server = 0;
  std::string kind, peer, state;  // state: open, closing, closed
  std::uint64_t bytes_in = 0, bytes_out = 0, buffer = 0, high = 0, low = 0;
  bool writing_paused = false, reading_paused = false;
  bool operator==(const TransportInfo&) const = default;
};

struct ServerInfo {
  std::uint64_t id = 0;
  std::string address;
  bool serving = false;
  std::uint64_t connections = 0;
  bool operator==(const ServerInfo&) const = default;
};

struct ExceptionInfo {
  double time = 0;
  std::string message, exception, file;
  std::uint32_t line = 0;
  double duration = 0;  // slow callbacks: how long it ran
  bool slow = false;
};

struct Metrics {
  std::uint64_t iterations = 0;
  double iterations_per_s = 0;
  double lag_max = 0, lag_mean = 0;              // timers' lateness in this window (s)
  double poll_s = 0, timers_s = 0, ready_s = 0;  // mean per iteration in this window (s)
  std::uint64_t ready_depth = 0, ready_depth_max = 0, callbacks = 0;
  std::uint64_t timers = 0, cancelled_timers = 0;
  std::array<std::uint64_t, kHandleKindCount> live{};
  std::uint64_t dropped_events = 0;  // since inspection was switched on
  std::uint64_t event_stride = 1;    // high-rate events were sampled 1 in this many
};

// Everything one publication says: the state now, and what happened since the previous one.
struct Snapshot {
  std::uint64_t seq = 0;
  double time = 0;      // loop.time() when taken
  double interval = 0;  // seconds covered by events/passes
  Metrics metrics;
  std::uint64_t ready_total = 0, timers_total = 0;  // ready/timers may be truncated
  std::vector<HandleInfo> ready;                    // in run order
  std::vector<HandleInfo> timers;                   // by deadline
  std::vector<TaskInfo> tasks;
  std::vector<TransportInfo> transports;
  std::vector<ServerInfo> servers;
  std::vector<ExceptionInfo> exceptions;  // new since the previous snapshot
  std::vector<Event> events;              // since the previous snapshot, oldest first
  std::vector<PassSample> passes;         // since the previous snapshot (bounded)
};

struct Options {
  double interval = 0.1;                 // seconds between publications
  std::size_t event_capacity = 1 << 16;  // events kept per interval; more are dropped and counted
  // High-rate events (callbacks scheduled/run, timers, task steps, write-buffer sizes) are
  // sampled so that about this many are kept per interval; pause/resume, transports opening and
  // closing, exceptions and slow callbacks are always kept. Snapshots are never sampled.
  std::size_t event_budget = 1000;
  std::size_t pass_capacity = 4096;
  std::size_t pass_budget = 200;  // pass samples kept per interval (1 in N passes)
  std::size_t max_ready = 1000, max_timers = 2000, max_tasks = 20000;
  std::size_t history = 64;  // snapshots a Feed keeps for readers that fall behind
};

// The cross-thread side: the loop thread publishes, any thread reads. Outlives the loop.
class Feed {
 public:
  std::shared_ptr<const Snapshot> latest() const;
  // Snapshots with seq > `after`, oldest first (as many as the history still holds).
  std::vector<std::shared_ptr<const Snapshot>> since(std::uint64_t after) const;
  // Asks the loop to publish soon even when idle (any thread; no-op once the loop is closed).
  void request() const;
  bool closed() const;
  bool take_request() noexcept { return requested_.exchange(false, std::memory_order_relaxed); }

  // Loop side.
  bool try_publish(std::shared_ptr<const Snapshot> s, std::size_t history);
  void set_waker(std::function<void()> waker);
  void close();

 private:
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<const Snapshot>> history_;
  std::function<void()> waker_;
  mutable std::atomic<bool> requested_{false};
  bool closed_ = false;
};

// The loop's recorder. All hooks run on the loop thread.
class Recorder {
 public:
  Recorder(EventLoop& loop, Options options);
  ~Recorder();
  const Options& options() const noexcept { return options_; }
  std::shared_ptr<Feed> feed() const noexcept { return feed_; }
  // Builds a snapshot now (loop thread) without publishing it or taking its events.
  Snapshot capture();
  std::uint64_t dropped_events() const noexcept { return dropped_; }

  // ---- Hooks (called through EDDY_INSPECT_HOOK from the choke points) ----
  void callback_scheduled(detail::HandleRecord* r);
  bool entry_scheduled(detail::ReadyEntry e);  // a tagged entry; true: sampled, to be traced
  void callback_run(detail::ReadyEntry e, const char* name, double start, double duration);
  void timer_armed(const detail::HandleRecord* r);
  void timer_cancelled(const detail::HandleRecord* r);
  void timer_fired(detail::HandleRecord* r, double now);
  void task_created(TaskBase* t);
  void task_stepping(TaskBase* t);  // the running callback is this task's step
  // An eager task's first step runs inside another callback: that callback stays its own.
  TaskBase* take_stepping() noexcept { return std::exchange(stepped_, nullptr); }
  void restore_stepping(TaskBase* t) noexcept;
  void task_done(TaskBase* t);
  void transport_event(EventKind kind, std::uint64_t transport, double value = 0);
  void exception(const ExceptionContext& context);
  void slow_callback(detail::ReadyEntry e, const char* name, double duration);
  void pass_done(double start, double polled, double timers_done, double end, std::size_t ran);
  double clock();  // reads the loop's clock
  bool ticks_calibrated() const noexcept { return seconds_per_tick_ > 0; }
  // The loop's clock for timing a callback: read through the backend's tick counter once its
  // rate is calibrated (a few nanoseconds off loop time, never backwards), else as clock().
  double callback_clock() {
    if (seconds_per_tick_ > 0) return tick_clock();
    return clock();
  }
  double last_clock() const noexcept { return last_clock_; }

 private:
  // Sampling of high-rate events: true for 1 in stride_.
  bool sampled() noexcept {
    if (++tick_ < stride_) return false;
    tick_ = 0;
    return true;
  }
  void record(EventKind kind, std::uint64_t id, double value, const char* name = nullptr,
              const char* file = nullptr, std::uint32_t line = 0);
  void publish(double now);
  // Measures the tick counter's rate against loop time (at each publication) and re-anchors it.
  void calibrate_ticks();
  double tick_clock() noexcept;
  // Where record() next doubles the stride: two budgets past the events kept so far.
  std::size_t next_burst_limit() const noexcept {
    return std::min(events_.size() + 2 * std::max<std::size_t>(options_.event_budget, 1),
                    options_.event_capacity);
  }
  void fill_state(Snapshot& s);

  EventLoop& loop_;
  Options options_;
  std::shared_ptr<Feed> feed_;
  std::vector<Event> events_;
  std::vector<PassSample> passes_;
  std::vector<ExceptionInfo> exceptions_;
  std::uint64_t stride_ = 1, tick_ = 0, pass_stride_ = 1, pass_tick_ = 0;
  std::size_t burst_limit_ = 0;
  TaskBase* stepped_ = nullptr;  // the task whose step the running callback is (a reference held)
  std::uint64_t dropped_ = 0, seq_ = 0, window_passes_ = 0, window_callbacks_ = 0,
                window_depth_max_ = 0, window_lag_count_ = 0;
  double last_clock_ = 0;  // the latest clock read: events inside a pass are stamped with it
  // Loop time from ticks: anchor_time_ + (ticks - anchor_ticks_) * seconds_per_tick_, the rate
  // measured since the first calibration point (0 until it spans 10 ms, or without ticks).
  std::uint64_t first_ticks_ = 0, anchor_ticks_ = 0;
  double first_time_ = 0, anchor_time_ = 0, seconds_per_tick_ = 0;
  double window_start_ = 0, next_publish_ = 0, window_poll_ = 0, window_timers_ = 0,
         window_ready_ = 0, window_lag_sum_ = 0, window_lag_max_ = 0;
};

// Every transport links one of these into its loop's list (always, inspection on or off), so a
// snapshot can list live transports; `server` is the Server that accepted it, if any.
class TransportProbe {
 public:
  virtual void describe(TransportInfo& out, const void*& server) const = 0;
  // The loop is closing with this transport still open: no protocol callback can run any more,
  // so release the socket, pipe or child now (asyncio leaves that to the garbage collector).
  // Called once; calls on the transport afterwards find it closing and do nothing.
  virtual void loop_closed() noexcept = 0;
  bool released_at_close = false;  // set by the loop before calling loop_closed()
  std::uint64_t inspect_id = 0;  // assigned by the loop
  std::uint64_t bytes_in = 0, bytes_out = 0;
  TransportProbe* probe_prev = nullptr;
  TransportProbe* probe_next = nullptr;

 protected:
  ~TransportProbe() = default;
};

// Switches inspection on for `loop` (loop thread; idempotent: returns the existing recorder).
Recorder& enable(EventLoop& loop, Options options = {});
void disable(EventLoop& loop);
// Null when inspection is off.
Recorder* recorder(EventLoop& loop) noexcept;
constexpr bool compiled_in() noexcept {
  return EDDY_INSPECT != 0;
}

}  // namespace inspect
}  // namespace eddy

// The hooks' one spelling: nothing at all when compiled out, one predictable branch when off.
#if EDDY_INSPECT
#define EDDY_INSPECT_HOOK(loop, call)                                           \
  do {                                                                          \
    if (EDDY_UNLIKELY((loop).inspector() != nullptr)) (loop).inspector()->call; \
  } while (0)
#else
#define EDDY_INSPECT_HOOK(loop, call) \
  do {                                \
  } while (0)
#endif
