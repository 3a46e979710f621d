// Coroutines and Tasks. Coro<T> is a coroutine object (asyncio's "coroutine"): lazy, run either by
// a Task (create_task) or inline by `co_await` from another coroutine. TaskBase is asyncio.Task: a
// Future that drives a coroutine; it is resumed only from loop callbacks (its step), and a
// cancellation is delivered at the await point where the coroutine is suspended, as
// CancelledError. Each await records what it waits for and where, so a task's await chain can be
// read at any time (await_chain()).
//
//   eddy::Coro<int> answer() { co_await eddy::sleep(0.1); co_return 42; }
//   eddy::Coro<void> main_() {
//     auto t = eddy::get_running_loop().create_task(answer(), {.name = "answer"});
//     int v = co_await t;            // awaits the Task (a Future)
//     int w = co_await answer();     // runs the coroutine inline, in this task
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eddy/future.hpp"

namespace eddy {

class TaskBase;
class PromiseBase;

// What a suspended coroutine frame is waiting for.
struct AwaitRecord {
  enum class Kind : std::uint8_t { none, future, task, coroutine, yield };
  AwaitRecord() = default;
  AwaitRecord(Kind kind, const void* target, SourceLocation where) noexcept
      : target(target), where(where), kind(kind) {}
  const void* target = nullptr;  // FutureBase*, TaskBase* or PromiseBase*
  // Kept after the await: its `function` names the coroutine. (no_unique_address lets `kind`, and
  // the promise's flags after this record, sit in its padding: every coroutine frame has one.)
  [[no_unique_address]] SourceLocation where;
  Kind kind = Kind::none;
  void clear() noexcept {
    kind = Kind::none;
    target = nullptr;
  }
};

// One line of a task's await chain, outermost first.
struct AwaitFrame {
  std::string function;  // the coroutine that is awaiting
  SourceLocation where;  // the co_await expression
  std::string awaiting;  // what it awaits: a coroutine's name, "<Future pending>", "Task 'name'"...
};

namespace detail {
template <class T>
struct IsCoro : std::false_type {};
template <class T>
struct IsCoro<Coro<T>> : std::true_type {};
template <class A>
concept FutureLike = requires(A& a) { a.state(); typename std::decay_t<A>::value_type; } &&
                     std::is_base_of_v<Future<typename std::decay_t<A>::value_type>, std::decay_t<A>>;

// The awaitable for sleep(0) (asyncio's bare `yield`): gives up one loop pass.
struct YieldOnce {};

// An await in one of Eddy's own coroutines, shown in await chains under the public call it
// implements ("eddy::Queue::get") instead of the helper's name: `co_await
// detail::awaiting_as("eddy::Queue::get", next_get_turn())`.
template <class A>
struct NamedAwait {
  A&& awaitable;
  const char* function;
};
template <class A>
struct IsNamedAwait : std::false_type {};
template <class A>
struct IsNamedAwait<NamedAwait<A>> : std::true_type {};
template <class A>
NamedAwait<A> awaiting_as(const char* function, A&& awaitable) noexcept {
  return NamedAwait<A>{std::forward<A>(awaitable), function};
}
}  // namespace detail

// Per-frame state shared by every Coro<T> promise.
class PromiseBase : public detail::SlabAllocated {
 public:
  TaskBase* task = nullptr;  // the task running this frame
  // The frame awaiting this one inline, resumed when this one finishes (null for a task's root).
  coro::coroutine_handle<> parent_handle;
  detail::ExceptionSlot exception;
  [[no_unique_address]] AwaitRecord awaiting;
  // (One byte for both: with `awaiting.kind` they leave two bytes of padding, where a
  // Coro<void>'s result flag goes, keeping its promise at 56 bytes.)
  bool inline_start : 1 = false;  // true while the parent's co_await is starting us
  bool consumed : 1 = false;      // already awaited or handed to a task

  // The coroutine function's name, known from its first co_await ("" before).
  const char* function() const noexcept { return awaiting.where.function; }
  void learn_function(const SourceLocation& where) noexcept {
    if (!*awaiting.where.function) awaiting.where.function = where.function;
  }

  void unhandled_exception() noexcept { exception = std::current_exception(); }

