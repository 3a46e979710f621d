// Async generators: a coroutine that both awaits (co_await) and produces values (co_yield),
// consumed with co_await, as Python's `async def ... yield`. Like asyncio, the loop tracks every
// generator from its first iteration, so shutdown_asyncgens() (and eddy::run / Runner at exit)
// can close the ones left suspended at a yield; a generator dropped while suspended there is
// closed by a task on its loop (asyncio's finalizer hook).
//
//   eddy::AsyncGenerator<int> ticks(int n) {
//     for (int i = 0; i < n; ++i) { co_await eddy::sleep(0.1); co_yield i; }
//   }
//   auto gen = ticks(3);
//   while (auto v = co_await gen.next()) use(*v);   // nullopt: StopAsyncIteration
//   co_await gen.aclose();
//
// A generator declared AsyncGenerator<T, S> also takes values in, as Python's asend: its
// `co_yield` gives the std::optional<S> that asend delivered, or nullopt (None) after next().
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "eddy/task.hpp"

namespace eddy {

// Python's GeneratorExit: raised at the yield where aclose() finds a generator. A BaseException,
// so `catch (const std::exception&)` does not swallow it.
class GeneratorExit : public BaseException {
 public:
  GeneratorExit() : BaseException("GeneratorExit") {}
};

namespace detail {

// Per-generator state shared by every AsyncGenerator<T> promise.
class AsyncGenPromiseBase : public PromiseBase {
 public:
  enum class Resume : unsigned char { next, close, raise };
  ~AsyncGenPromiseBase();

  Resume resume_with = Resume::next;
  std::exception_ptr to_raise;  // for Resume::raise (athrow)
  bool started = false;         // iterated at least once
  bool running = false;         // a next/athrow/aclose is in progress
  bool has_value = false;       // the last step stopped at a co_yield
  bool closed_unstarted = false;
  EventLoop* loop = nullptr;  // registered with this loop (first iteration to close)
  AsyncGenPromiseBase* prev_gen = nullptr;
  AsyncGenPromiseBase* next_gen = nullptr;
  std::weak_ptr<struct AsyncGenCore> core;  // lets the loop keep the frame alive to close it

  // co_yield: hands the value to the consumer and suspends until the next step.
  struct YieldAwaiter {
    AsyncGenPromiseBase* p;
    bool await_ready() noexcept { return false; }
    void await_suspend(coro::coroutine_handle<>) noexcept;
    void await_resume();  // GeneratorExit for aclose, the exception for athrow
  };
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    void await_suspend(coro::coroutine_handle<P> h) noexcept {
      finish(h.promise());
    }
    void await_resume() noexcept {}
    static void finish(AsyncGenPromiseBase& p) noexcept;
  };
  std::string describe() const;
};

// The promise parts that depend on the value types: the value of the last co_yield, and the value
// the step that resumes the generator sends to it.
template <class T>
struct AsyncGenValuePromise : AsyncGenPromiseBase {
  std::optional<T> current;
};
template <class T, class Send>
struct AsyncGenSendPromise : AsyncGenValuePromise<T> {
  std::optional<Send> sent;
  // co_yield in a generator that takes values: the value asend sent, nullopt after next().
  struct SendingYieldAwaiter : AsyncGenPromiseBase::YieldAwaiter {
    std::optional<Send> await_resume() {
      // Raises GeneratorExit for aclose, the exception for athrow.
      AsyncGenPromiseBase::YieldAwaiter::await_resume();
      return std::exchange(static_cast<AsyncGenSendPromise*>(this->p)->sent, std::nullopt);
    }
  };
};

// Owns a generator's frame; shared by the AsyncGenerator, a step in progress and the loop's
// closing task, so the frame lives as long as any of them needs it.
struct AsyncGenCore {
  coro::coroutine_handle<> handle;
  AsyncGenPromiseBase* promise;
  AsyncGenCore(coro::coroutine_handle<> h, AsyncGenPromiseBase* p) noexcept
      : handle(h), promise(p) {}
  AsyncGenCore(const AsyncGenCore&) = delete;
  AsyncGenCore& operator=(const AsyncGenCore&) = delete;
  ~AsyncGenCore() { handle.destroy(); }
};

// One step of a generator (next, athrow or aclose), awaited from a coroutine of a task.
class AsyncGenStep {
 public:
  AsyncGenStep(std::shared_ptr<AsyncGenCore> core, AsyncGenPromiseBase::Resume how,
               std::exception_ptr to_raise, PromiseBase* consumer, SourceLocation where) noexcept
      : core_(std::move(core)),
        how_(how),
        to_raise_(std::move(to_raise)),
        consumer_(consumer),
        where_(where) {}
  bool await_ready();
  bool await_suspend(coro::coroutine_handle<> h);
  // True if the step stopped at a co_yield (its value is in the promise); false when finished.
  bool resume_step();

