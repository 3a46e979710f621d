// asyncio's task functions: gather, wait, wait_for, shield, as_completed, ensure_future,
// timeout/timeout_at, TaskGroup, run_coroutine_threadsafe, wrap_future and to_thread, with
// asyncio's rules for cancellation (cancelling a gather cancels its children, a timeout turns its
// own cancellation into TimeoutError, a failing TaskGroup child cancels its siblings).
//
//   auto [a, b] = co_await eddy::gather(fetch(1), fetch(2));
//   auto all = co_await eddy::gather(eddy::return_exceptions, std::move(tasks));  // Outcomes
//   int v = co_await eddy::wait_for(fetch(3), 1.5);                                // TimeoutError
//   co_await eddy::TaskGroup::run([&](eddy::TaskGroup& tg) -> eddy::Coro<void> {
//     tg.create_task(fetch(4));
//     co_return;
//   });
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "eddy/errors.hpp"
#include "eddy/executor.hpp"
#include "eddy/task.hpp"

namespace eddy {

// Python's ExceptionGroup: what a TaskGroup raises when children failed. `exceptions()` keeps
// the order in which they failed.
class ExceptionGroup : public std::exception {
 public:
  ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);
  const char* what() const noexcept override { return what_.c_str(); }
  const std::string& message() const noexcept { return message_; }
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

 private:
  std::string message_;
  std::string what_;
  std::vector<std::exception_ptr> exceptions_;
};