  template <class A>
  auto await_transform(A&& awaitable, SourceLocation where = SourceLocation::current());

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    void await_suspend(coro::coroutine_handle<P> h) noexcept {
      finish(h.promise());
    }
    void await_resume() noexcept {}
    static void finish(PromiseBase& p) noexcept;
  };
};

namespace detail {
// Owns a coroutine frame (destroyed with it) and knows its promise: what a task keeps of the
// CoroutineFrame it was made from.
class OwnedCoroutine {
 public:
  OwnedCoroutine() = default;
  OwnedCoroutine(coro::coroutine_handle<> h, PromiseBase* p) noexcept : handle_(h), promise_(p) {}
  OwnedCoroutine(OwnedCoroutine&& o) noexcept
      : handle_(std::exchange(o.handle_, {})), promise_(o.promise_) {}
  OwnedCoroutine& operator=(OwnedCoroutine&& o) noexcept {
    std::swap(handle_, o.handle_);
    promise_ = o.promise_;
    return *this;
  }
  ~OwnedCoroutine() {
    if (handle_) handle_.destroy();
  }
  coro::coroutine_handle<> handle() const noexcept { return handle_; }
  PromiseBase* promise() const noexcept { return promise_; }
  explicit operator bool() const noexcept { return bool(handle_); }
  void destroy() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }
  // Gives up ownership: the caller destroys the frame.
  coro::coroutine_handle<> release() noexcept {
    promise_ = nullptr;
    return std::exchange(handle_, {});
  }

 private:
  coro::coroutine_handle<> handle_;
  PromiseBase* promise_ = nullptr;
};
}  // namespace detail

// A root coroutine frame handed to a task factory, without its result type.
class CoroutineFrame {
 public:
  CoroutineFrame() = default;
  CoroutineFrame(coro::coroutine_handle<> h, PromiseBase* p, void* slot,
                 bool returns_value = true) noexcept
      : coroutine_(h, p), slot_(slot), returns_value_(returns_value) {}
  coro::coroutine_handle<> handle() const noexcept { return coroutine_.handle(); }
  PromiseBase* promise() const noexcept { return coroutine_.promise(); }
  void* slot() const noexcept { return slot_; }
  // False for a Coro<void>: nothing in the frame is needed once the coroutine has returned.
  bool returns_value() const noexcept { return returns_value_; }
  explicit operator bool() const noexcept { return bool(coroutine_); }
  void destroy() noexcept { coroutine_.destroy(); }
  // Hands the frame over (its result slot stays readable through slot()).
  detail::OwnedCoroutine take() noexcept { return std::move(coroutine_); }

 private:
  detail::OwnedCoroutine coroutine_;
  void* slot_ = nullptr;
  bool returns_value_ = true;
};

namespace detail {
template <class T>
struct CoroAwaiter;

// A shared_ptr<void> (owning, or an aliasing pointer with no owner) whose copy and release are
// out of line: it sits in every Coro, which is moved and destroyed inline at each co_await, and
// most Coros have no owner to release.
class KeepAlive {
 public:
  KeepAlive() noexcept : ptr_() {}
  explicit KeepAlive(std::shared_ptr<void> ptr) noexcept : ptr_(std::move(ptr)) {}
  KeepAlive(KeepAlive&& o) noexcept : ptr_(std::move(o.ptr_)) {}
  KeepAlive& operator=(KeepAlive&& o) noexcept {
    if (this != &o) take(o);
    return *this;
  }
  ~KeepAlive() {
    if (owns()) release();
  }
  void* get() const noexcept { return ptr_.get(); }
  // True if it holds a reference (an aliasing pointer with no owner holds none).
  bool owns() const noexcept { return ptr_.use_count() != 0; }
  // Moves the pointer out (for a coroutine that keeps it in its frame).
  std::shared_ptr<void> release_shared() noexcept;

