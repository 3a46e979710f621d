// Running Eddy from the host's event loop (a browser page, or Node), the non-blocking alternative
// to run_until_complete: ready work runs in batches from one host task (MessageChannel in a page,
// setImmediate in Node), one host timer waits for the nearest deadline, and nothing runs when
// nothing is due.
//
//   eddy::Coro<int> app();
//   int main() { eddy::wasm::run_main(app()); }   // JS: `await Module.eddyResult` -> app's result
#pragma once

#include <cstdint>

#include "eddy/eddy.hpp"

namespace eddy::wasm {

struct DriverStats {
  std::uint64_t host_tasks = 0;   // immediate host tasks that ran loop passes
  std::uint64_t host_timers = 0;  // host timers that fired
  std::uint64_t passes = 0;       // loop passes run by the driver
};

// Starts driving `loop` from the host's event loop (one loop at a time).
void drive(EventLoop& loop);
// Stops driving it (pending host callbacks become no-ops).
void stop_driving();
DriverStats driver_stats();

// Creates a loop, drives it and runs `main` as its first task. `Module.eddyResult` is a Promise
// that resolves with main's result or rejects with its error message; the loop is closed then.
void run_main(Coro<int> main);

}  // namespace eddy::wasm
