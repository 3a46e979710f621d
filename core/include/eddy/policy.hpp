// asyncio's event-loop policy calls, kept as the thin compatibility layer Python 3.14 keeps:
// new_event_loop() builds a loop on this build's platform backend (libuv natively, the emulated
// selector in WebAssembly); get_event_loop() returns the running loop, else this thread's current
// one, else raises.
#pragma once

#include <memory>

#include "eddy/loop.hpp"

namespace eddy {

class EventLoopPolicy {
 public:
  virtual ~EventLoopPolicy() = default;
  // This thread's current loop; RuntimeError if none was set.
  virtual LoopRef get_event_loop();
  virtual void set_event_loop(LoopRef loop);
  virtual LoopRef new_event_loop();
};

std::shared_ptr<EventLoopPolicy> get_event_loop_policy();
// Null restores the default policy.
void set_event_loop_policy(std::shared_ptr<EventLoopPolicy> policy);

LoopRef new_event_loop();
// The running loop if any, else the policy's current loop for this thread.
LoopRef get_event_loop();
void set_event_loop(LoopRef loop);

namespace platform {
// The backend of this build's default loop; defined by native/ or wasm/.
std::unique_ptr<Backend> new_default_backend();
}  // namespace platform

}  // namespace eddy
