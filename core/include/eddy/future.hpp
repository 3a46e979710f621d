// asyncio.Future: a result that will exist later. FutureBase holds the state machine
// (pending -> finished | cancelled), the exception, the cancel message and the done callbacks,
// which run through the loop's call_soon, never inline. Future<T> is a typed counted reference;
// the value lives in the derived object (or, for a Task, in its coroutine's promise).
//
//   auto fut = loop->create_future<int>();
//   fut.add_done_callback([](eddy::Future<int> f) { use(f.result()); });
//   fut.set_result(42);
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "eddy/detail/slab.hpp"
#include "eddy/loop.hpp"

namespace eddy {

enum class FutureState : std::uint8_t { pending, cancelled, finished };
const char* to_string(FutureState s) noexcept;
class PromiseBase;

namespace detail {

inline const std::string kNoString;

// What few futures and tasks have, in one allocation made the first time one of them is set: a
// cancellation's message, and for a task its name, the message of a cancellation not yet
// delivered and, for a frame laid out unusually, its promise (see TaskBase::promise()).
struct RareFields {
  std::string cancel_message;
  std::string name;
  std::string pending_cancel_message;
  PromiseBase* promise = nullptr;
};

// A std::exception_ptr that costs nothing to destroy while empty. libc++ (WebAssembly) destroys
// an exception_ptr with an out-of-line call even when it is null, and every future and coroutine
// frame has one that almost always stays null (7% of a Future hand-off in WebAssembly).
class ExceptionSlot {
 public:
  ExceptionSlot() noexcept { ::new (static_cast<void*>(&ptr_)) std::exception_ptr(); }
  ~ExceptionSlot() {
    if (ptr_) ptr_.~exception_ptr();  // a null one holds nothing to release
  }
  ExceptionSlot(const ExceptionSlot&) = delete;
  ExceptionSlot& operator=(const ExceptionSlot&) = delete;
  ExceptionSlot& operator=(std::exception_ptr e) noexcept {
    ptr_ = std::move(e);
    return *this;
  }
  operator const std::exception_ptr&() const noexcept { return ptr_; }
  explicit operator bool() const noexcept { return static_cast<bool>(ptr_); }
  // Moves the exception out, leaving the slot empty.
  std::exception_ptr take() noexcept {
    if (!ptr_) return nullptr;
    std::exception_ptr e = ptr_;
    ptr_ = nullptr;
    return e;
  }

 private:
  union {
    std::exception_ptr ptr_;
  };
};

struct Unit {};
template <class T>
struct SlotType {
  using type = std::optional<T>;
};
template <>
struct SlotType<void> {
  using type = std::optional<Unit>;
};
template <class T>
using Slot = typename SlotType<T>::type;

// A done callback: a callable taking the future, stored inline when small.
struct DoneCallbackOps {
  void (*invoke)(void* storage, FutureBase& future);
  void (*destroy)(void* storage) noexcept;
  const char* (*name)(const void* storage);
  bool (*equals)(const void* storage, const void* other) noexcept;  // null: never equal
  const void* type_key;
  // Set for callbacks that do not need their future when they run (a task's wake-up): the
  // callback is moved out of `storage` into a handle of its own and scheduled, saving the
  // runner that would hold the future and call back through these ops.
  void (*schedule_alone)(void* storage, EventLoop& loop) = nullptr;
};

struct DoneCallback {
  static constexpr std::size_t kInline = 24;
  const DoneCallbackOps* ops = nullptr;
  alignas(8) unsigned char storage[kInline];
  bool scheduled = false;      // handed to a handle that will run it
  bool owned_by_node = false;  // a DoneCallbackNode (not the future's inline first slot)
};
// The second and later callbacks of a future, in a list.
struct DoneCallbackNode : DoneCallback {
  DoneCallbackNode* next = nullptr;
};

template <class F>
inline constexpr bool done_fits_inline = sizeof(F) <= DoneCallback::kInline &&
                                         alignof(F) <= 8 &&
                                         std::is_nothrow_move_constructible_v<F>;

template <class F>
struct TypeKey {
  static constexpr char key = 0;
};

template <class F, class Invoke>
struct DoneCallbackOpsFor {
  static F& get(void* s) noexcept {
    if constexpr (done_fits_inline<F>)
      return *std::launder(reinterpret_cast<F*>(s));
    else
      return **reinterpret_cast<F**>(s);
  }
  static const F& get(const void* s) noexcept { return get(const_cast<void*>(s)); }
  static void invoke(void* s, FutureBase& f) { Invoke::call(get(s), f); }
  static void destroy(void* s) noexcept {
    if constexpr (done_fits_inline<F>)
      get(s).~F();
    else
      delete *reinterpret_cast<F**>(s);
  }
  static const char* name(const void*) { return callable_name<F>(); }
  static bool equals(const void* s, const void* other) noexcept {
    if constexpr (requires(const F& a, const F& b) { bool(a == b); })
      return bool(get(s) == *static_cast<const F*>(other));
    else
      return false;
  }
  static void schedule_alone(void* s, EventLoop& loop) {
    struct DestroyAfter {
      void* s;
      ~DestroyAfter() { destroy(s); }
    } destroy_after{s};
    Invoke::schedule_alone(std::move(get(s)), loop);
  }
  static constexpr auto schedule_alone_or_null() {
    if constexpr (requires { &Invoke::schedule_alone; })
      return &schedule_alone;
    else
      return static_cast<void (*)(void*, EventLoop&)>(nullptr);
  }
  static constexpr DoneCallbackOps ops{&invoke, &destroy,         &name,
                                       &equals, &TypeKey<F>::key, schedule_alone_or_null()};
  template <class G>
  static void construct(void* s, G&& g) {
    if constexpr (done_fits_inline<F>)
      ::new (s) F(std::forward<G>(g));
    else
      *reinterpret_cast<F**>(s) = new F(std::forward<G>(g));
  }
};

}  // namespace detail

// alignas(8): the ready queue tags a future's address in its low three bits, also on wasm32.
class alignas(8) FutureBase : public RefCounted, public detail::SlabAllocated {
  // Declared first so that they fill the tail padding after RefCounted's count.
 protected:
  bool is_task_ = false;
  bool log_traceback_ = false;

