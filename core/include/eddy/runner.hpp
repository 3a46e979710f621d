// eddy::run(main) and eddy::Runner: the entry points Python 3.12+ recommends (asyncio.run,
// asyncio.Runner). A Runner owns a fresh loop; close() cancels the tasks still pending, waits for
// them, shuts the default executor down and closes the loop. As in asyncio, Ctrl-C during a run
// in the main thread cancels the main task, and the run raises KeyboardInterrupt once it is done.
//
//   int main() {
//     try {
//       return eddy::run(async_main());
//     } catch (const eddy::KeyboardInterrupt&) {
//       return 130;  // what a shell reports for Ctrl-C
//     }
//   }
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "eddy/backend.hpp"
#include "eddy/errors.hpp"
#include "eddy/policy.hpp"
#include "eddy/task.hpp"

namespace eddy {

struct RunOptions {
  std::optional<bool> debug;                // set the loop's debug mode
  std::function<LoopRef()> loop_factory;   // default: new_event_loop()
};

class Runner {
 public:
  explicit Runner(RunOptions options = {});
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Runs `coro` as a task on this runner's loop until it completes and returns its result.
  // RuntimeError when called from a running loop or after close(). In the main thread, with
  // SIGINT at its default disposition, the first SIGINT cancels the task (KeyboardInterrupt
  // once it ends cancelled) and a second one ends the process; the default is back afterwards.
  // The task's "created at" is where this was called.
  template <class T>
  T run(Coro<T> coro, SourceLocation where = SourceLocation::current()) {
    EventLoop& loop = prepare_run();
    Task<T> task = loop.create_task(std::move(coro), TaskOptions{}, where);
    std::unique_ptr<Backend::InterruptWatch> interrupt = watch_interrupt(*task.task());
    try {
      return loop.run_until_complete(task);
    } catch (const CancelledError&) {
      if (interrupt && interrupt->interrupts() > 0 && task.uncancel() == 0)
        throw KeyboardInterrupt();
      throw;
    }
  }
  // Cancels remaining tasks, shuts down the default executor, closes the loop. Idempotent.
  void close();
  EventLoop& get_loop();

 private:
  EventLoop& prepare_run();
  std::unique_ptr<Backend::InterruptWatch> watch_interrupt(TaskBase& main);
  RunOptions options_;
  LoopRef loop_;
  bool closed_ = false;
  bool set_event_loop_ = false;  // this runner made its loop the thread's current one
};

template <class T>
T run(Coro<T> main, RunOptions options = {}, SourceLocation where = SourceLocation::current()) {
  if (running_loop()) throw RuntimeError("eddy::run() cannot be called from a running event loop");
  Runner runner(std::move(options));
  return runner.run(std::move(main), where);
}

}  // namespace eddy