 private:
  void take(KeepAlive& o) noexcept;
  void release() noexcept;
  union {
    std::shared_ptr<void> ptr_;  // destroyed by release() once it is set
  };
};

// The object and argument of a call that can often finish without a coroutine frame. `self`
// keeps the object alive while the call is pending (an aliasing pointer with no owner when the
// object is not shared-owned).
struct QuickCall {
  KeepAlive self;
  std::int64_t arg = 0;
  // For objects the caller owns (locks, queues): kept alive by nothing, as a coroutine's `this`.
  static QuickCall unowned(void* object, std::int64_t arg = 0) {
    return QuickCall{KeepAlive(std::shared_ptr<void>(std::shared_ptr<void>(), object)), arg};
  }
  template <class Object>
  Object& object() const noexcept {
    return *static_cast<Object*>(self.get());
  }
};
// Ends what a Coro holds (its frame, a quick call's object and wait), out of line: an optimiser
// that sees which coroutine a Coro holds would otherwise inline its whole cleanup wherever a
// Coro dies.
EDDY_NOINLINE void release_coro(coro::coroutine_handle<> frame, QuickCall& call,
                                FutureBase* waiting) noexcept;

enum class QuickStart : std::uint8_t { ready, wait, frame };

// How such a call runs when it is awaited: `start` checks at the co_await whether it can finish
// at once (ready: `finish` makes the result), has to wait for one future first (wait: it made
// `waiting`), or needs its full coroutine (frame: nothing was done). After a wait,
// `stop_waiting` runs whatever way it ended (`failed`: the future failed or was cancelled, or
// the task was cancelled meanwhile; that error is then raised), then `finish` if it did not
// fail. `start` and `finish` may throw the call's errors. `coroutine` is the whole call as a
// coroutine: for create_task and the frame case.
template <class T>
struct QuickOps {
  QuickStart (*start)(QuickCall& call, Ref<FutureBase>& waiting);
  void (*stop_waiting)(QuickCall& call, FutureBase& waited, bool failed) noexcept;
  T (*finish)(QuickCall& call);
  Coro<T> (*coroutine)(QuickCall&& call);
};
// `stop_waiting` for calls whose start never answers `wait`.
inline void never_waits(QuickCall&, FutureBase&, bool) noexcept {}
}  // namespace detail

// A coroutine returning T. Move-only; awaiting it twice is a RuntimeError. Some library calls
// (StreamReader::read, StreamWriter::drain, ...) return a Coro that makes its frame only when it
// is needed: awaited inline they usually finish or wait in the awaiting coroutine's frame; given
// to a task they run as an ordinary coroutine. Either way the call's body runs when it is awaited.
template <class T>
class [[nodiscard]] Coro {
 public:
  using value_type = T;
  struct promise_type;
  using handle_type = coro::coroutine_handle<promise_type>;

  struct ValueHolder {
    detail::Slot<T> value;
  };
  struct ReturnValue : ValueHolder {
    template <class U = T>
    void return_value(U&& v) {
      this->value.emplace(std::forward<U>(v));
    }
  };
  struct ReturnVoid : ValueHolder {
    void return_void() { this->value.emplace(); }
  };
  struct promise_type : PromiseBase, std::conditional_t<std::is_void_v<T>, ReturnVoid, ReturnValue> {
    Coro get_return_object() noexcept { return Coro(handle_type::from_promise(*this)); }
    coro::suspend_always initial_suspend() noexcept { return {}; }
    FinalAwaiter final_suspend() noexcept { return {}; }
  };

  // (Everything but the frame handle and the ops pointer is released out of line, in
  // detail::release_coro: a Coro is moved and destroyed inline at every co_await.)
  Coro() noexcept : call_() {}
  Coro(Coro&& o) noexcept
      : h_(std::exchange(o.h_, {})),
        quick_(std::exchange(o.quick_, nullptr)),
        waiting_(std::exchange(o.waiting_, nullptr)),
        call_(std::move(o.call_)) {}
  Coro& operator=(Coro&& o) noexcept {
    if (this != &o) {
      release();
      h_ = std::exchange(o.h_, {});
      quick_ = std::exchange(o.quick_, nullptr);
      waiting_ = std::exchange(o.waiting_, nullptr);
      call_ = std::move(o.call_);
    }
    return *this;
  }
  ~Coro() { release(); }
  // A call that runs `ops` when awaited and makes its coroutine only if it must (QuickOps).
  static Coro quick(const detail::QuickOps<T>& ops, detail::QuickCall call) noexcept {
    return Coro(&ops, std::move(call));
  }