 private:
  FutureState state_ = FutureState::pending;

 protected:
  bool rechecks_on_wake_ = false;  // see rechecks_on_wake()

 public:
  explicit FutureBase(EventLoop& loop);
  ~FutureBase() override;

  bool done() const noexcept { return state_ != FutureState::pending; }
  bool cancelled() const noexcept { return state_ == FutureState::cancelled; }
  FutureState state() const noexcept { return state_; }
  // Whether it finished with an exception, without marking the exception retrieved (for
  // introspection; asyncio's exception() does mark it).
  bool failed() const noexcept { return state_ == FutureState::finished && bool(exception_); }
  // Cancels a pending future (callbacks are scheduled); false if it was already done.
  virtual bool cancel(std::string message = {});
  // The exception (null if it finished with a result). CancelledError if cancelled,
  // InvalidStateError if not done.
  std::exception_ptr exception();
  // Throws what result() would throw (CancelledError, InvalidStateError, the exception).
  void check_result() {
    if (EDDY_LIKELY(state_ == FutureState::finished && !exception_)) {
      log_traceback_ = false;
      return;
    }
    check_result_slow();
  }
  void set_exception(std::exception_ptr exception);
  EventLoop& get_loop() const noexcept { return *loop_; }
  const std::string& cancel_message() const noexcept {
    return rare_ ? rare_->cancel_message : detail::kNoString;
  }
  bool is_task() const noexcept { return is_task_; }
  // A one-line description, as asyncio's repr: <Future finished result=...> etc.
  virtual std::string describe() const;
  // describe()'s text when it is a fixed one (a plain future with no exception to show), else
  // null: the inspector points at it instead of building a copy for every snapshot.
  const char* fixed_description() const noexcept;

  // Done callbacks receive this future. They run through call_soon once it is done (at once
  // through call_soon if it already is).
  template <class F, class Invoke>
  void add_done_callback_as(F&& callback);
  // Removes every callback equal to `callback` (function pointers and equality-comparable
  // callables); returns how many were removed.
  template <class F>
  std::size_t remove_done_callback(const F& callback);
  // Used by Task: wakes `task` when this future is done.
  void add_task_wakeup(TaskBase* task);

