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
  } catch (const BaseException& e) {  // a KeyboardInterrupt from a task's cleanup, say
    log(LogLevel::error, std::string("Runner::close failed: ") + e.what());
  }
}

EventLoop& Runner::prepare_run() {
  if (closed_) throw RuntimeError("Runner is closed");
  if (running_loop()) throw RuntimeError("Runner.run() cannot be called from a running event loop");
  EventLoop& loop = get_loop();
  loop.check_can_run("run_until_complete");  // before the main task exists
  return loop;
}

// asyncio's Runner._on_sigint: the first SIGINT cancels the main task, if not done yet.
std::unique_ptr<Backend::InterruptWatch> Runner::watch_interrupt(TaskBase& main) {
  Ref<TaskBase> task(&main);
  return loop_->backend().watch_interrupt([task] {
    if (!task->done()) task->cancel();
  });
}

EventLoop& Runner::get_loop() {
  if (closed_) throw RuntimeError("Runner is closed");
  if (!loop_) {
    if (options_.loop_factory) {
      loop_ = options_.loop_factory();
    } else {
      // As asyncio, a runner's own loop is the thread's current loop until close().
      loop_ = new_event_loop();
      set_event_loop(loop_);
      set_event_loop_ = true;
    }
    // asyncio fails on the first use of what the factory returned; a null loop must not crash.
    if (!loop_) throw TypeError("Runner: the loop factory returned no event loop");
    if (options_.debug) loop_->set_debug(*options_.debug);
  }
  return *loop_;
}

void Runner::close() {
  if (closed_ || !loop_) return;  // a runner never used stays usable, as asyncio's
  if (loop_->is_running()) {
    // Called from inside its own run: asyncio's close() cancels every task, then fails to run
    // the loop and to close it, and the runner stays as it was (a later close() works).
    for (auto& t : loop_->all_tasks()) t->cancel();
    throw RuntimeError("Cannot close a running event loop");
  }
  closed_ = true;
  LoopRef loop = std::move(loop_);
  struct Finish {
    LoopRef& loop;
    bool unset;
    ~Finish() {
      if (unset) set_event_loop(nullptr);
      loop->close();
    }
  } finish{loop, set_event_loop_};
  // A loop that cannot block (a browser page) never ran anything here: just close it.
  if (!loop->capabilities().supports("run_until_complete")) return;
  cancel_all_tasks(*loop);
  loop->run_until_complete(loop->shutdown_asyncgens());
  loop->run_until_complete(loop->shutdown_default_executor(300.0));
}

}  // namespace eddy
