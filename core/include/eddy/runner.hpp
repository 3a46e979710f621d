// eddy::run(main) and eddy::Runner: the entry points Python 3.12+ recommends (asyncio.run,
// asyncio.Runner). A Runner owns a fresh loop; close() cancels the tasks still pending, waits for
// them, shuts the default executor down and closes the loop.
//
//   int main() { return eddy::run(async_main()); }
#pragma once

#include <functional>
#include <optional>

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
  // RuntimeError when called from a running loop or after close().
  template <class T>
  T run(Coro<T> coro) {
    EventLoop& loop = prepare_run();
    return loop.run_until_complete(loop.create_task(std::move(coro)));
  }
  // Cancels remaining tasks, shuts down the default executor, closes the loop. Idempotent.
  void close();
  EventLoop& get_loop();

 private:
  EventLoop& prepare_run();
  RunOptions options_;
  LoopRef loop_;
  bool closed_ = false;
  bool set_event_loop_ = false;  // this runner made its loop the thread's current one
};

template <class T>
T run(Coro<T> main, RunOptions options = {}) {
  Runner runner(std::move(options));
  return runner.run(std::move(main));
}

}  // namespace eddy