  // Completion primitives for subclasses and for Future<T> (the value was already stored).
  void finish_with_result();
  void finish_cancelled(std::string message);
  void finish_with_exception(std::exception_ptr e);
  void* value_slot() const noexcept { return slot_; }
  // Destroys a done callback after its handle ran (or was dropped).
  static void release_callback(detail::DoneCallback* cb) noexcept;
  // For the loop's ready queue, which runs the first done callback straight from the future
  // (detail::ReadyEntry::first_done_callback): its name, calling it, and letting it go.
  const char* first_callback_name() const noexcept { return first_.ops->name(first_.storage); }
  void run_first_callback() { first_.ops->invoke(first_.storage, *this); }
  void release_first_callback() noexcept {
    release_callback(&first_);
    release();  // the entry's reference
  }
  // InvalidStateError if done; RuntimeError if the loop is closed, or for a task.
  void check_settable(const char* method) const;

  // A waiter whose condition can be undone between its wake-up and its task's step (a queue's
  // getter: another task may take the item first). The woken task then calls wait_again()
  // before it resumes, and stays suspended if it returns true, as asyncio's `while
  // self.empty(): await getter` loop would wait again without the awaiting frame noticing.
  bool rechecks_on_wake() const noexcept { return rechecks_on_wake_; }
  virtual bool wait_again(TaskBase& task);
  // For a waiter made by one of Eddy's calls that waits in the awaiting frame, with no coroutine
  // of its own (a queue's get): the call's name and where in Eddy it waits. Await chains show it
  // as the frame the call would have had, as asyncio's stacks show Queue.get. Null otherwise.
  virtual const SourceLocation* waiting_call() const noexcept { return nullptr; }

 protected:
  void destroy_self() noexcept override;
  // For a task whose loop closed under it: cancelled, callbacks dropped, nothing scheduled.
  void mark_abandoned() noexcept;
  // Makes a future that finished with a result, and has no callbacks left, pending again (for
  // wait_again; the subclass empties its value slot).
  void reset_to_pending() noexcept;
  // Whether reset_to_pending() may be called.
  bool can_reset_to_pending() const noexcept {
    return state_ == FutureState::finished && !exception_ && !first_.ops && !first_.scheduled &&
           !more_;
  }
  void* slot_ = nullptr;
  detail::RareFields& rare() const {
    if (!rare_) rare_ = std::make_unique<detail::RareFields>();
    return *rare_;
  }
  const detail::RareFields* rare_fields() const noexcept { return rare_.get(); }

 private:
  void check_result_slow();
  void set_cancel_message(std::string message);
  void schedule_callbacks();
  void drop_pending_callbacks() noexcept;
  void schedule_one(detail::DoneCallback* cb);
  void append_callback(detail::DoneCallback* cb);
  detail::DoneCallback* new_callback_slot();
  std::size_t remove_matching(const void* type_key, const void* value);

  LoopRef loop_;
  detail::ExceptionSlot exception_;
  mutable std::unique_ptr<detail::RareFields> rare_;
  detail::DoneCallback first_;
  detail::DoneCallbackNode* more_ = nullptr;  // further callbacks, in order
};

// Storage for a plain Future's value.
template <class T>
class FutureImpl final : public FutureBase {
 public:
  explicit FutureImpl(EventLoop& loop) : FutureBase(loop) { slot_ = &value_; }
  std::string describe() const override { return FutureBase::describe(); }

 private:
  detail::Slot<T> value_;
};

template <class T>
class Future {
 public:
  using value_type = T;
  Future() noexcept = default;
  explicit Future(Ref<FutureBase> state) noexcept : state_(std::move(state)) {}

  bool done() const noexcept { return state_->done(); }
  bool cancelled() const noexcept { return state_->cancelled(); }
  bool cancel(std::string message = {}) { return state_->cancel(std::move(message)); }
  std::exception_ptr exception() { return state_->exception(); }
  EventLoop& get_loop() const noexcept { return state_->get_loop(); }

  // The result; throws the exception, CancelledError, or InvalidStateError if not done.
  std::add_lvalue_reference_t<T> result() const {
    state_->check_result();
    if constexpr (!std::is_void_v<T>) return **slot();
  }
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  void set_result(U value) {
    state_->check_settable("set_result");
    slot()->emplace(std::move(value));
    state_->finish_with_result();
  }
  template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
  void set_result() {
    state_->check_settable("set_result");
    slot()->emplace();
    state_->finish_with_result();
  }
  void set_exception(std::exception_ptr e) { state_->set_exception(std::move(e)); }
  template <class E, class = std::enable_if_t<!std::is_same_v<std::decay_t<E>, std::exception_ptr>>>
  void set_exception(E&& e) {
    state_->set_exception(std::make_exception_ptr(std::forward<E>(e)));
  }

