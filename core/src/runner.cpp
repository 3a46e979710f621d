// Runner: asyncio.Runner's lifecycle (lazy loop creation, cancel-all at close).
#include "eddy/runner.hpp"

#include "eddy/log.hpp"

namespace eddy {

namespace {

// Cancels every pending task and runs the loop until all of them have finished
// (asyncio.runners._cancel_all_tasks).
void cancel_all_tasks(EventLoop& loop) {
  std::vector<Ref<TaskBase>> tasks = loop.all_tasks();
  if (tasks.empty()) return;
  for (auto& t : tasks) t->cancel();
  Future<void> all_done = loop.create_future<void>();
  auto remaining = std::make_shared<std::size_t>(tasks.size());
  for (auto& t : tasks) {
    Task<void>(t).add_done_callback([remaining, all_done](Task<void>) mutable {
      if (--*remaining == 0 && !all_done.done()) all_done.set_result();
    });
  }
  loop.run_until_complete(all_done);
  for (auto& t : tasks) {
    if (t->cancelled()) continue;
    if (std::exception_ptr e = t->exception()) {
      ExceptionContext ctx("unhandled exception during eddy::run() shutdown", e);
      ctx.task = t;
      loop.call_exception_handler(ctx);
    }
  }
}

}  // namespace

Runner::Runner(RunOptions options) : options_(std::move(options)) {}

Runner::~Runner() {
  try {
    close();
  } catch (const std::exception& e) {
    log(LogLevel::error, std::string("Runner::close failed: ") + e.what());
  }
}

EventLoop& Runner::prepare_run() {
  if (closed_) throw RuntimeError("Runner is closed");
  if (running_loop()) throw RuntimeError("Runner.run() cannot be called from a running event loop");
  return get_loop();
}

EventLoop& Runner::get_loop() {
  if (closed_) throw RuntimeError("Runner is closed");
  if (!loop_) {
    loop_ = options_.loop_factory ? options_.loop_factory() : new_event_loop();
    if (options_.debug) loop_->set_debug(*options_.debug);
  }
  return *loop_;
}

void Runner::close() {
  if (closed_) return;
  closed_ = true;
  if (!loop_) return;
  LoopRef loop = std::move(loop_);
  try {
    cancel_all_tasks(*loop);
    loop->run_until_complete(loop->shutdown_asyncgens());
    loop->run_until_complete(loop->shutdown_default_executor(300.0));
  } catch (...) {
    loop->close();
    throw;
  }
  loop->close();
}

}  // namespace eddy