  explicit operator bool() const noexcept { return h_ || quick_; }
  // The frame (null for a quick call not yet made into a coroutine).
  handle_type handle() const noexcept { return h_; }
  // Gives the frame to a task (create_task); a quick call becomes its coroutine first.
  CoroutineFrame release_frame();

 private:
  friend struct detail::CoroAwaiter<T>;
  friend class PromiseBase;
  explicit Coro(handle_type h) noexcept : h_(h), call_() {}
  Coro(const detail::QuickOps<T>* ops, detail::QuickCall&& call) noexcept
      : quick_(ops), call_(std::move(call)) {}
  // A quick call's coroutine, made in place.
  void make_frame() {
    Coro made = quick_->coroutine(std::move(call_));
    h_ = std::exchange(made.h_, {});
    quick_ = nullptr;
  }
  void release() noexcept {
    if (h_ || waiting_ || call_.self.owns()) {
      detail::release_coro(std::exchange(h_, {}), call_, std::exchange(waiting_, nullptr));
    }
  }
  handle_type h_;
  const detail::QuickOps<T>* quick_ = nullptr;
  FutureBase* waiting_ = nullptr;  // a quick call's one wait (a reference held)
  union {
    detail::QuickCall call_;  // ended by release_coro, not by its destructor
  };
};

// asyncio.Task.
class TaskBase : public FutureBase {
 public:
  TaskBase(EventLoop& loop, CoroutineFrame frame, const TaskOptions& options);
  ~TaskBase() override;

  // The default task factory: a new Task, scheduled (or started eagerly).
  static Ref<TaskBase> create(EventLoop& loop, CoroutineFrame&& frame, const TaskOptions& options);

  bool cancel(std::string message = {}) override;
  int cancelling() const noexcept { return num_cancels_requested_; }
  int uncancel() noexcept;
  // The default name "Task-<n>" is formatted on first use, not at creation. As in asyncio, n
  // counts the tasks created without a name, process-wide (a named task takes no number).
  const std::string& get_name() const {
    if (EDDY_UNLIKELY(!name_set_)) {
      rare().name = "Task-" + std::to_string(name_number_);
      name_set_ = true;
    }
    return rare_fields()->name;
  }
  void set_name(std::string name) {
    rare().name = std::move(name);
    name_set_ = true;
  }
  std::uint64_t id() const noexcept { return id_; }
  // Where create_task was called (its file and line, clamped to 65535; the function is not kept).
  SourceLocation created_at() const noexcept { return {created_file_, "", created_line_}; }
  // Whether being destroyed (or dropped by close()) while pending is reported as "Task was
  // destroyed but it is pending!": not for the task run_until_complete made for a coroutine,
  // which told its caller already (asyncio's _log_destroy_pending).
  bool log_destroy_pending() const noexcept { return log_destroy_pending_; }
  void set_log_destroy_pending(bool on) noexcept { log_destroy_pending_ = on; }
  // How many steps it has run (saturating at 2^32 - 1).
  std::uint64_t run_count() const noexcept { return run_count_; }
  // For the inspector: seconds spent in steps while inspection was on, and the loop time at
  // creation (0 when inspection was off then). Kept out of line, made when inspection first
  // records either.
  double busy_time() const noexcept { return stats_ ? stats_->busy : 0.0; }
  double created_time() const noexcept { return stats_ ? stats_->created : 0.0; }
  void set_created_time(double t) { stats().created = t; }
  void add_busy_time(double seconds) { stats().busy += seconds; }
  // The chain of awaits this task is suspended in, outermost first.
  std::vector<AwaitFrame> await_chain() const;
  // The same chain without building it: calls visit(function, awaiting, fixed, scratch) for each
  // frame, outermost first, with the frame's coroutine name and AwaitRecord. What it awaits is
  // `fixed`, a static text, or, when that is null, described on the fly in `scratch`.
  template <class Visit>
  void for_each_await(Visit&& visit) const {
    std::string scratch;
    for (const PromiseBase* p = frame_ ? promise() : nullptr; p && !done();
         p = awaited_coroutine(*p)) {
      const char* fixed = describe_await(*p, scratch);
      const SourceLocation* call = waiting_call(*p);
      if (!call) {
        visit(p->function(), p->awaiting, fixed, scratch);
        continue;
      }
      visit(p->function(), p->awaiting, call->function, scratch);
      const AwaitRecord in_call(AwaitRecord::Kind::future, p->awaiting.target, *call);
      visit(call->function, in_call, fixed, scratch);
    }
  }
  std::string describe() const override;