  // `callback` is called (through call_soon) with this Future<T>.
  template <class F>
  void add_done_callback(F&& callback) {
    state_->template add_done_callback_as<std::decay_t<F>, Invoker<std::decay_t<F>>>(
        std::forward<F>(callback));
  }
  template <class F>
  std::size_t remove_done_callback(const F& callback) {
    return state_->remove_done_callback(callback);
  }

  FutureBase* base() const noexcept { return state_.get(); }
  const Ref<FutureBase>& state() const noexcept { return state_; }
  // Hands over this handle's reference (it is left empty, as a moved-from Future).
  Ref<FutureBase> take_state() && noexcept { return std::move(state_); }
  explicit operator bool() const noexcept { return bool(state_); }
  friend bool operator==(const Future& a, const Future& b) noexcept {
    return a.state_ == b.state_;
  }

 protected:
  template <class F>
  struct Invoker {
    static void call(F& f, FutureBase& fb) { f(Future<T>(Ref<FutureBase>(&fb))); }
  };
  detail::Slot<T>* slot() const noexcept {
    return static_cast<detail::Slot<T>*>(state_->value_slot());
  }
  Ref<FutureBase> state_;
};

// ---- FutureBase templates -------------------------------------------------------------------------

template <class F, class Invoke>
void FutureBase::add_done_callback_as(F&& callback) {
  using Ops = detail::DoneCallbackOpsFor<std::decay_t<F>, Invoke>;
  detail::DoneCallback* cb = new_callback_slot();
  Ops::construct(cb->storage, std::forward<F>(callback));
  cb->ops = &Ops::ops;
  append_callback(cb);
}

template <class F>
std::size_t FutureBase::remove_done_callback(const F& callback) {
  static_assert(requires(const F& a, const F& b) { bool(a == b); },
                "remove_done_callback needs a function pointer or an equality-comparable "
                "callable (lambdas cannot be compared)");
  const std::decay_t<F> value = callback;
  return remove_matching(&detail::TypeKey<std::decay_t<F>>::key, &value);
}

template <class T>
Future<T> EventLoop::create_future() {  // a closed loop too, as asyncio: only scheduling fails
  return Future<T>(Ref<FutureBase>(new FutureImpl<T>(*this)));
}

namespace detail {
// The waiter of one of Eddy's calls awaited without a coroutine frame (QuickOps' one wait:
// Lock::acquire, StreamReader::read, ...): a Future<void> that names the call, so await chains
// show it between the caller and the future (FutureBase::waiting_call). `call` is static (null:
// unnamed, for a subclass whose waits the awaiting frame names itself).
class CallWaiter : public FutureBase {
 public:
  CallWaiter(EventLoop& loop, const SourceLocation* call) : FutureBase(loop), call_(call) {
    slot_ = &value_;
  }
  const SourceLocation* waiting_call() const noexcept override { return call_; }
  // Makes this waiter pending again if it finished with a result and nobody but the caller holds
  // it, so that the caller's next wait reuses it instead of allocating another (a stream reader
  // waits once per read). False, and unchanged, otherwise: cancelled, failed, or still referenced
  // by a task, a callback or an inspector snapshot.
  bool rearm_if_unused() noexcept {
    if (ref_count() != 1 || !can_reset_to_pending()) return false;
    rearm();
    return true;
  }

 protected:
  // For wait_again: pending again, its (empty) result dropped.
  void rearm() noexcept {
    value_.reset();
    reset_to_pending();
  }

 private:
  Slot<void> value_;
  const SourceLocation* call_;
};
inline Future<void> make_call_waiter(EventLoop& loop, const SourceLocation& call) {
  return Future<void>(Ref<FutureBase>(new CallWaiter(loop, &call)));
}

// asyncio's futures._set_result_unless_cancelled as a timer callback: wakes what awaits `future`
// (sleep's and wait's timers) unless it is done already; named `name` in the inspector.
struct SetResultUnlessDone {
  Future<void> future;
  const char* name;
  void operator()() {
    if (!future.done()) future.set_result();
  }
  const char* callback_name() const noexcept { return name; }
};
}  // namespace detail

}  // namespace eddy
