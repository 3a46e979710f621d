// Executors for loop.run_in_executor (asyncio's concurrent.futures executors). The loop never
// blocks on them: a job's result comes back through the loop's thread-safe inbox and completes an
// asyncio-style Future on the loop's thread. ThreadPoolExecutor is the default on native targets.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "eddy/detail/callback.hpp"
#include "eddy/future.hpp"

namespace eddy {

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `job` on another thread. RuntimeError after shutdown().
  virtual void submit(detail::UniqueFunction job) = 0;
  // Stops accepting jobs; with `wait`, returns once every accepted job has finished. With
  // `cancel_queued`, jobs that have not started are dropped.
  virtual void shutdown(bool wait = true, bool cancel_queued = false) = 0;
  // Stops accepting jobs without waiting. Returns true if this executor then calls `on_finished`
  // once, on any thread, when every job it accepted has finished (its threads may still be
  // returning: shutdown(wait=true) joins them at once). False if it cannot tell: only
  // shutdown(wait=true) waits for it. The loop waits for the first kind without a thread of its own.
  virtual bool shutdown_then(detail::UniqueFunction on_finished);
};

// concurrent.futures.ThreadPoolExecutor: threads are started on demand up to max_workers.
class ThreadPoolExecutor final : public Executor {
 public:
  // 0 picks asyncio's default: min(32, hardware threads + 4).
  explicit ThreadPoolExecutor(std::size_t max_workers = 0);
  ~ThreadPoolExecutor() override;
  void submit(detail::UniqueFunction job) override;
  void shutdown(bool wait = true, bool cancel_queued = false) override;
  bool shutdown_then(detail::UniqueFunction on_finished) override;
  std::size_t max_workers() const noexcept { return max_workers_; }
  std::size_t thread_count() const;

 private:
  void worker();
  const std::size_t max_workers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<detail::UniqueFunction> queue_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  std::size_t working_ = 0;  // workers that have not returned
  bool shutdown_ = false;
  std::vector<detail::UniqueFunction> on_finished_;
};

namespace detail {

// Loop-side bookkeeping of run_in_executor jobs (defined in executor.cpp).
std::uint64_t register_executor_job(EventLoop& loop, Ref<FutureBase> future);
void unregister_executor_job(EventLoop& loop, std::uint64_t id) noexcept;
// Called on any thread: runs `fn` on the loop's thread. Dropped silently if the loop has closed.
void post_to_loop(const std::shared_ptr<Inbox>& inbox, UniqueFunction fn);
// Called on a worker thread: hands `complete` to the loop, which calls it with the job's future
// if that future still waits for it. Dropped silently if the loop has closed.
void post_executor_result(const std::shared_ptr<Inbox>& inbox, EventLoop* loop, std::uint64_t id,
                          std::function<void(FutureBase&)> complete);

enum class ExecutorJobState : std::uint8_t { queued, running, cancelled };

template <class R>
struct ExecutorOutcome {
  Slot<R> value;
  std::exception_ptr error;
};

}  // namespace detail

template <class F>
auto EventLoop::run_in_executor(std::shared_ptr<Executor> executor, F&& fn) {
  using Fn = std::decay_t<F>;
  using R = std::invoke_result_t<Fn&>;
  check_closed();
  if (debug_) check_thread("run_in_executor");
  // Also with an executor of the caller's: where the build has no threads its workers could not
  // start (std::system_error from std::thread), and the capability table says so.
  capabilities_.require("run_in_executor");
  if (!executor) executor = default_executor();
  Future<R> future = create_future<R>();
  const std::uint64_t id = detail::register_executor_job(*this, future.state());
  // Cancelling the future before a worker takes the job means it never runs, as asyncio's
  // cancel of the concurrent future it wraps.
  auto claim =
      std::make_shared<std::atomic<detail::ExecutorJobState>>(detail::ExecutorJobState::queued);
  try {
    executor->submit([fn = Fn(std::forward<F>(fn)), inbox = inbox_, loop = this, id,
                      claim]() mutable {
      auto queued = detail::ExecutorJobState::queued;
      if (!claim->compare_exchange_strong(queued, detail::ExecutorJobState::running)) return;
      auto outcome = std::make_shared<detail::ExecutorOutcome<R>>();
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
          outcome->value.emplace();
        } else {
          outcome->value.emplace(fn());
        }
      } catch (...) {
        outcome->error = std::current_exception();
      }
      // The outcome moves to the loop's side: its exception is then released on the loop's
      // thread only (libstdc++'s exception_ptr count is invisible to TSan).
      detail::post_executor_result(inbox, loop, id, [outcome = std::move(outcome)](FutureBase& f) {
        if (outcome->error) {
          f.set_exception(outcome->error);
        } else {
          *static_cast<detail::Slot<R>*>(f.value_slot()) = std::move(outcome->value);
          f.finish_with_result();
        }
      });
    });
  } catch (...) {
    detail::unregister_executor_job(*this, id);
    throw;
  }
  future.add_done_callback([this, id, claim](Future<R> f) {
    auto queued = detail::ExecutorJobState::queued;
    if (f.cancelled() &&
        claim->compare_exchange_strong(queued, detail::ExecutorJobState::cancelled))
      detail::unregister_executor_job(*this, id);  // no result will come back
  });
  return future;
}

}  // namespace eddy