// What a void awaitable contributes to a gathered tuple or vector (Python's None).
template <class T>
using ValueOf = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// A child's result or its exception (CancelledError for a cancelled child): gather's
// return_exceptions=True.
template <class T>
class Outcome {
 public:
  explicit Outcome(ValueOf<T> value) : v_(std::in_place_index<0>, std::move(value)) {}
  explicit Outcome(std::exception_ptr error) : v_(std::in_place_index<1>, std::move(error)) {}
  bool ok() const noexcept { return v_.index() == 0; }
  // The value, or throws the exception.
  ValueOf<T>& value() {
    if (!ok()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  std::exception_ptr exception() const noexcept { return ok() ? nullptr : std::get<1>(v_); }

 private:
  std::variant<ValueOf<T>, std::exception_ptr> v_;
};

// Tag for gather's return_exceptions=True.
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

// asyncio.FIRST_COMPLETED and friends.
enum class ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::FIRST_COMPLETED;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::FIRST_EXCEPTION;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::ALL_COMPLETED;

struct WaitOptions {
  std::optional<double> timeout;  // seconds; nothing: no limit
  ReturnWhen return_when = ReturnWhen::ALL_COMPLETED;
};

template <class F>
struct WaitResult {
  std::vector<F> done;     // in the order given
  std::vector<F> pending;  // in the order given
};

namespace detail {

template <class A>
concept Awaitable = IsCoro<std::decay_t<A>>::value || FutureLike<std::decay_t<A>>;

template <class A>
using AwaitedType = typename std::decay_t<A>::value_type;

// A future's value for gather and friends: copied when it can be (others may await the same
// future), moved otherwise.
template <class T>
ValueOf<T> take_value(FutureBase& f) {
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    auto& v = **static_cast<Slot<T>*>(f.value_slot());
    if constexpr (std::is_copy_constructible_v<T>)
      return v;
    else
      return std::move(v);
  }
}

template <class T>
Outcome<T> take_outcome(FutureBase& f) {
  if (f.cancelled()) return Outcome<T>(std::make_exception_ptr(CancelledError(f.cancel_message())));
  if (std::exception_ptr e = f.exception()) return Outcome<T>(std::move(e));
  return Outcome<T>(take_value<T>(f));
}

// asyncio's _GatheringFuture: cancelling it cancels the children.
class GatherBase : public FutureBase {
 public:
  GatherBase(EventLoop& loop, std::vector<Ref<FutureBase>> children, bool return_exceptions);
  bool cancel(std::string message = {}) override;
  // Adds the done callbacks (once the object is complete) or finishes an empty gather.
  void start();

 protected:
  virtual void collect(const std::vector<Ref<FutureBase>>& children) = 0;

 private:
  void on_child_done(FutureBase& child);
  void end(std::exception_ptr error);  // null: collect()ed, finish with the result
  struct ChildDone;
  std::vector<Ref<FutureBase>> children_;
  std::size_t finished_ = 0;
  bool return_exceptions_;
  bool cancel_requested_ = false;
};

template <class R, class Collect>
class Gathering final : public GatherBase {
 public:
  Gathering(EventLoop& loop, std::vector<Ref<FutureBase>> children, bool return_exceptions)
      : GatherBase(loop, std::move(children), return_exceptions) {
    slot_ = &value_;
  }

 private:
  void collect(const std::vector<Ref<FutureBase>>& children) override {
    value_.emplace(Collect{}(children));
  }
  Slot<R> value_;
};

// The loop gather's children run on: the running loop, else the first future's.
EventLoop& combinator_loop(FutureBase* first);

template <class A>
Ref<FutureBase> to_future(A&& aw, EventLoop* loop);

template <class R, class Collect>
Future<R> start_gather(std::vector<Ref<FutureBase>> children, bool return_exceptions) {
  EventLoop& loop = combinator_loop(children.empty() ? nullptr : children.front().get());
  Ref<FutureBase> g(new Gathering<R, Collect>(loop, std::move(children), return_exceptions));
  static_cast<GatherBase*>(g.get())->start();
  return Future<R>(std::move(g));
}

template <class... Ts>
struct CollectTuple {
  template <std::size_t... I>
  static auto make(const std::vector<Ref<FutureBase>>& c, std::index_sequence<I...>) {
    return std::tuple<ValueOf<Ts>...>(take_value<Ts>(*c[I])...);
  }
  auto operator()(const std::vector<Ref<FutureBase>>& c) const {
    return make(c, std::index_sequence_for<Ts...>{});
  }
};
template <class... Ts>
struct CollectTupleOutcomes {
  template <std::size_t... I>
  static auto make(const std::vector<Ref<FutureBase>>& c, std::index_sequence<I...>) {
    return std::tuple<Outcome<Ts>...>(take_outcome<Ts>(*c[I])...);
  }
  auto operator()(const std::vector<Ref<FutureBase>>& c) const {
    return make(c, std::index_sequence_for<Ts...>{});
  }
};
template <class T>
struct CollectVector {
  std::vector<ValueOf<T>> operator()(const std::vector<Ref<FutureBase>>& c) const {
    std::vector<ValueOf<T>> out;
    out.reserve(c.size());
    for (const auto& f : c) out.push_back(take_value<T>(*f));
    return out;
  }
};
template <class T>
struct CollectVectorOutcomes {
  std::vector<Outcome<T>> operator()(const std::vector<Ref<FutureBase>>& c) const {
    std::vector<Outcome<T>> out;
    out.reserve(c.size());
    for (const auto& f : c) out.push_back(take_outcome<T>(*f));
    return out;
  }
};

// gather's children: coroutines become tasks of the running loop.
template <class... A>
std::vector<Ref<FutureBase>> children_of(A&&... aws) {
  EventLoop* loop = running_loop();
  std::vector<Ref<FutureBase>> children;
  children.reserve(sizeof...(A));
  (children.push_back(to_future(std::forward<A>(aws), loop)), ...);
  return children;
}
template <class A>
std::vector<Ref<FutureBase>> children_of_vector(std::vector<A>& aws) {
  EventLoop* loop = running_loop();
  std::vector<Ref<FutureBase>> children;
  children.reserve(aws.size());
  for (auto& a : aws) children.push_back(to_future(std::move(a), loop));
  return children;
}

// Waits (in the calling task) until `fs` satisfy `return_when` or `timeout` passes; the timeout's
// timer is shown as scheduled at `where`.
Coro<void> wait_until(std::vector<Ref<FutureBase>> fs, WaitOptions options, SourceLocation where);
// Cancels `f` and waits until it is done (asyncio's _cancel_and_wait).
Coro<void> cancel_and_wait(Ref<FutureBase> f);
// Shield's two callbacks (defined in combinators.cpp for any T through take_value).
void shield_copy(FutureBase& inner, FutureBase& outer, void (*store)(FutureBase&, FutureBase&));

template <class T>
void store_copy(FutureBase& from, FutureBase& to) {
  auto* slot = static_cast<Slot<T>*>(to.value_slot());
  if constexpr (std::is_void_v<T>)
    slot->emplace();
  else
    slot->emplace(take_value<T>(from));
}

}  // namespace detail

// ---- ensure_future ------------------------------------------------------------------------------

// A Future or Task is returned as is (ValueError if `loop` is given and is not its loop); a
// coroutine becomes a Task on `loop` (default: running).
namespace detail {
inline void check_future_loop(const EventLoop& own, const EventLoop* given) {
  if (given && &own != given)
    throw ValueError(
        "The future belongs to a different loop than the one specified as the loop argument");
}
}  // namespace detail
template <class T>
Future<T> ensure_future(Future<T> f, EventLoop* loop = nullptr) {
  detail::check_future_loop(f.get_loop(), loop);
  return f;
}
template <class T>
Task<T> ensure_future(Task<T> t, EventLoop* loop = nullptr) {
  detail::check_future_loop(t.get_loop(), loop);
  return t;
}
template <class T>
Task<T> ensure_future(Coro<T> c, EventLoop* loop = nullptr) {
  EventLoop& l = loop ? *loop : get_running_loop();
  return l.create_task(std::move(c));
}

template <class A>
Ref<FutureBase> detail::to_future(A&& aw, EventLoop* loop) {
  if constexpr (IsCoro<std::decay_t<A>>::value) {
    EventLoop& l = loop ? *loop : get_running_loop();
    return l.create_task(std::move(aw)).state();
  } else {
    check_future_loop(aw.get_loop(), loop);
    // An rvalue gives its reference up: the caller's handle then never touches the future again.
    if constexpr (std::is_rvalue_reference_v<A&&> && !std::is_const_v<std::remove_reference_t<A>>)
      return std::move(aw).take_state();
    else
      return aw.state();
  }
}

// ---- gather
// ---------------------------------------------------------------------------------------

// Runs the awaitables concurrently (coroutines become Tasks) and gives their results in order.
// The first exception (or a child's cancellation) completes the gather at once; the other
// children keep running. Cancelling the gather cancels every child that is not done.
template <class... A>
requires(detail::Awaitable<A>&&...) auto gather(A&&... aws)
    -> Future<std::tuple<ValueOf<detail::AwaitedType<A>>...>> {
  using R = std::tuple<ValueOf<detail::AwaitedType<A>>...>;
  return detail::start_gather<R, detail::CollectTuple<detail::AwaitedType<A>...>>(
      detail::children_of(std::forward<A>(aws)...), false);
}

// return_exceptions=True: every child's Outcome, exceptions (and CancelledError) included.
template <class... A>
requires(detail::Awaitable<A>&&...) auto gather(ReturnExceptions, A&&... aws)
    -> Future<std::tuple<Outcome<detail::AwaitedType<A>>...>> {
  using R = std::tuple<Outcome<detail::AwaitedType<A>>...>;
  return detail::start_gather<R, detail::CollectTupleOutcomes<detail::AwaitedType<A>...>>(
      detail::children_of(std::forward<A>(aws)...), true);
}

// A run-time number of awaitables of one type.
template <class A>
requires detail::Awaitable<A>
auto gather(std::vector<A> aws) -> Future<std::vector<ValueOf<detail::AwaitedType<A>>>> {
  using T = detail::AwaitedType<A>;
  return detail::start_gather<std::vector<ValueOf<T>>, detail::CollectVector<T>>(
      detail::children_of_vector(aws), false);
}

template <class A>
requires detail::Awaitable<A>
auto gather(ReturnExceptions, std::vector<A> aws)
    -> Future<std::vector<Outcome<detail::AwaitedType<A>>>> {
  using T = detail::AwaitedType<A>;
  return detail::start_gather<std::vector<Outcome<T>>, detail::CollectVectorOutcomes<T>>(
      detail::children_of_vector(aws), true);
}

// ---- wait, wait_for, shield, as_completed
// ---------------------------------------------------------

namespace detail {
// asyncio takes a set of futures: the same one given twice counts once (the first place kept).
template <class F>
void drop_repeated(std::vector<F>& fs) {
  std::unordered_set<const FutureBase*> seen;
  std::erase_if(fs, [&seen](const F& f) { return !seen.insert(f.state().get()).second; });
}
}  // namespace detail

// Waits for the futures or tasks (not coroutines, as asyncio 3.11+) until `return_when` holds
// or the timeout passes (no TimeoutError: what is not done is in `pending`). ValueError if empty.
// A future given twice is listed once, as in asyncio's sets.
template <class F>
requires detail::FutureLike<F> Coro<WaitResult<F>> wait(
    std::vector<F> fs, WaitOptions options = {}, SourceLocation where = SourceLocation::current()) {
  if (fs.empty()) throw ValueError("Set of Tasks/Futures is empty.");
  detail::drop_repeated(fs);
  std::vector<Ref<FutureBase>> bases;
  bases.reserve(fs.size());
  for (const auto& f : fs) bases.push_back(f.state());
  auto waiting = detail::wait_until(std::move(bases), options, where);
  co_await detail::awaiting_as("eddy::wait", waiting);
  WaitResult<F> result;
  for (auto& f : fs) (f.done() ? result.done : result.pending).push_back(std::move(f));
  co_return result;
}

class Timeout;

// Waits for `aw` for at most `timeout` seconds (nothing: no limit). On expiry `aw` is cancelled
// and TimeoutError raised once it has finished cancelling. A coroutine runs inline, in the
// calling task; timeout <= 0 runs it as a Task and cancels it unless it is already done. The
// timer is shown (inspector, debug reports) as scheduled where wait_for was called.
template <class A>
requires detail::Awaitable<A>
auto wait_for(A aw, std::optional<double> timeout, SourceLocation where = SourceLocation::current())
    -> Coro<detail::AwaitedType<A>>;

// Protects `aw` from cancellation: cancelling the returned future leaves `aw` running.
template <class A>
requires detail::Awaitable<A>
auto shield(A aw) -> Future<detail::AwaitedType<A>> {
  using T = detail::AwaitedType<A>;
  Ref<FutureBase> inner = detail::to_future(std::move(aw), nullptr);
  if (inner->done()) return Future<T>(std::move(inner));
  Future<T> outer = inner->get_loop().template create_future<T>();
  detail::shield_copy(*inner, *outer.state(), &detail::store_copy<T>);
  return outer;
}

namespace detail {
// The shared part of as_completed: a queue of completed futures (null: the timeout).
class AsCompletedCore;
std::shared_ptr<AsCompletedCore> start_as_completed(const std::vector<Ref<FutureBase>>& fs,
                                                    std::optional<double> timeout,
                                                    SourceLocation where);
Coro<Ref<FutureBase>> next_completed(std::shared_ptr<AsCompletedCore> core);
}  // namespace detail

// asyncio.as_completed: next() gives the futures in the order they complete, each once (a
// future given twice counts once). Once `timeout` has passed, each next() still owed raises
// TimeoutError instead; either way done() is true after as many next() calls as futures.
//
// It is also asyncio's plain iterator: each element is an awaitable giving the result of the
// next future to complete, or raising its exception (TimeoutError once the timeout passed):
//
//   for (Coro<int> next : eddy::as_completed(std::move(tasks))) int earliest = co_await next;
template <class F>
class AsCompleted {
 public:
  using Result = typename F::value_type;