 protected:
  std::shared_ptr<AsyncGenCore> core_;
  AsyncGenPromiseBase::Resume how_;
  std::exception_ptr to_raise_;
  PromiseBase* consumer_;
  SourceLocation where_;
  bool unstarted_ = false;  // this athrow or aclose finished a generator that never started
};

template <class T>
class AsyncGenNext : public AsyncGenStep {
 public:
  using AsyncGenStep::AsyncGenStep;
  std::optional<T> await_resume();
};

// asend(value): next() that first delivers `value` to the co_yield it resumes.
template <class T, class Send>
class AsyncGenSend : public AsyncGenNext<T> {
 public:
  AsyncGenSend(std::shared_ptr<AsyncGenCore> core, std::optional<Send> value, PromiseBase* consumer,
               SourceLocation where) noexcept
      : AsyncGenNext<T>(std::move(core), AsyncGenPromiseBase::Resume::next, nullptr, consumer,
                        where),
        value_(std::move(value)) {}
  bool await_ready() {
    if (AsyncGenStep::await_ready()) return true;  // finished: StopAsyncIteration
    // A generator that has not started has no co_yield to receive it; it stays unstarted.
    if (value_ && !this->core_->promise->started)
      throw TypeError("can't send non-None value to a just-started async generator");
    return false;
  }
  bool await_suspend(coro::coroutine_handle<> h) {
    static_cast<AsyncGenSendPromise<T, Send>&>(*this->core_->promise).sent = std::move(value_);
    return AsyncGenStep::await_suspend(h);
  }

 private:
  std::optional<Send> value_;
};

class AsyncGenClose : public AsyncGenStep {
 public:
  using AsyncGenStep::AsyncGenStep;
  void await_resume() { resume_step(); }
};

// What gen.next() / athrow() / aclose() return: awaitable once, by a coroutine of a task.
template <class Step>
class [[nodiscard]] AsyncGenAwaitable {
 public:
  using eddy_awaitable = void;
  AsyncGenAwaitable(std::shared_ptr<AsyncGenCore> core, AsyncGenPromiseBase::Resume how,
                    std::exception_ptr to_raise = nullptr) noexcept
      : core_(std::move(core)), how_(how), to_raise_(std::move(to_raise)) {}
  Step make_awaiter(PromiseBase* consumer, SourceLocation where) {
    if (!core_) throw RuntimeError("this async generator has been moved from");
    return Step(std::move(core_), how_, std::move(to_raise_), consumer, where);
  }

 private:
  std::shared_ptr<AsyncGenCore> core_;
  AsyncGenPromiseBase::Resume how_;
  std::exception_ptr to_raise_;
};

// What gen.asend(value) returns: carries the value until the step runs.
template <class T, class Send>
class [[nodiscard]] AsyncGenSendAwaitable {
 public:
  using eddy_awaitable = void;
  AsyncGenSendAwaitable(std::shared_ptr<AsyncGenCore> core, std::optional<Send> value) noexcept
      : core_(std::move(core)), value_(std::move(value)) {}
  AsyncGenSend<T, Send> make_awaiter(PromiseBase* consumer, SourceLocation where) {
    if (!core_) throw RuntimeError("this async generator has been moved from");
    return AsyncGenSend<T, Send>(std::move(core_), std::move(value_), consumer, where);
  }

 private:
  std::shared_ptr<AsyncGenCore> core_;
  std::optional<Send> value_;
};

// Closes a generator from a task of its own (the finalizer and shutdown_asyncgens use it).
Coro<void> close_asyncgen(std::shared_ptr<AsyncGenCore> core);
// Called by ~AsyncGenerator for the last owner: schedules the close of a generator suspended at
// a yield on its loop, if that loop is still open.
void finalize_asyncgen(std::shared_ptr<AsyncGenCore> core) noexcept;

}  // namespace detail