  // ---- Used by the coroutine machinery ----
  void start(bool eager);
  void step();
  void wait_on(FutureBase* future, coro::coroutine_handle<> resume_at);
  void yield_once(coro::coroutine_handle<> resume_at);
  void finish_wait() noexcept { fut_waiter_.reset(); }
  // Throws CancelledError if a cancellation is pending (asyncio's _must_cancel). `awaited` is the
  // future the task woke from, if any: as asyncio's wake-up, its outcome is read first (so its
  // exception counts as retrieved), and a CancelledError it holds is the one raised.
  void deliver_pending_cancel(FutureBase* awaited = nullptr) {
    if (EDDY_UNLIKELY(must_cancel_)) throw_pending_cancel(awaited);
  }
  void on_coroutine_done(PromiseBase& root) noexcept;
  // Destroys the coroutine of a task that can never run again (its loop closed).
  void abandon() noexcept;

  TaskBase* next_task = nullptr;  // the loop's intrusive list of tasks
  TaskBase* prev_task = nullptr;

 protected:
  void destroy_self() noexcept override;

 private:
  void schedule_step();
  [[noreturn]] void throw_pending_cancel(FutureBase* awaited);
  const char* describe_await(const PromiseBase& p, std::string& scratch) const;
  static const PromiseBase* awaited_coroutine(const PromiseBase& p) noexcept;
  static const SourceLocation* waiting_call(const PromiseBase& p) noexcept;
  const std::string& pending_cancel_message() const noexcept {
    return rare_fields() ? rare_fields()->pending_cancel_message : detail::kNoString;
  }
  // The root frame's promise. Compilers put a frame's promise right after its two function
  // pointers, at the promise's alignment, so it is found from the frame's address; a frame whose
  // promise is aligned otherwise (a result type over-aligned past PromiseBase's alignment) keeps
  // its promise's address in the rare fields, as the constructor found.
  PromiseBase* promise() const noexcept {
    if (EDDY_UNLIKELY(promise_in_rare_)) return rare_fields()->promise;
    return &coro::coroutine_handle<PromiseBase>::from_address(frame_.address()).promise();
  }
  struct InspectStats : detail::SlabAllocated {
    double created = 0;
    double busy = 0;
  };
  InspectStats& stats() {
    if (!stats_) stats_.reset(new InspectStats);
    return *stats_;
  }

  // 176 bytes on 64-bit targets (a task and its coroutine are most of the memory that a million
  // pending tasks take, and every byte is a first-touch cost): keep the fields packed.
  coro::coroutine_handle<>
      frame_;  // owned; its result slot is FutureBase::slot_ (see on_coroutine_done)
  coro::coroutine_handle<> resume_point_;
  Ref<FutureBase> fut_waiter_;
  std::unique_ptr<InspectStats> stats_;
  std::uint64_t id_;
  const char* created_file_;
  std::uint16_t created_line_;
  bool must_cancel_ : 1 = false;
  bool started_ : 1 = false;
  mutable bool name_set_ : 1 = false;
  bool scheduled_ : 1 = false;
  bool log_destroy_pending_ : 1 = true;
  bool promise_in_rare_ : 1 = false;
  bool frame_holds_result_ : 1 = true;  // else the frame goes when the coroutine returns
  int num_cancels_requested_ = 0;
  std::uint32_t name_number_ = 0;  // for the default name
  std::uint32_t run_count_ = 0;
};

Ref<TaskBase> eager_task_factory(EventLoop& loop, CoroutineFrame&& frame, const TaskOptions& options);

template <class T>
class Task : public Future<T> {
 public:
  Task() noexcept = default;
  explicit Task(Ref<TaskBase> t) noexcept : Future<T>(Ref<FutureBase>(std::move(t))) {}

