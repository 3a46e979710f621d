// The inspector's demo workload, written against Eddy's public API only, so the same code runs on
// libuv (real TCP on 127.0.0.1), on the virtual network (the virtual-clock loop, WebAssembly):
// an echo server with chatty clients, a fast writer into a slow reader (its write buffer crosses
// the high water mark, so pause_writing/resume_writing happen), a worker pool behind a Queue,
// bursts of call_soon callbacks, and a timer wheel with some cancelled timers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "eddy/eddy.hpp"

namespace eddy::inspector {

struct DemoOptions {
  int echo_clients = 3;
  int workers = 4;
  std::size_t chunk = 16 * 1024;  // the fast writer's chunk
  double slow_read_pause = 0.02;  // the slow reader rests this long after each read
  std::size_t burst = 200;        // call_soon callbacks per tick
  double tick = 0.05;
  bool raise_exceptions = false;  // a failing callback every few seconds
  bool slow_callbacks = false;    // a 120 ms callback every few seconds (real clocks only)
};

struct DemoStats {
  std::uint64_t echoed = 0, written = 0, read_slowly = 0, jobs = 0, ticks = 0;
  std::uint64_t pauses = 0, resumes = 0;
};

// Runs until `stop` is done (set its result to end the demo); everything is closed on return.
Coro<void> run_demo(Future<void> stop, DemoOptions options = {},
                    std::shared_ptr<DemoStats> stats = nullptr);

}  // namespace eddy::inspector