  AsCompleted(std::vector<F> fs, std::optional<double> timeout,
              SourceLocation where = SourceLocation::current()) {
    std::vector<Ref<FutureBase>> bases;
    for (auto& f : fs)
      if (by_state_.emplace(f.state().get(), f).second) bases.push_back(f.state());
    remaining_ = bases.size();
    core_ = detail::start_as_completed(bases, timeout, where);
  }
  bool done() const noexcept { return remaining_ == 0; }
  std::size_t remaining() const noexcept { return remaining_; }
  Coro<F> next() {
    if (remaining_ == 0) throw RuntimeError("as_completed: every future was already returned");
    --remaining_;  // before waiting, as asyncio: a timed-out step counts too
    auto waiting = detail::next_completed(core_);
    Ref<FutureBase> f = co_await detail::awaiting_as("eddy::as_completed", waiting);
    co_return by_state_.at(f.get());
  }
  // One step of the plain iterator. As asyncio's __next__, the step counts when it is taken, not
  // when it is awaited; the awaitable does not need this object to live on.
  Coro<Result> next_result() {
    if (remaining_ == 0) throw RuntimeError("as_completed: every future was already returned");
    --remaining_;
    return result_of(detail::next_completed(core_));
  }

  struct Sentinel {};
  class Iterator {
   public:
    using value_type = Coro<Result>;
    using difference_type = std::ptrdiff_t;
    explicit Iterator(AsCompleted* owner) noexcept : owner_(owner) {}
    Coro<Result> operator*() const { return owner_->next_result(); }
    Iterator& operator++() noexcept { return *this; }  // dereferencing took the step
    void operator++(int) noexcept {}
    bool operator==(Sentinel) const noexcept { return owner_->done(); }