  TaskBase* task() const noexcept { return static_cast<TaskBase*>(this->state_.get()); }
  bool cancel(std::string message = {}) { return task()->cancel(std::move(message)); }
  int cancelling() const noexcept { return task()->cancelling(); }
  int uncancel() noexcept { return task()->uncancel(); }
  const std::string& get_name() const noexcept { return task()->get_name(); }
  void set_name(std::string name) { task()->set_name(std::move(name)); }
  std::vector<AwaitFrame> await_chain() const { return task()->await_chain(); }
  // `callback` is called (through call_soon) with this Task<T>.
  template <class F>
  void add_done_callback(F&& callback) {
    this->state_->template add_done_callback_as<std::decay_t<F>, TaskInvoker<std::decay_t<F>>>(
        std::forward<F>(callback));
  }

 private:
  template <class F>
  struct TaskInvoker {
    static void call(F& f, FutureBase& fb) {
      f(Task<T>(Ref<TaskBase>(static_cast<TaskBase*>(&fb))));
    }
  };
};

// ---- Free functions (asyncio module level) ------------------------------------------------------

// The running loop of this thread; RuntimeError("no running event loop") if none.
EventLoop& get_running_loop();
// The running loop or null (asyncio._get_running_loop).
EventLoop* running_loop() noexcept;
// The task running on `loop` (default: the running loop), or null.
TaskBase* current_task(EventLoop* loop = nullptr);
// The tasks of `loop` (default: the running loop) that are not done.
std::vector<Ref<TaskBase>> all_tasks(EventLoop* loop = nullptr);
// A task factory that starts every task eagerly (asyncio.eager_task_factory).
Ref<TaskBase> eager_task_factory(EventLoop& loop, CoroutineFrame&& frame, const TaskOptions& options);

// Suspends the current task for `delay` seconds; sleep(0) yields exactly one loop pass. Its timer
// is shown (inspector, debug reports) as "eddy::sleep" scheduled at the caller's line.
Coro<void> sleep(double delay, SourceLocation where = SourceLocation::current());
// Integer seconds (and a better match than POSIX ::sleep under `using namespace eddy`).
template <class N>
requires std::is_integral_v<N> Coro<void> sleep(N delay,
                                                SourceLocation where = SourceLocation::current()) {
  return sleep(static_cast<double>(delay), where);
}
template <class Rep, class Period>
Coro<void> sleep(std::chrono::duration<Rep, Period> delay,
                 SourceLocation where = SourceLocation::current()) {
  return sleep(std::chrono::duration<double>(delay).count(), where);
}
template <class T>
Coro<T> sleep(double delay, T result, SourceLocation where = SourceLocation::current()) {
  co_await sleep(delay, where);
  co_return result;
}
template <class Rep, class Period, class T>
requires(!std::is_same_v<T, SourceLocation>) Coro<T> sleep(
    std::chrono::duration<Rep, Period> delay, T result,
    SourceLocation where = SourceLocation::current()) {
  return sleep(std::chrono::duration<double>(delay).count(), std::move(result), where);
}

// ---- Awaiters ------------------------------------------------------------------------------------

namespace detail {

// RuntimeError: awaited outside a task, on another loop, or by the task itself.
[[noreturn]] void reject_future_await(PromiseBase& p, FutureBase* f);
inline void check_future_awaitable(PromiseBase& p, FutureBase* f) {
  if (EDDY_UNLIKELY(!p.task || &f->get_loop() != &p.task->get_loop() || f == p.task))
    reject_future_await(p, f);
}

template <class T>
struct FutureAwaiter {
  Ref<FutureBase> future;
  PromiseBase* promise;
  SourceLocation where;
  bool suspended = false;

  bool await_ready() const noexcept { return future->done(); }
  void await_suspend(coro::coroutine_handle<> h) {
    check_future_awaitable(*promise, future.get());
    promise->awaiting = {future->is_task() ? AwaitRecord::Kind::task : AwaitRecord::Kind::future,
                         future.get(), where};
    suspended = true;
    promise->task->wait_on(future.get(), h);
  }
  T await_resume() {
    if (suspended) {
      promise->awaiting.clear();
      promise->task->finish_wait();
      promise->task->deliver_pending_cancel(future.get());
    }
    future->check_result();
    if constexpr (!std::is_void_v<T>) {
      auto& v = **static_cast<Slot<T>*>(future->value_slot());
      if constexpr (std::is_copy_constructible_v<T>)
        return v;
      else
        return std::move(v);
    }
  }
};

// Awaits a Coro inline: runs its frame in the awaiting task, or a quick call's operations
// (QuickOps) with its one wait, if any, made in the awaiting frame.
template <class T>
struct CoroAwaiter {
  Coro<T>* coro;
  const QuickOps<T>* quick;  // null: run the frame
  PromiseBase* promise;
  SourceLocation where;
  typename Coro<T>::handle_type child;
  bool suspended = false;

