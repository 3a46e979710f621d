// The event-loop policy layer (deprecated in Python 3.14, kept thin here).
#include "eddy/policy.hpp"

#include <mutex>

#include "eddy/task.hpp"

namespace eddy {

namespace {
thread_local LoopRef t_current_loop;
std::mutex g_policy_mutex;
std::shared_ptr<EventLoopPolicy>& policy_slot() {
  static std::shared_ptr<EventLoopPolicy> p;
  return p;
}
}  // namespace

LoopRef EventLoopPolicy::get_event_loop() {
  if (!t_current_loop) throw RuntimeError("There is no current event loop in this thread.");
  return t_current_loop;
}

void EventLoopPolicy::set_event_loop(LoopRef loop) { t_current_loop = std::move(loop); }

LoopRef EventLoopPolicy::new_event_loop() { return LoopRef(new EventLoop(platform::new_default_backend())); }

std::shared_ptr<EventLoopPolicy> get_event_loop_policy() {
  std::lock_guard<std::mutex> lock(g_policy_mutex);
  auto& p = policy_slot();
  if (!p) p = std::make_shared<EventLoopPolicy>();
  return p;
}

void set_event_loop_policy(std::shared_ptr<EventLoopPolicy> policy) {
  std::lock_guard<std::mutex> lock(g_policy_mutex);
  policy_slot() = std::move(policy);
}

LoopRef new_event_loop() { return get_event_loop_policy()->new_event_loop(); }

LoopRef get_event_loop() {
  if (EventLoop* running = running_loop()) return LoopRef(running);
  return get_event_loop_policy()->get_event_loop();
}

void set_event_loop(LoopRef loop) { get_event_loop_policy()->set_event_loop(std::move(loop)); }

}  // namespace eddy