// An async generator yielding T and, unless Send is void, taking Send values in. Move-only. The
// steps (`next`, `asend`, `athrow`, `aclose`) are awaited from coroutines; two steps at once raise
// RuntimeError, as in Python.
template <class T, class Send = void>
class [[nodiscard]] AsyncGenerator {
  using PromiseParts = std::conditional_t<std::is_void_v<Send>, detail::AsyncGenValuePromise<T>,
                                          detail::AsyncGenSendPromise<T, Send>>;

 public:
  using value_type = T;
  using send_type = Send;
  struct promise_type : PromiseParts {
    AsyncGenerator get_return_object() {
      auto h = coro::coroutine_handle<promise_type>::from_promise(*this);
      auto core = std::make_shared<detail::AsyncGenCore>(h, this);
      this->core = core;
      return AsyncGenerator(std::move(core));
    }
    coro::suspend_always initial_suspend() noexcept { return {}; }
    detail::AsyncGenPromiseBase::FinalAwaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    template <class U>
    requires std::is_constructible_v<T, U&&>
    auto yield_value(U&& value, SourceLocation where = SourceLocation::current()) {
      this->learn_function(where);  // a co_yield names it too
      this->current.emplace(std::forward<U>(value));
      if constexpr (std::is_void_v<Send>)
        return detail::AsyncGenPromiseBase::YieldAwaiter{this};
      else
        return typename PromiseParts::SendingYieldAwaiter{{this}};
    }
  };

  AsyncGenerator() noexcept = default;
  AsyncGenerator(AsyncGenerator&&) noexcept = default;
  AsyncGenerator& operator=(AsyncGenerator&& o) noexcept {
    if (this != &o) {
      drop();
      core_ = std::move(o.core_);
    }
    return *this;
  }
  ~AsyncGenerator() { drop(); }

  // __anext__: the next value, or nullopt once the generator finished (StopAsyncIteration).
  // An exception escaping the generator comes out here (and the generator is finished).
  detail::AsyncGenAwaitable<detail::AsyncGenNext<T>> next() {
    return {core_, detail::AsyncGenPromiseBase::Resume::next};
  }
  // asend: resumes the generator with `value` as the result of its co_yield (nullopt is Python's
  // None: next()) and returns the next value, or nullopt. TypeError for a value sent to a
  // generator that has not started, which stays unstarted.
  template <class S = Send>
  requires(!std::is_void_v<S>) detail::AsyncGenSendAwaitable<T, S> asend(
      std::optional<std::type_identity_t<S>> value) {
    return {core_, std::move(value)};
  }
  // athrow: raises `error` at the suspended co_yield; returns the next value, or nullopt when the
  // generator ends (StopAsyncIteration) or had already ended (Python returns None). A generator
  // that has not started ends at once, raising `error`.
  detail::AsyncGenAwaitable<detail::AsyncGenNext<T>> athrow(std::exception_ptr error) {
    return {core_, detail::AsyncGenPromiseBase::Resume::raise, std::move(error)};
  }
  // aclose: raises GeneratorExit at the suspended co_yield and lets the generator finish (it may
  // await while cleaning up). RuntimeError if it yields again instead.
  detail::AsyncGenAwaitable<detail::AsyncGenClose> aclose() {
    return {core_, detail::AsyncGenPromiseBase::Resume::close};
  }
  // True once the generator has finished (returned, raised or was closed).
  bool finished() const noexcept {
    return !core_ || core_->handle.done() || core_->promise->closed_unstarted;
  }

 private:
  explicit AsyncGenerator(std::shared_ptr<detail::AsyncGenCore> core) noexcept
      : core_(std::move(core)) {}
  void drop() noexcept {
    if (core_) detail::finalize_asyncgen(std::move(core_));
  }
  std::shared_ptr<detail::AsyncGenCore> core_;
};

template <class T>
std::optional<T> detail::AsyncGenNext<T>::await_resume() {
  if (!resume_step()) return std::nullopt;
  auto& p = static_cast<AsyncGenValuePromise<T>&>(*core_->promise);
  std::optional<T> v = std::move(p.current);
  p.current.reset();
  return v;
}

}  // namespace eddy
