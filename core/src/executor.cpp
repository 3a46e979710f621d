// ThreadPoolExecutor and the loop side of run_in_executor: results travel back through the loop's
// inbox and are matched to their Future by job id, so a result arriving after close() is dropped
// without touching the (possibly gone) loop.
#include "eddy/executor.hpp"

#include <algorithm>

namespace eddy {

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers)
    : max_workers_(max_workers ? max_workers
                               : std::min<std::size_t>(32, std::thread::hardware_concurrency() + 4)) {
}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown(/*wait=*/true); }

void ThreadPoolExecutor::submit(detail::UniqueFunction job) {
  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) throw RuntimeError("cannot schedule new futures after shutdown");
  queue_.push_back(std::move(job));
  if (idle_ == 0 && threads_.size() < max_workers_) {
    threads_.emplace_back([this] { worker(); });
    ++working_;
  } else {
    cv_.notify_one();
  }
}

void ThreadPoolExecutor::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    while (queue_.empty() && !shutdown_) {
      ++idle_;
      cv_.wait(lock);
      --idle_;
    }
    if (queue_.empty()) {  // shut down and drained
      if (--working_ == 0 && !on_finished_.empty()) {
        std::vector<detail::UniqueFunction> finished = std::move(on_finished_);
        lock.unlock();
        for (auto& f : finished) f();
      }
      return;
    }
    detail::UniqueFunction job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    job();
    job = {};
    lock.lock();
  }
}

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_queued) {
  std::vector<std::thread> threads;
  std::deque<detail::UniqueFunction> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    if (cancel_queued) dropped.swap(queue_);
    cv_.notify_all();
    if (wait) threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

bool ThreadPoolExecutor::shutdown_then(detail::UniqueFunction on_finished) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    cv_.notify_all();
    if (working_ != 0) {
      on_finished_.push_back(std::move(on_finished));
      return true;
    }
  }
  on_finished();
  return true;
}

bool Executor::shutdown_then(detail::UniqueFunction) {
  return false;
}

std::size_t ThreadPoolExecutor::thread_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

namespace detail {

std::uint64_t register_executor_job(EventLoop& loop, Ref<FutureBase> future) {
  return loop.add_executor_job(std::move(future));
}

void unregister_executor_job(EventLoop& loop, std::uint64_t id) noexcept {
  (void)loop.take_executor_job(id);
}

void post_executor_result(const std::shared_ptr<Inbox>& inbox, EventLoop* loop, std::uint64_t id,
                          std::function<void(FutureBase&)> complete) {
  post_to_loop(inbox, [loop, id, complete = std::move(complete)] {
    Ref<FutureBase> f = loop->take_executor_job(id);
    if (f && !f->done()) complete(*f);  // a cancelled future ignores the late result
  });
}

void post_to_loop(const std::shared_ptr<Inbox>& inbox, UniqueFunction fn) {
  auto deliver = [fn = std::move(fn)]() mutable { fn(); };
  using Ops = CallbackOpsFor<decltype(deliver)>;
  HandleRecord* r = new_shared_record(__FILE__, __LINE__);
  Ops::construct(r->storage, std::move(deliver));
  r->ops = &Ops::ops;
  if (!inbox->post(r)) release_handle(r);
}

}  // namespace detail

std::shared_ptr<Executor> Backend::make_default_executor() {
  return std::make_shared<ThreadPoolExecutor>();
}

}  // namespace eddy