  // The quick path's steps are out of line: this awaiter is inlined at every co_await of a
  // Coro, and its size there is what the caller's frame function costs to compile (V8 compiles
  // wasm functions lazily, on the page's thread).
  // (await_ready is always false, as before quick calls existed, so that every co_await of a
  // Coro keeps one shape: a quick call that finishes at once is not suspended by await_suspend.)
  bool await_ready() const noexcept { return false; }
  bool await_suspend(coro::coroutine_handle<> h) {
    if (quick) {
      const QuickBegin begun = begin_quick(h);
      if (begun != QuickBegin::frame) return begun == QuickBegin::suspended;
    }
    auto& cp = child.promise();
    cp.task = promise->task;
    cp.parent_handle = h;
    promise->awaiting = {AwaitRecord::Kind::coroutine, &cp, where};
    cp.inline_start = true;
    child.resume();
    cp.inline_start = false;
    return !child.done();  // finished without suspending: continue at once
  }
  T await_resume() {
    if (quick) return finish_quick();
    promise->awaiting.clear();
    auto& cp = child.promise();
    if (cp.exception) std::rethrow_exception(cp.exception);
    if constexpr (!std::is_void_v<T>) return std::move(*cp.value);
  }

 private:
  enum class QuickBegin : std::uint8_t { finished, suspended, frame };
  EDDY_WASM_NOINLINE QuickBegin begin_quick(coro::coroutine_handle<> h) {
    Ref<FutureBase> waiting;
    switch (quick->start(coro->call_, waiting)) {
      case QuickStart::ready:
        return QuickBegin::finished;
      case QuickStart::wait:
        coro->waiting_ = waiting.leak();
        return wait_quick(h) ? QuickBegin::suspended : QuickBegin::finished;
      case QuickStart::frame:
        break;
    }
    coro->quick_ = quick;
    quick = nullptr;
    coro->make_frame();
    child = coro->h_;
    child.promise().consumed = true;
    return QuickBegin::frame;
  }
  bool wait_quick(coro::coroutine_handle<> h) {
    FutureBase* waiting = coro->waiting_;
    if (waiting->done()) return false;
    try {
      check_future_awaitable(*promise, waiting);
    } catch (...) {
      quick->stop_waiting(coro->call_, *waiting, true);  // not awaited from a task: never waited
      throw;
    }
    promise->awaiting = {AwaitRecord::Kind::future, waiting, where};
    suspended = true;
    promise->task->wait_on(waiting, h);
    return true;
  }
  EDDY_WASM_NOINLINE T finish_quick() {
    if (coro->waiting_) end_quick_wait();
    return quick->finish(coro->call_);
  }
  void end_quick_wait() {
    FutureBase* waiting = coro->waiting_;
    ExceptionSlot error;  // (libc++ destroys even a null std::exception_ptr out of line)
    if (suspended) {
      promise->awaiting.clear();
      promise->task->finish_wait();
    }
    try {
      if (suspended) promise->task->deliver_pending_cancel(waiting);
      waiting->check_result();
    } catch (...) {
      error = std::current_exception();
    }
    quick->stop_waiting(coro->call_, *waiting, static_cast<bool>(error));
    if (error) std::rethrow_exception(error.take());
  }
};

struct YieldAwaiter {
  PromiseBase* promise;
  SourceLocation where;
  bool await_ready() const noexcept { return false; }
  void await_suspend(coro::coroutine_handle<> h) {
    promise->awaiting = {AwaitRecord::Kind::yield, nullptr, where};
    promise->task->yield_once(h);
  }
  void await_resume() {
    promise->awaiting.clear();
    promise->task->deliver_pending_cancel();
  }
};

[[noreturn]] void throw_coroutine_reused();

}  // namespace detail