   private:
    AsCompleted* owner_;
  };
  Iterator begin() noexcept { return Iterator(this); }
  Sentinel end() const noexcept { return {}; }

 private:
  static Coro<Result> result_of(Coro<Ref<FutureBase>> waiting) {
    Ref<FutureBase> f = co_await detail::awaiting_as("eddy::as_completed", waiting);
    Future<Result> done(std::move(f));
    if constexpr (std::is_void_v<Result>) {
      done.result();
    } else if constexpr (std::is_copy_constructible_v<Result>) {
      Result r = done.result();
      co_return r;
    } else {
      Result r = std::move(done.result());
      co_return r;
    }
  }

  std::shared_ptr<detail::AsCompletedCore> core_;
  std::unordered_map<FutureBase*, F> by_state_;
  std::size_t remaining_;
};

template <class A>
requires detail::Awaitable<A>
auto as_completed(std::vector<A> aws, std::optional<double> timeout = std::nullopt,
                  SourceLocation where = SourceLocation::current()) {
  using T = detail::AwaitedType<A>;
  using F = std::conditional_t<detail::IsCoro<A>::value, Task<T>, A>;
  std::vector<F> fs;
  fs.reserve(aws.size());
  for (auto& a : aws) fs.push_back(ensure_future(std::move(a)));
  return AsCompleted<F>(std::move(fs), timeout, where);
}

// ---- timeout ------------------------------------------------------------------------------------

// asyncio.Timeout: a deadline for the code it runs, in the current task. On expiry the task is
// cancelled; the scope turns that cancellation (and only that one) into TimeoutError. The
// deadline can be moved while the scope runs. Not copyable or movable: callbacks point at it.
//
//   auto scope = eddy::timeout(2.0);
//   std::string page = co_await scope.run(fetch(scope));  // fetch may call scope.reschedule()
class Timeout {
 public:
  // `where`: the line its timer is shown as scheduled at (inspector, debug reports).
  explicit Timeout(std::optional<double> when, SourceLocation where = SourceLocation::current())
      : when_(when), where_(where) {}
  Timeout(const Timeout&) = delete;
  Timeout& operator=(const Timeout&) = delete;
  ~Timeout();

