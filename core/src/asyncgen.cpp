// The stepping of async generators and their tracking by the loop. A step resumes the
// generator's frame inside the consumer's task; the frame hands control back to the consumer at
// a co_yield or when it finishes, or leaves it suspended when it awaits a future (the task then
// resumes the generator's frame directly, as it does for an inline coroutine).
#include "eddy/asyncgen.hpp"

#include "eddy/combinators.hpp"
#include "eddy/log.hpp"
#include "exception_is.hpp"

namespace eddy {
namespace detail {

AsyncGenPromiseBase::~AsyncGenPromiseBase() {
  if (loop) loop->unregister_asyncgen(this);
}

std::string AsyncGenPromiseBase::describe() const {
  return std::string("<async_generator ") + (*function() ? function() : "(not started)") + ">";
}

void AsyncGenPromiseBase::YieldAwaiter::await_suspend(coro::coroutine_handle<>) noexcept {
  p->has_value = true;
  p->running = false;
  // Started from the consumer's co_await: it sees `running` false and continues by itself.
  if (p->inline_start) return;
  p->parent_handle.resume();  // nothing of this frame may be touched after this line
}

void AsyncGenPromiseBase::YieldAwaiter::await_resume() {
  switch (p->resume_with) {
    case Resume::close:
      throw GeneratorExit();
    case Resume::raise:
      std::rethrow_exception(std::exchange(p->to_raise, nullptr));
    case Resume::next:
      break;
  }
}

void AsyncGenPromiseBase::FinalAwaiter::finish(AsyncGenPromiseBase& p) noexcept {
  p.has_value = false;
  p.running = false;
  if (p.loop) p.loop->unregister_asyncgen(&p);  // nothing left to close
  if (p.inline_start) return;
  p.parent_handle.resume();
}

namespace {

const char* step_name(AsyncGenPromiseBase::Resume how) {
  switch (how) {
    case AsyncGenPromiseBase::Resume::close:
      return "aclose(): ";
    case AsyncGenPromiseBase::Resume::raise:
      return "athrow(): ";
    default:
      return "anext(): ";
  }
}

bool is_generator_exit(const std::exception_ptr& e) {
  return detail::exception_is<GeneratorExit>(e);
}

}  // namespace

bool AsyncGenStep::await_ready() {
  AsyncGenPromiseBase& p = *core_->promise;
  if (p.running)
    throw RuntimeError(std::string(step_name(how_)) + "asynchronous generator is already running");
  if (core_->handle.done() || p.closed_unstarted) return true;  // finished
  if (!p.started && how_ != AsyncGenPromiseBase::Resume::next) {
    // Closing or throwing into a generator that never ran: it is closed without running.
    p.closed_unstarted = true;
    unstarted_ = true;
    return true;
  }
  return false;
}

bool AsyncGenStep::await_suspend(coro::coroutine_handle<> h) {
  AsyncGenPromiseBase& p = *core_->promise;
  if (!consumer_->task) throw RuntimeError("an async generator was iterated outside of a Task");
  if (!p.started) {
    p.started = true;
    consumer_->task->get_loop().register_asyncgen(&p);  // asyncio's firstiter hook
  }
  p.task = consumer_->task;
  p.parent_handle = h;
  consumer_->awaiting = {AwaitRecord::Kind::coroutine, &p, where_};
  p.resume_with = how_;
  p.to_raise = to_raise_;
  p.has_value = false;
  p.running = true;
  p.inline_start = true;
  core_->handle.resume();
  p.inline_start = false;
  return p.running;  // still running: it awaits a future, and will resume us when it yields
}

bool AsyncGenStep::resume_step() {
  consumer_->awaiting.clear();
  AsyncGenPromiseBase& p = *core_->promise;
  if (p.exception) {
    std::exception_ptr e = p.exception.take();
    if (how_ == AsyncGenPromiseBase::Resume::close && is_generator_exit(e)) return false;
    std::rethrow_exception(e);
  }
  if (p.has_value) {
    if (how_ == AsyncGenPromiseBase::Resume::close)
      throw RuntimeError("async generator ignored GeneratorExit");
    return true;
  }
  // Finished. athrow into a generator that never started raises the exception given, as if
  // raised at its first line; into one already finished it does nothing (Python returns None);
  // one that finishes in this step is StopAsyncIteration, like next().
  if (unstarted_ && how_ == AsyncGenPromiseBase::Resume::raise && to_raise_)
    std::rethrow_exception(to_raise_);
  return false;
}

Coro<void> close_asyncgen(std::shared_ptr<AsyncGenCore> core) {
  AsyncGenAwaitable<AsyncGenClose> closing(std::move(core), AsyncGenPromiseBase::Resume::close);
  co_await closing;
}

namespace {

bool is_reportable(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const BaseException&) {
    return false;  // CancelledError and the like are not reported, as in asyncio
  } catch (...) {
    return true;
  }
}

void report_close_error(EventLoop& loop, const std::string& name, std::exception_ptr e) {
  ExceptionContext context("an error occurred during closing of asynchronous generator " + name,
                           std::move(e));
  loop.call_exception_handler(context);
}

// The finalizer's task: closes the generator and reports a failed cleanup by its name.
Coro<void> close_dropped(std::shared_ptr<AsyncGenCore> core) {
  const std::string name = core->promise->describe();
  std::exception_ptr error;
  try {
    co_await close_asyncgen(std::move(core));
  } catch (...) {
    error = std::current_exception();
  }
  if (error && is_reportable(error)) report_close_error(get_running_loop(), name, error);
}

}  // namespace

void finalize_asyncgen(std::shared_ptr<AsyncGenCore> core) noexcept {
  if (core.use_count() != 1) return;  // a step or a closing task still holds it
  AsyncGenPromiseBase& p = *core->promise;
  if (!p.started || p.running || p.closed_unstarted || core->handle.done()) return;
  EventLoop* loop = p.loop;
  if (!loop || loop->is_closed()) return;  // the frame is destroyed without its async cleanup
  try {
    loop->create_task(close_dropped(std::move(core)));  // asyncio's finalizer hook
  } catch (...) {
  }
}

}  // namespace detail