template <class A>
auto PromiseBase::await_transform(A&& awaitable, SourceLocation where) {
  using D = std::decay_t<A>;
  if constexpr (!detail::IsNamedAwait<D>::value) learn_function(where);
  if constexpr (detail::IsNamedAwait<D>::value) {
    where.function = awaitable.function;
    return await_transform(std::forward<decltype(awaitable.awaitable)>(awaitable.awaitable), where);
  } else if constexpr (detail::IsCoro<D>::value) {
    using Awaiter = detail::CoroAwaiter<typename D::value_type>;
    if (awaitable.quick_)
      return Awaiter{&awaitable, std::exchange(awaitable.quick_, nullptr), this, where, {}, {}};
    auto h = awaitable.handle();
    if (!h || h.promise().consumed || h.done()) detail::throw_coroutine_reused();
    h.promise().consumed = true;
    return Awaiter{&awaitable, nullptr, this, where, h, {}};
  } else if constexpr (detail::FutureLike<D>) {
    return detail::FutureAwaiter<typename D::value_type>{awaitable.state(), this, where};
  } else if constexpr (std::is_same_v<D, detail::YieldOnce>) {
    return detail::YieldAwaiter{this, where};
  } else if constexpr (requires { typename D::eddy_awaitable; }) {
    return awaitable.make_awaiter(this, where);  // async generator steps
  } else {
    static_assert(detail::FutureLike<D>,
                  "Eddy coroutines await Futures, Tasks, Coros and Eddy awaitables");
  }
}

template <class T>
CoroutineFrame Coro<T>::release_frame() {
  if (quick_) make_frame();
  if (!h_ || h_.promise().consumed || h_.done()) detail::throw_coroutine_reused();
  h_.promise().consumed = true;
  auto h = std::exchange(h_, {});
  return CoroutineFrame(h, &h.promise(), &h.promise().value, !std::is_void_v<T>);
}

// ---- EventLoop templates that need Tasks -------------------------------------------------------------

template <class T>
Task<T> EventLoop::create_task(Coro<T> coro, TaskOptions options, SourceLocation where) {
  check_closed();
  CoroutineFrame frame = coro.release_frame();
  options.created_at = where;
  Ref<TaskBase> t = task_factory_ ? task_factory_(*this, std::move(frame), options)
                                  : TaskBase::create(*this, std::move(frame), options);
  return Task<T>(std::move(t));
}

template <class T, class Name>
  requires std::is_convertible_v<const Name&, std::string_view>
Task<T> EventLoop::create_task(Coro<T> coro, const Name& name, SourceLocation where) {
  TaskOptions options;
  options.name = std::string(std::string_view(name));
  return create_task(std::move(coro), std::move(options), where);
}

namespace detail {
// Runs `loop` until `f` is done (asyncio's run_until_complete without the result).
void run_until_done(EventLoop& loop, FutureBase* f, bool new_task);
}  // namespace detail

template <class T>
T EventLoop::run_until_complete(Future<T> future) {
  detail::run_until_done(*this, future.base(), false);
  if constexpr (std::is_void_v<T>) {
    future.result();
  } else if constexpr (std::is_copy_constructible_v<T>) {
    return future.result();
  } else {
    return std::move(future.result());
  }
}

template <class T>
T EventLoop::run_until_complete(Task<T> task) {
  return run_until_complete(static_cast<Future<T>&&>(task));
}

template <class T>
T EventLoop::run_until_complete(Coro<T> coro, SourceLocation where) {
  check_can_run("run_until_complete");  // before the coroutine becomes a task that would run later
  Task<T> task = create_task(std::move(coro), TaskOptions{}, where);
  task.task()->set_log_destroy_pending(false);
  detail::run_until_done(*this, task.base(), true);
  if constexpr (std::is_void_v<T>)
    task.result();
  else
    return std::move(task.result());
}

// asyncio.create_task(coro, name=): a task on the running loop (RuntimeError if none runs here).
template <class T>
Task<T> create_task(Coro<T> coro, TaskOptions options = {},
                    SourceLocation where = SourceLocation::current()) {
  return get_running_loop().create_task(std::move(coro), std::move(options), where);
}
template <class T, class Name>
requires std::is_convertible_v<const Name&, std::string_view> Task<T> create_task(
    Coro<T> coro, const Name& name, SourceLocation where = SourceLocation::current()) {
  return get_running_loop().create_task(std::move(coro), name, where);
}

}  // namespace eddy