  std::optional<double> when() const noexcept { return when_; }
  // A new deadline (loop time; nothing: none). RuntimeError unless the scope is running.
  void reschedule(std::optional<double> when);
  bool expired() const noexcept { return state_ == State::expiring || state_ == State::expired; }
  std::string describe() const;
  const char* state_name() const noexcept;  // asyncio's _State values: "created", "active", ...

  // Runs `aw` (a coroutine inline, or awaits a future) inside the scope.
  template <class A>
  requires detail::Awaitable<A>
  auto run(A aw) -> Coro<detail::AwaitedType<A>>;

  // The scope's two halves (`async with`), for code that cannot be wrapped in one awaitable:
  // exit() replaces `error` by TimeoutError when the scope expired and cancelled the task.
  void enter();
  void exit(std::exception_ptr& error);

 private:
  enum class State { created, entered, expiring, expired, exited };
  void on_timeout();
  struct Expiry {  // the deadline's callback
    Timeout* scope;
    void operator()() { scope->on_timeout(); }
    static const char* callback_name() noexcept { return "eddy::timeout"; }
  };
  std::optional<double> when_;
  SourceLocation where_;
  Ref<TaskBase> task_;
  Handle handle_;
  int cancelling_ = 0;
  State state_ = State::created;
};

// asyncio.timeout(delay): a Timeout `delay` seconds from now (nothing: no deadline yet).
Timeout timeout(std::optional<double> delay, SourceLocation where = SourceLocation::current());
// asyncio.timeout_at(when): a Timeout at loop time `when`.
Timeout timeout_at(std::optional<double> when, SourceLocation where = SourceLocation::current());

template <class A>
requires detail::Awaitable<A>
auto Timeout::run(A aw) -> Coro<detail::AwaitedType<A>> {
  using T = detail::AwaitedType<A>;
  enter();
  std::exception_ptr error;
  std::optional<ValueOf<T>> value;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await detail::awaiting_as("eddy::Timeout::run", aw);
    } else {
      auto v = co_await detail::awaiting_as("eddy::Timeout::run", aw);
      value.emplace(std::move(v));
    }
  } catch (...) {
    error = std::current_exception();
  }
  exit(error);
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) co_return std::move(*value);
}