void EventLoop::register_asyncgen(detail::AsyncGenPromiseBase* gen) noexcept {
  if (asyncgens_shutdown_called_)
    log(LogLevel::warning, "asynchronous generator " + gen->describe() +
                               " was scheduled after loop.shutdown_asyncgens() call");
  gen->loop = this;
  gen->prev_gen = nullptr;
  gen->next_gen = asyncgens_head_;
  if (asyncgens_head_) asyncgens_head_->prev_gen = gen;
  asyncgens_head_ = gen;
  ++asyncgen_count_;
}

void EventLoop::unregister_asyncgen(detail::AsyncGenPromiseBase* gen) noexcept {
  if (gen->loop != this) return;
  if (gen->prev_gen)
    gen->prev_gen->next_gen = gen->next_gen;
  else
    asyncgens_head_ = gen->next_gen;
  if (gen->next_gen) gen->next_gen->prev_gen = gen->prev_gen;
  gen->prev_gen = gen->next_gen = nullptr;
  gen->loop = nullptr;
  --asyncgen_count_;
}

Coro<void> EventLoop::shutdown_asyncgens() {
  asyncgens_shutdown_called_ = true;
  std::vector<std::shared_ptr<detail::AsyncGenCore>> closing;
  for (auto* g = asyncgens_head_; g; g = g->next_gen)
    if (auto core = g->core.lock()) closing.push_back(std::move(core));
  while (asyncgens_head_) unregister_asyncgen(asyncgens_head_);  // asyncio clears its set too
  if (closing.empty()) co_return;
  std::vector<std::string> names;
  std::vector<Task<void>> closers;
  for (auto& core : closing) {
    names.push_back(core->promise->describe());
    closers.push_back(create_task(detail::close_asyncgen(core)));
  }
  closing.clear();
  auto results = co_await gather(return_exceptions, std::move(closers));
  for (std::size_t i = 0; i < results.size(); ++i) {
    std::exception_ptr e = results[i].exception();
    if (e && detail::is_reportable(e)) detail::report_close_error(*this, names[i], e);
  }
}

}  // namespace eddy