template <class A>
requires detail::Awaitable<A>
auto wait_for(A aw, std::optional<double> timeout, SourceLocation where)
    -> Coro<detail::AwaitedType<A>> {
  using T = detail::AwaitedType<A>;
  if (timeout && *timeout <= 0) {
    auto fut = ensure_future(std::move(aw));
    if (!fut.done()) {
      auto cancelling = detail::cancel_and_wait(fut.state());
      co_await detail::awaiting_as("eddy::wait_for", cancelling);
      if (fut.cancelled()) throw TimeoutError();
    }
    if constexpr (std::is_void_v<T>) {
      fut.result();
      co_return;
    } else {
      fut.state()->check_result();
      co_return detail::take_value<T>(*fut.state());
    }
  }
  EventLoop& loop = get_running_loop();
  Timeout scope(timeout ? std::optional<double>(loop.time() + *timeout) : std::nullopt, where);
  if constexpr (std::is_void_v<T>) {
    auto running = scope.run(std::move(aw));
    co_await detail::awaiting_as("eddy::wait_for", running);
  } else {
    auto running = scope.run(std::move(aw));
    T v = co_await detail::awaiting_as("eddy::wait_for", running);
    co_return v;
  }
}

// ---- TaskGroup ----------------------------------------------------------------------------------

// asyncio.TaskGroup. The first child to fail cancels the other children and the task that
// entered the group; exit() waits for every child and raises ExceptionGroup with every failure
// (a cancellation of the parent from outside propagates as CancelledError when nothing failed).
class TaskGroup {
 public:
  TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup();

  // `async with TaskGroup() as tg: await body(tg)`.
  template <class F>
  static Coro<void> run(F body);

  // RuntimeError before enter(), once the group is shutting down, or after it finished.
  template <class T>
  Task<T> create_task(Coro<T> coro, TaskOptions options = {},
                      SourceLocation where = SourceLocation::current());
  template <class T, class Name>
  requires std::is_convertible_v<const Name&, std::string_view> Task<T> create_task(
      Coro<T> coro, const Name& name, SourceLocation where = SourceLocation::current()) {
    TaskOptions o;
    o.name = std::string(std::string_view(name));
    return create_task(std::move(coro), std::move(o), where);
  }

  // The two halves of `async with`: enter() binds the group to the current task; exit(error)
  // gets the exception the body ended with (null if none).
  void enter();
  Coro<void> exit(std::exception_ptr error = nullptr);
  // asyncio's repr: "<TaskGroup tasks=2 errors=1 cancelling>" (its RuntimeErrors name it so).
  std::string describe() const;

  struct State;

 private:
  EventLoop& check_can_create();
  void adopt(TaskBase* task);
  std::shared_ptr<State> state_;
};

template <class F>
Coro<void> TaskGroup::run(F body) {
  TaskGroup group;
  group.enter();
  std::exception_ptr error;
  try {
    co_await detail::awaiting_as("eddy::TaskGroup::run", body(group));
  } catch (...) {
    error = std::current_exception();
  }
  auto exiting = group.exit(error);
  co_await detail::awaiting_as("eddy::TaskGroup::run", exiting);
}

template <class T>
Task<T> TaskGroup::create_task(Coro<T> coro, TaskOptions options, SourceLocation where) {
  EventLoop& loop = check_can_create();
  Task<T> t = loop.create_task(std::move(coro), std::move(options), where);
  adopt(t.task());
  return t;
}

// ---- Threads
// --------------------------------------------------------------------------------------

namespace detail {

// The thread-safe state of a ConcurrentFuture (concurrent.futures.Future).
class ConcurrentCore : public std::enable_shared_from_this<ConcurrentCore> {
 public:
  virtual ~ConcurrentCore() = default;
  bool done() const;
  bool cancelled() const;
  // Blocks until done or `timeout` passes (TimeoutError); then CancelledError or the exception.
  void wait_result(std::optional<double> timeout);
  std::exception_ptr wait_exception(std::optional<double> timeout);
  bool cancel();
  // From the loop: the task's outcome, once.
  void set_cancelled();
  void set_exception(std::exception_ptr e);
  void set_value_stored();
  // Loop side: the task to cancel when cancel() is called from another thread.
  EventLoop* loop = nullptr;
  TaskBase* task = nullptr;  // touched on the loop's thread only

 protected:
  mutable std::mutex mutex_;
  std::condition_variable cv_;

 private:
  void wait_done(std::unique_lock<std::mutex>& lock, std::optional<double> timeout);
  enum class State { pending, cancelled, finished } state_ = State::pending;
  std::exception_ptr exception_;
};

template <class T>
class ConcurrentState final : public ConcurrentCore {
 public:
  Slot<T> value;
};

// Posts `coro` to `loop` as a task chained to `core` (run_coroutine_threadsafe's loop side).
void start_threadsafe(EventLoop& loop, std::shared_ptr<ConcurrentCore> core, UniqueFunction start);
void chain_to_concurrent(TaskBase& task, std::shared_ptr<ConcurrentCore> core,
                         void (*store)(FutureBase&, ConcurrentCore&));

}  // namespace detail

// concurrent.futures.Future: what run_coroutine_threadsafe returns to the calling thread.
template <class T>
class ConcurrentFuture {
 public:
  ConcurrentFuture() : state_(std::make_shared<detail::ConcurrentState<T>>()) {}
  bool done() const { return state_->done(); }
  bool cancelled() const { return state_->cancelled(); }
  // Cancels the task on its loop (through call_soon_threadsafe); false once done.
  bool cancel() { return state_->cancel(); }
  // Blocks this thread (never the loop's own: it would wait forever) until the result exists.
  std::add_lvalue_reference_t<T> result(std::optional<double> timeout = std::nullopt) {
    state_->wait_result(timeout);
    if constexpr (!std::is_void_v<T>) return *state_->value;
  }
  std::exception_ptr exception(std::optional<double> timeout = std::nullopt) {
    return state_->wait_exception(timeout);
  }
  const std::shared_ptr<detail::ConcurrentState<T>>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<detail::ConcurrentState<T>> state_;
};

// Submits `coro` to `loop` from any thread; the result arrives in the returned future.
template <class T>
ConcurrentFuture<T> run_coroutine_threadsafe(Coro<T> coro, EventLoop& loop) {
  ConcurrentFuture<T> result;
  auto core = result.state();
  detail::start_threadsafe(loop, core, [core, &loop, c = std::move(coro)]() mutable {
    Task<T> task = loop.create_task(std::move(c));
    detail::chain_to_concurrent(*task.task(), core,
                                [](FutureBase& from, detail::ConcurrentCore& to) {
                                  auto& v = static_cast<detail::ConcurrentState<T>&>(to).value;
                                  if constexpr (std::is_void_v<T>)
                                    v.emplace();
                                  else
                                    v.emplace(detail::take_value<T>(from));
                                });
  });
  return result;
}

// Runs `fn(args...)` on the default executor's thread and returns its result (asyncio.to_thread).
template <class F, class... Args>
auto to_thread(F fn, Args... args) -> Coro<std::invoke_result_t<F&, Args&...>> {
  using R = std::invoke_result_t<F&, Args&...>;
  auto job = [fn = std::move(fn), ... args = std::move(args)]() mutable -> R {
    return fn(args...);
  };
  Future<R> fut = get_running_loop().run_in_executor(nullptr, std::move(job));
  if constexpr (std::is_void_v<R>) {
    co_await detail::awaiting_as("eddy::to_thread", fut);
  } else {
    R r = co_await detail::awaiting_as("eddy::to_thread", fut);
    co_return r;
  }
}

// Adopts a std::future: a worker thread of the default executor waits for it.
template <class T>
Future<T> wrap_future(std::future<T> f, EventLoop* loop = nullptr) {
  EventLoop& l = loop ? *loop : get_running_loop();
  return l.run_in_executor(nullptr, [f = std::move(f)]() mutable -> T { return f.get(); });
}
// Adopts a ConcurrentFuture (of another loop, say) the same way.
template <class T>
Future<T> wrap_future(ConcurrentFuture<T> f, EventLoop* loop = nullptr) {
  EventLoop& l = loop ? *loop : get_running_loop();
  return l.run_in_executor(nullptr, [f]() mutable -> T {
    if constexpr (std::is_void_v<T>)
      f.result();
    else
      return f.result();
  });
}

}  // namespace eddy
