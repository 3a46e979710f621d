// The loop algorithm (asyncio's BaseEventLoop._run_once) and the loop's lifecycle. run_ready() is
// the only place where callbacks are called: slow-callback checks, exception reporting and (later)
// introspection hooks live there and nowhere else.
#include "eddy/loop.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>

#include "eddy/detail/pages.hpp"
#include "eddy/executor.hpp"
#include "eddy/future.hpp"
#include "eddy/log.hpp"
#include "eddy/server.hpp"
#include "eddy/task.hpp"

namespace eddy {

namespace {
thread_local EventLoop* t_running_loop = nullptr;

// asyncio's heap-compaction thresholds (_MIN_SCHEDULED_TIMER_HANDLES and the fraction).
constexpr std::size_t kMinTimersForCompaction = 100;
constexpr double kCancelledFractionForCompaction = 0.5;

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}
}  // namespace

EventLoop* running_loop() noexcept { return t_running_loop; }

EventLoop& get_running_loop() {
  if (!t_running_loop) throw RuntimeError("no running event loop");
  return *t_running_loop;
}

// ---- ExceptionContext ---------------------------------------------------------------------------

ExceptionContext::ExceptionContext() = default;
ExceptionContext::ExceptionContext(std::string m, std::exception_ptr e)
    : message(std::move(m)), exception(std::move(e)) {}
ExceptionContext::ExceptionContext(const ExceptionContext&) = default;
ExceptionContext::ExceptionContext(ExceptionContext&&) noexcept = default;
ExceptionContext& ExceptionContext::operator=(const ExceptionContext&) = default;
ExceptionContext& ExceptionContext::operator=(ExceptionContext&&) noexcept = default;
ExceptionContext::~ExceptionContext() = default;

std::string ExceptionContext::exception_text() const {
  return eddy::exception_text(exception);
}

std::string exception_text(const std::exception_ptr& error) {
  if (!error) return {};
  try {
    std::rethrow_exception(error);
  } catch (const CancelledError& e) {
    return std::string("CancelledError(") + e.message() + ")";
  } catch (const std::exception& e) {
    return e.what();
  } catch (const BaseException& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// ---- Inbox and ReadyQueue -------------------------------------------------------------------------

namespace detail {

bool Inbox::post(HandleRecord* rec) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return false;
  queue_.push_back(rec);
  pending_.store(true, std::memory_order_release);
  backend_->wakeup();  // under the lock: close() cannot free the backend meanwhile
  return true;
}

void Inbox::take(std::vector<HandleRecord*>& out) {
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(queue_);
  pending_.store(false, std::memory_order_release);
}

void Inbox::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  backend_ = nullptr;
}

static_assert(alignof(FutureBase) >= ReadyEntry::kAlignment, "ready entries tag future pointers");

const char* ready_entry_name(const ReadyEntry& e) noexcept {
  switch (e.kind()) {
    case ReadyEntry::Kind::task_step:
      return "Task.__step";
    case ReadyEntry::Kind::task_wakeup:
      return "Task.__wakeup";
    case ReadyEntry::Kind::done_callback:
      return e.future()->first_callback_name();
    case ReadyEntry::Kind::inline_callback:
      return e.ops()->name(e.payload());
    case ReadyEntry::Kind::record:
      break;
  }
  const HandleRecord* r = e.record();
  return r && r->ops ? r->ops->name(r->storage) : "<cancelled>";
}

SourceLocation ready_entry_source(const ReadyEntry& e) noexcept {
  switch (e.kind()) {
    case ReadyEntry::Kind::task_step:
    case ReadyEntry::Kind::task_wakeup:
      return e.task()->created_at();
    case ReadyEntry::Kind::done_callback:
      return SourceLocation{};  // as asyncio, which has no place for a done callback either
    case ReadyEntry::Kind::inline_callback:
      return SourceLocation{};  // scheduled outside debug mode: asyncio keeps no place either
    case ReadyEntry::Kind::record:
      break;
  }
  if (e.record() == nullptr) return SourceLocation{};
  return record_where(e.record());
}

void release_ready_entry(const ReadyEntry& e) noexcept {
  switch (e.kind()) {
    case ReadyEntry::Kind::task_step:
    case ReadyEntry::Kind::task_wakeup:
      e.task()->release();
      return;
    case ReadyEntry::Kind::done_callback:
      e.future()->release_first_callback();
      return;
    case ReadyEntry::Kind::inline_callback:
      return;  // plain bytes
    case ReadyEntry::Kind::record:
      if (e.record()) release_handle(e.record());
      return;
  }
}

ReadyQueue::ReadyQueue(std::uint64_t first_seq)
    : head_(first_seq),
      tail_(first_seq),
      last_block_(first_seq >> kBlockShift),
      blocks_(new ReadyEntry*[8]),
      table_mask_(7) {
  try {
    head_block_ = tail_block_ = new_block();
  } catch (...) {
    delete[] blocks_;
    throw;
  }
  blocks_[last_block_ & table_mask_] = head_block_;
}

ReadyQueue::~ReadyQueue() {
  delete[] blocks_;
}

ReadyEntry* ReadyQueue::new_block() {
  if (!free_blocks_.empty()) {
    ReadyEntry* b = free_blocks_.back();
    free_blocks_.pop_back();
    return b;
  }
  // Room for every block made to be free at once: letting one go never allocates.
  free_blocks_.reserve(blocks_made_ + 1);
  void* block = source_.take();
  ++blocks_made_;
  return static_cast<ReadyEntry*>(block);
}

// Entry tail_ starts block last_block_ + 1: take a block for it, and room in the table.
void ReadyQueue::add_block() {
  ReadyEntry* block = new_block();
  const std::uint64_t first = head_ >> kBlockShift, next = last_block_ + 1;
  if (next - first > table_mask_) {  // the table is full: double it
    const std::uint64_t slots = (table_mask_ + 1) * 2, mask = slots - 1;
    ReadyEntry** bigger;
    try {
      bigger = new ReadyEntry*[slots];
    } catch (...) {
      free_blocks_.push_back(block);  // reserved above: cannot throw
      throw;
    }
    for (std::uint64_t b = first; b <= last_block_; ++b)
      bigger[b & mask] = blocks_[b & table_mask_];
    delete[] blocks_;
    blocks_ = bigger;
    table_mask_ = mask;
  }
  blocks_[next & table_mask_] = block;
  last_block_ = next;
  tail_block_ = block;
}

// head_ has just passed the end of its block.
void ReadyQueue::next_head_block() noexcept {
  ReadyEntry* done = head_block_;
  const std::uint64_t b = head_ >> kBlockShift;
  if (b > last_block_) {
    // The queue is empty and its next entry starts a block: this one serves as that block.
    blocks_[b & table_mask_] = done;
    last_block_ = b;
    tail_block_ = done;
    return;
  }
  head_block_ = blocks_[b & table_mask_];
  free_blocks_.push_back(done);  // room reserved by new_block: cannot throw
}

// ---- The ticket table -----------------------------------------------------------------------
// Slot i holds the loop that gives out tickets naming slot i, and the sequence number its queue
// started at (tickets before it belong to an earlier loop in the slot). A loop claims a slot for
// its life; the next loop there starts its queue where the last one stopped.
namespace {
struct TicketTable {
  std::atomic<EventLoop*> loop[ticket::kSlots] = {};
  std::atomic<std::uint64_t> first_seq[ticket::kSlots] = {};
  std::uint64_t next_seq[ticket::kSlots] = {};  // under `mu`
  std::vector<std::uint32_t> free_slots;        // under `mu`
  std::uint32_t never_used = 0;                 // under `mu`
  std::mutex mu;
};
TicketTable& ticket_table() {
  static TicketTable* table = new TicketTable;  // never destroyed: loops may outlive statics
  return *table;
}
}  // namespace

TicketSlot claim_ticket_slot(EventLoop* loop) noexcept {
  TicketTable& t = ticket_table();
  std::lock_guard<std::mutex> lock(t.mu);
  TicketSlot slot;
  if (!t.free_slots.empty()) {
    slot.index = t.free_slots.back();
    t.free_slots.pop_back();
  } else if (t.never_used < ticket::kSlots) {
    slot.index = t.never_used++;
  } else {
    return slot;
  }
  slot.first_seq = t.next_seq[slot.index];
  t.first_seq[slot.index].store(slot.first_seq & ticket::kSeqMask, std::memory_order_relaxed);
  t.loop[slot.index].store(loop, std::memory_order_release);
  return slot;
}

void release_ticket_slot(TicketSlot slot, std::uint64_t next_seq) noexcept {
  if (slot.index == ticket::kNoSlot) return;
  TicketTable& t = ticket_table();
  std::lock_guard<std::mutex> lock(t.mu);
  t.loop[slot.index].store(nullptr, std::memory_order_release);
  t.next_seq[slot.index] = next_seq;
  try {
    t.free_slots.push_back(slot.index);
  } catch (...) {  // the slot stays unused
  }
}

EventLoop* ticket::loop_of(std::uint64_t t) noexcept {
  TicketTable& table = ticket_table();
  const std::uint32_t i = slot(t);
  EventLoop* loop = table.loop[i].load(std::memory_order_acquire);
  if (loop == nullptr) return nullptr;
  // Issued before this loop took the slot: its loop is gone.
  const std::uint64_t since =
      (seq(t) - table.first_seq[i].load(std::memory_order_relaxed)) & kSeqMask;
  return since < (kSeqMask >> 1) ? loop : nullptr;
}

}  // namespace detail

// ---- Construction and lifecycle -----------------------------------------------------------------

namespace {
std::unique_ptr<Backend> non_null(std::unique_ptr<Backend> backend) {
  if (!backend) throw ValueError("EventLoop needs a backend");
  return backend;
}
}  // namespace

EventLoop::EventLoop(std::unique_ptr<Backend> backend)
    : backend_(non_null(std::move(backend))),
      pool_(new detail::HandlePool(this)),
      ticket_slot_(detail::claim_ticket_slot(this)),
      ready_(ticket_slot_.first_seq) {
  backend_->attach(this);
  inbox_ = std::make_shared<detail::Inbox>(backend_.get());
  backend_->describe(capabilities_);
  debug_ = env_flag("EDDY_DEBUG");  // asyncio reads PYTHONASYNCIODEBUG
  timers_.reserve(64);
}

EventLoop::~EventLoop() {
  if (!closed_) {
    if (debug_) log(LogLevel::warning, "unclosed event loop destroyed; closing it");
    try {
      close();
    } catch (...) {
    }
  }
  delete std::exchange(inspector_, nullptr);
  detail::release_ticket_slot(ticket_slot_, ready_.tail_seq());
  pool_->orphan();
}

// ---- Transport and server registry (for snapshots) ----------------------------------------------

void EventLoop::transport_created(inspect::TransportProbe* probe) noexcept {
  ++live_transports_;
  probe->inspect_id = ++next_transport_id_;
  probe->probe_prev = nullptr;
  probe->probe_next = transports_head_;
  if (transports_head_) transports_head_->probe_prev = probe;
  transports_head_ = probe;
  EDDY_INSPECT_HOOK(*this,
                    transport_event(inspect::EventKind::transport_created, probe->inspect_id));
}

void EventLoop::transport_destroyed(inspect::TransportProbe* probe) noexcept {
  --live_transports_;
  if (probe->probe_prev)
    probe->probe_prev->probe_next = probe->probe_next;
  else
    transports_head_ = probe->probe_next;
  if (probe->probe_next) probe->probe_next->probe_prev = probe->probe_prev;
  EDDY_INSPECT_HOOK(*this,
                    transport_event(inspect::EventKind::transport_closed, probe->inspect_id));
}

void EventLoop::server_created(Server* server) {
  servers_.emplace_back(server, ++next_server_id_);
}

void EventLoop::server_destroyed(Server* server) noexcept {
  std::erase_if(servers_, [server](const auto& s) { return s.first == server; });
}

void EventLoop::destroy_self() noexcept { delete this; }

void EventLoop::check_closed() const {
  if (closed_) throw RuntimeError("Event loop is closed");
}

void EventLoop::check_thread(const char* method) const {
  if (thread_id_ == std::thread::id()) return;
  if (std::this_thread::get_id() != thread_id_)
    throw RuntimeError(std::string("Non-thread-safe operation invoked on an event loop other "
                                   "than the current one (") +
                       method + ")");
}

void EventLoop::check_can_run(const char* method) const {
  check_closed();
  if (running_) throw RuntimeError("This event loop is already running");
  if (t_running_loop) throw RuntimeError("Cannot run the event loop while another loop is running");
  if (method) capabilities_.require(method);
}

void EventLoop::enter_running(const char* method) {
  check_can_run();
  (void)method;
  thread_id_ = std::this_thread::get_id();
  t_running_loop = this;
  running_ = true;
}

void EventLoop::leave_running() noexcept {
  in_pass_ = false;  // a KeyboardInterrupt may have ended the pass early
  stopping_ = false;
  running_ = false;
  t_running_loop = nullptr;
  thread_id_ = std::thread::id();
}

void EventLoop::run_forever() {
  capabilities_.require("run_forever");
  LoopRef keep(this);  // released last, after leave_running()
  enter_running("run_forever");
  try {
    for (;;) {
      run_pass(-1.0);
      if (stopping_) break;
    }
  } catch (...) {
    leave_running();
    throw;
  }
  leave_running();
}

std::size_t EventLoop::run_once(double max_wait) {
  LoopRef keep(this);
  enter_running("run_once");
  std::size_t n = 0;
  try {
    n = run_pass(backend_->can_block() ? max_wait : 0.0);
  } catch (...) {
    leave_running();
    throw;
  }
  leave_running();
  return n;
}

void EventLoop::stop() noexcept { stopping_ = true; }

void EventLoop::close() {
  if (running_) throw RuntimeError("Cannot close a running event loop");
  if (closed_) return;
  closed_ = true;
  delete std::exchange(inspector_, nullptr);  // closes its Feed: readers see the loop is gone
  executor_shutdown_called_ = true;
  inbox_->close();
  for (auto& [sig, handler] : signal_handlers_) backend_->unwatch_signal(sig);
  for (auto& [fd, watch] : fd_watches_) backend_->unwatch_fd(fd);
  fd_watches_.clear();
  signal_handlers_.clear();

  // Drop everything that can never run now. Destroying a callback or a coroutine frame may
  // release futures, tasks and handles, which may in turn release more, so repeat until stable.
  for (;;) {
    std::vector<detail::HandleRecord*> posted;
    inbox_->take(posted);
    for (auto* r : posted) detail::release_handle(r);
    while (!ready_.empty()) detail::release_ready_entry(ready_.pop());
    detail::TimerHeap timers;
    timers.swap(timers_);
    for (auto e : timers) {
      detail::HandleRecord* r = pool_->at(e.index);
      r->flags &= ~detail::kHandleScheduled;
      detail::release_handle(r);
    }
    timer_cancelled_count_ = 0;
    std::unordered_map<std::uint64_t, Ref<FutureBase>> jobs;
    jobs.swap(executor_jobs_);
    jobs.clear();

    std::vector<Ref<TaskBase>> pending;
    for (TaskBase* t = tasks_head_; t; t = t->next_task)
      if (!t->done()) pending.emplace_back(t);
    if (pending.empty() && ready_.empty() && timers_.empty() && !inbox_->has_work()) break;
    for (auto& t : pending) {
      if (t->log_destroy_pending()) {
        ExceptionContext ctx("Task was destroyed but it is pending!");
        ctx.task = t;
        ctx.source = t->created_at();
        call_exception_handler(ctx);
      }
      t->abandon();
    }
  }

  // Servers and transports still open can never call their protocols again: their sockets,
  // pipes and children are released now (asyncio leaves them to the garbage collector), so the
  // backend has nothing left to wait for. A transport may release others (a child's pipes), so
  // the walk restarts after each.
  std::vector<Ref<Server>> servers;
  for (auto& [server, id] : servers_) servers.emplace_back(server);
  for (auto& server : servers) server->loop_closed();
  servers.clear();
  for (inspect::TransportProbe* p = transports_head_; p;) {
    if (p->released_at_close) {
      p = p->probe_next;
      continue;
    }
    p->released_at_close = true;
    if (debug_) {
      inspect::TransportInfo info;
      const void* server = nullptr;
      p->describe(info, server);
      if (info.state != "closed" && info.state != "closing")
        log(LogLevel::warning, "unclosed transport (" + info.kind +
                                   (info.peer.empty() ? "" : " " + info.peer) +
                                   ") released when the loop closed");
    }
    p->loop_closed();
    p = transports_head_;
  }

  // Generators still alive outside the loop must not point at it any more.
  while (asyncgens_head_) unregister_asyncgen(asyncgens_head_);

  if (default_executor_) {
    default_executor_->shutdown(/*wait=*/false);
    default_executor_.reset();
  }
  retiring_executors_.clear();  // the last reference joins: close() waits for their jobs
  for (std::thread& t : std::exchange(executor_shutdown_threads_, {})) t.join();
  backend_->close();
}

// ---- One pass of the loop ----------------------------------------------------------------------

double EventLoop::compute_timeout() {
  if (!ready_.empty() || stopping_ || inbox_->has_work()) return 0.0;
  if (timers_.empty()) return -1.0;
  const double dt = pool_->at(timers_.front().index)->when - time();
  return dt > 0 ? dt : 0.0;
}

std::size_t EventLoop::run_pass(double max_wait) {
  in_pass_ = true;
  ++iterations_;
  if (!timers_.empty()) purge_cancelled_timers();
  double timeout = compute_timeout();
  if (max_wait >= 0 && (timeout < 0 || timeout > max_wait)) timeout = max_wait;
#if EDDY_INSPECT
  if (EDDY_UNLIKELY(inspector_ != nullptr)) {
    // The same pass, with each phase timed for the inspector, reading the clock as little as
    // possible: the previous pass's end is this one's start, the read after polling is the
    // timers' "now", the timer phase is read only if there are timers, and the last callback's
    // end (run_ready reads one per callback) is this pass's end.
    inspect::Recorder* rec = inspector_;
    const double t0 = rec->last_clock() > 0 ? rec->last_clock() : rec->clock();
    backend_->poll(timeout);
    if (inbox_->has_work()) drain_inbox();
    const double t1 = rec->clock();
    const bool timers = !timers_.empty();
    fire_due_timers(t1);
    const double t2 = timers ? rec->clock() : t1;
    const std::size_t n = ready_.size();
    run_ready(n);
    in_pass_ = false;
    if (inspector_) inspector_->pass_done(t0, t1, t2, n ? inspector_->last_clock() : t2, n);
    if (host_driver_) notify_host();
    return n;
  }
#endif
  backend_->poll(timeout);
  if (inbox_->has_work()) drain_inbox();
  if (!timers_.empty()) fire_due_timers(time());
  const std::size_t n = ready_.size();
  run_ready(n);
  in_pass_ = false;
  if (host_driver_) notify_host();
  // The exception handler raised KeyboardInterrupt outside any callback (I/O, a timer's check).
  if (EDDY_UNLIKELY(interrupting_)) std::rethrow_exception(take_interrupting());
  return n;
}

void EventLoop::drain_inbox() {
  inbox_->take(inbox_scratch_);
  for (auto* r : inbox_scratch_) {
    ready_.push(r);
    EDDY_INSPECT_HOOK(*this, callback_scheduled(r));
  }
  inbox_scratch_.clear();
}

void EventLoop::purge_cancelled_timers() {
  if (timers_.size() > kMinTimersForCompaction &&
      static_cast<double>(timer_cancelled_count_) >
          kCancelledFractionForCompaction * static_cast<double>(timers_.size())) {
    std::size_t kept = 0;
    for (auto e : timers_) {
      detail::HandleRecord* r = pool_->at(e.index);
      if (r->has(detail::kHandleCancelled)) {
        r->flags &= ~detail::kHandleScheduled;
        detail::release_handle(r);
      } else {
        timers_[kept++] = e;
      }
    }
    timers_.resize(kept);
    std::make_heap(timers_.begin(), timers_.end(),
                   [this](auto a, auto b) { return timer_less(b, a); });
    timer_cancelled_count_ = 0;
    return;
  }
  auto greater = [this](auto a, auto b) { return timer_less(b, a); };
  while (!timers_.empty()) {
    detail::HandleRecord* r = pool_->at(timers_.front().index);
    if (!r->has(detail::kHandleCancelled)) break;
    std::pop_heap(timers_.begin(), timers_.end(), greater);
    timers_.pop_back();
    --timer_cancelled_count_;
    r->flags &= ~detail::kHandleScheduled;
    detail::release_handle(r);
  }
}

void EventLoop::push_timer(detail::HandleRecord* rec) {
  timers_.push_back({detail::HandlePool::index_of(rec), timer_seq_++});
  std::push_heap(timers_.begin(), timers_.end(),
                 [this](auto a, auto b) { return timer_less(b, a); });
  EDDY_INSPECT_HOOK(*this, timer_armed(rec));
  if (EDDY_UNLIKELY(host_driver_ != nullptr) && !in_pass_ &&
      timers_.front().index == detail::HandlePool::index_of(rec))
    notify_host();
}

void EventLoop::fire_due_timers(double now) {
  if (timers_.empty()) return;
  auto greater = [this](auto a, auto b) { return timer_less(b, a); };
  while (!timers_.empty()) {
    detail::HandleRecord* r = pool_->at(timers_.front().index);
    if (r->when > now) break;  // never early: due means when <= time()
    std::pop_heap(timers_.begin(), timers_.end(), greater);
    timers_.pop_back();
    r->flags &= ~detail::kHandleScheduled;
    if (r->has(detail::kHandleCancelled)) {
      --timer_cancelled_count_;
      detail::release_handle(r);
      continue;
    }
    EDDY_INSPECT_HOOK(*this, timer_fired(r, now));
    ready_.push(r);  // the heap's reference moves to the ready queue
  }
}

// This is the only place where callbacks are called: here on the plain path, and in
// run_watched() when the inspector or debug mode times them.
void EventLoop::run_ready(std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    const detail::ReadyEntry& front = ready_.front();
    if (front.is_inline() && !front.is_object()) {
      detail::ReadyEntry e = front;  // a copy: the callback may grow the queue
      ready_.drop_front();
      run_callback(e, [&e] { e.ops()->invoke(e.payload()); });
      continue;
    }
    const detail::ReadyEntry e = front.without_payload();
    ready_.drop_front();
    if (e.is_object()) {
      if (e.is_future()) {
        FutureBase* f = e.future();
        run_callback(e, [f] { f->run_first_callback(); });
        f->release_first_callback();
      } else {
        TaskBase* t = e.task();
        run_callback(e, [t] { t->step(); });
        t->release();  // the queue's reference
      }
      continue;
    }
    detail::HandleRecord* r = e.record();
    if (r == nullptr) continue;  // a cancelled inline callback
    if (r->has(detail::kHandleCancelled) || r->ops == nullptr) {
      detail::release_handle(r);
      continue;
    }
    r->flags |= detail::kHandleRunning;
    run_callback(e, [r] { r->ops->invoke(r->storage); });
    r->flags &= ~detail::kHandleRunning;
    r->destroy_callback();
    detail::release_handle(r);
  }
}

// The plain path inlines each kind's call once; the timed one is out of line, so the loop's
// hottest function stays small (in WebAssembly, V8 takes tens of milliseconds to optimise it).
template <class Invoke>
void EventLoop::run_callback(const detail::ReadyEntry& e, Invoke&& invoke) {
  if (EDDY_UNLIKELY(callbacks_timed())) {
    run_watched(e);
    return;
  }
  try {
    invoke();
  } catch (const KeyboardInterrupt&) {
    finish_interrupted(e);
    throw;
  } catch (...) {
    report_callback_exception(e, std::current_exception());
    if (EDDY_UNLIKELY(interrupting_)) raise_interrupting(e);  // from the exception handler
  }
}

// A KeyboardInterrupt raised by the exception handler while the callback `e` was reported: it
// ends the run as one from the callback itself would.
EDDY_NOINLINE void EventLoop::raise_interrupting(detail::ReadyEntry e) {
  finish_interrupted(e);
  std::rethrow_exception(take_interrupting());
}

// As asyncio's Handle._run (which re-raises KeyboardInterrupt and SystemExit), a
// KeyboardInterrupt ends the run: it leaves run_forever / run_until_complete, and what is still
// ready stays queued for the next run. The entry that raised is released as run_ready would.
EDDY_NOINLINE void EventLoop::finish_interrupted(detail::ReadyEntry e) noexcept {
  switch (e.kind()) {
    case detail::ReadyEntry::Kind::done_callback:
      e.future()->release_first_callback();
      return;
    case detail::ReadyEntry::Kind::task_step:
    case detail::ReadyEntry::Kind::task_wakeup:
      e.task()->release();
      return;
    case detail::ReadyEntry::Kind::inline_callback:
      return;
    case detail::ReadyEntry::Kind::record:
      break;
  }
  detail::HandleRecord* r = e.record();
  r->flags &= ~detail::kHandleRunning;
  r->destroy_callback();
  detail::release_handle(r);
}

bool EventLoop::callbacks_timed() const noexcept {
#if EDDY_INSPECT
  if (inspector_ != nullptr) return true;
#endif
  return debug_;
}

EDDY_NOINLINE void EventLoop::run_watched(detail::ReadyEntry e) {
  // As asyncio's _run_once, a callback that raises is reported and then still timed: a slow
  // callback is logged whether or not it failed.
  auto invoke = [this, &e] {
    try {
      switch (e.kind()) {
        case detail::ReadyEntry::Kind::inline_callback:
          return e.ops()->invoke(e.payload());
        case detail::ReadyEntry::Kind::done_callback:
          return e.future()->run_first_callback();
        case detail::ReadyEntry::Kind::task_step:
        case detail::ReadyEntry::Kind::task_wakeup:
          return e.task()->step();
        case detail::ReadyEntry::Kind::record:
          return e.record()->ops->invoke(e.record()->storage);
      }
    } catch (const KeyboardInterrupt&) {
      throw;
    } catch (...) {
      report_callback_exception(e, std::current_exception());
      // The exception handler raised KeyboardInterrupt: thrown on, as if from the callback.
      if (EDDY_UNLIKELY(interrupting_)) std::rethrow_exception(take_interrupting());
    }
  };
  try {
#if EDDY_INSPECT
    if (inspector_ != nullptr) {
      // One clock read per callback: it starts where the previous one (or the phase) ended.
      const char* name = detail::ready_entry_name(e);
      const double t0 = inspector_->last_clock();
      invoke();
      const double dt = inspector_ ? inspector_->callback_clock() - t0 : 0.0;
      if (inspector_) inspector_->callback_run(e, name, t0, dt);
      if (dt >= slow_callback_duration_) {
        if (inspector_) inspector_->slow_callback(e, name, dt);
        if (debug_) report_slow_callback(e, dt);
      }
      return;
    }
#endif
    const double t0 = time();
    invoke();
    const double dt = time() - t0;
    if (dt >= slow_callback_duration_) report_slow_callback(e, dt);
  } catch (const KeyboardInterrupt&) {
    finish_interrupted(e);
    throw;
  } catch (...) {
    report_callback_exception(e, std::current_exception());  // from the reports themselves
  }
}

void EventLoop::report_slow_callback(detail::ReadyEntry e, double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", seconds);
  const SourceLocation where = detail::ready_entry_source(e);
  std::ostringstream os;
  os << "Executing <Handle " << detail::ready_entry_name(e) << " scheduled at "
     << (where.file ? where.file : "?") << ':' << where.line << "> took " << buf << " seconds";
  log(LogLevel::warning, os.str());
}

void EventLoop::report_callback_exception(detail::ReadyEntry e, std::exception_ptr exc) {
  ExceptionContext ctx(std::string("Exception in callback ") + detail::ready_entry_name(e),
                       std::move(exc));
  switch (e.kind()) {
    case detail::ReadyEntry::Kind::task_step:
    case detail::ReadyEntry::Kind::task_wakeup:
      ctx.task = Ref<TaskBase>(e.task());
      break;
    case detail::ReadyEntry::Kind::done_callback: {
      // asyncio runs every done callback as a Handle and reports it under "handle". The first
      // one runs here without a record: the report gets one, named as the callback, and the
      // future too (which asyncio shows among the handle's arguments).
      struct RanCallback {
        std::string name;
        const char* callback_name() const noexcept { return name.c_str(); }
        void operator()() const noexcept {}
      };
      ctx.handle = Handle::adopt(make_record(RanCallback{detail::ready_entry_name(e)}, {}));
      ctx.future = Ref<FutureBase>(e.future());
      break;
    }
    case detail::ReadyEntry::Kind::inline_callback: {
      // The caller's handle: a ticket for this entry, which left the queue as it ran. While the
      // report lasts, the ticket still finds the callback's name (and a copy keeps it).
      const std::uint64_t seq = ready_.head_seq() - 1;
      ctx.handle = Handle::from_ticket(detail::ticket::make(ticket_slot_.index, seq));
      ctx.source = detail::ready_entry_source(e);
      const detail::ReadyEntry* outer = std::exchange(reporting_, &e);
      const std::uint64_t outer_seq = std::exchange(reporting_seq_, seq & detail::ticket::kSeqMask);
      call_exception_handler(ctx);
      reporting_ = outer;
      reporting_seq_ = outer_seq;
      return;
    }
    case detail::ReadyEntry::Kind::record:
      detail::retain_handle(e.record());
      ctx.handle = Handle::adopt(e.record());
      break;
  }
  ctx.source = detail::ready_entry_source(e);
  call_exception_handler(ctx);
}

// ---- Tickets ------------------------------------------------------------------------------------

detail::ReadyEntry* EventLoop::queued_ticket_entry(std::uint64_t seq) noexcept {
  detail::ReadyEntry* e = ready_.find(seq, detail::ticket::kSeqMask);
  return e && e->kind() == detail::ReadyEntry::Kind::inline_callback ? e : nullptr;
}

void EventLoop::cancel_ticket(std::uint64_t seq) noexcept {
  if (detail::ReadyEntry* e = queued_ticket_entry(seq))
    *e = detail::ReadyEntry();  // a null record: skipped; the callback's bytes need no cleanup
}

const char* EventLoop::ticket_callback_name(std::uint64_t seq) noexcept {
  const detail::ReadyEntry* e = queued_ticket_entry(seq);
  if (e == nullptr) e = reported_ticket_entry(seq);
  return e ? e->ops()->name(e->payload()) : nullptr;
}

detail::HandleRecord* EventLoop::share_ticket(std::uint64_t seq) {
  // A record of its own (as call_soon_threadsafe's), not the pool's: it may outlive the loop.
  detail::HandleRecord* r = detail::new_shared_record();
  detail::ReadyEntry* queued = queued_ticket_entry(seq);
  const detail::ReadyEntry* from = queued ? queued : reported_ticket_entry(seq);
  if (from != nullptr) {
    std::memcpy(r->storage, from->payload(), detail::kReadyPayloadSize);
    r->ops = from->ops();
  }
  if (queued != nullptr) {
    r->refs = 2;  // the queue's reference too: the record takes the entry's place
    *queued = detail::ReadyEntry(r);
  }
  return r;
}

void EventLoop::schedule_task_step(Ref<TaskBase> task, bool wakeup) {
  if (EDDY_UNLIKELY(closed_)) check_closed();
  if (EDDY_UNLIKELY(debug_)) check_thread("call_soon");
  schedule_entry(detail::ReadyEntry::step(task.leak(), wakeup));
}

void EventLoop::schedule_entry(detail::ReadyEntry e) {
  if (EDDY_UNLIKELY(closed_)) {
    detail::release_ready_entry(e);
    check_closed();
  }
  before_push();
#if EDDY_INSPECT
  if (EDDY_UNLIKELY(inspector_ != nullptr) && inspector_->entry_scheduled(e)) e.set_traced();
#endif
  ready_.push(e);
  after_push();
}

void EventLoop::schedule_record(detail::HandleRecord* rec) {
  if (EDDY_UNLIKELY(closed_)) {
    detail::release_handle(rec);
    check_closed();
  }
  schedule_ready(rec);
}

// ---- Guest mode -----------------------------------------------------------------------------------

std::optional<double> EventLoop::time_until_work() {
  if (!ready_.empty() || inbox_->has_work()) return 0.0;
  purge_cancelled_timers();
  std::optional<double> io = closed_ ? std::nullopt : backend_->io_due_in();
  if (timers_.empty()) return io;
  double dt = pool_->at(timers_.front().index)->when - time();
  if (dt < 0) dt = 0.0;
  return io && *io < dt ? *io : dt;
}

void EventLoop::notify_io() {
  backend_->wakeup();
  if (host_driver_ && !in_pass_) notify_host();
}

void EventLoop::set_host_driver(HostDriver* driver) {
  host_driver_ = driver;
  if (driver) notify_host();
}

void EventLoop::notify_host() {
  if (closed_) return;
  if (auto delay = time_until_work()) host_driver_->schedule(*delay);
}

// ---- Errors ---------------------------------------------------------------------------------------

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
  EDDY_INSPECT_HOOK(*this, exception(context));
  if (!exception_handler_) {
    default_exception_handler(context);
    return;
  }
  try {
    exception_handler_(*this, context);
  } catch (const KeyboardInterrupt&) {
    // As asyncio, it ends the run (after the current callback, which stays released). Outside a
    // run there is nothing to end: it is reported as any other error of the handler.
    if (running_) {
      set_interrupting(std::current_exception());
      return;
    }
    report_handler_error(context, std::current_exception());
  } catch (...) {
    report_handler_error(context, std::current_exception());
  }
}

// asyncio's report of a custom handler that raised: the handler's error, and the whole context
// it was given (its message, exception and objects), as the default handler would show it.
void EventLoop::report_handler_error(const ExceptionContext& context,
                                     std::exception_ptr error) noexcept {
  try {
    ExceptionContext ctx("Unhandled error in exception handler", std::move(error));
    ctx.extra["context"] = describe_context(context);
    default_exception_handler(ctx);
  } catch (...) {
    std::fputs("eddy: exception while reporting an exception\n", stderr);
  }
}

std::string EventLoop::describe_context(const ExceptionContext& c) {
  std::ostringstream os;
  os << (c.message.empty() ? "Unhandled exception in event loop" : c.message);
  if (c.future) os << "\nfuture: " << c.future->describe();
  if (c.task) os << "\ntask: " << c.task->describe();
  if (c.handle) os << "\nhandle: <Handle " << c.handle.callback_name() << '>';
  if (c.source.known()) os << "\nsource: " << c.source.file << ':' << c.source.line;
  for (const auto& [k, v] : c.extra) os << '\n' << k << ": " << v;
  if (c.exception) os << "\nexception: " << c.exception_text();
  return os.str();
}

void EventLoop::default_exception_handler(const ExceptionContext& c) noexcept {
  try {
    log(LogLevel::error, describe_context(c));
  } catch (...) {
    std::fputs("eddy: exception while reporting an exception\n", stderr);
  }
}

void EventLoop::set_slow_callback_duration(double seconds) {
  if (!(seconds >= 0)) throw ValueError("slow_callback_duration must be a non-negative number");
  slow_callback_duration_ = seconds;
}

// ---- Tasks and introspection -------------------------------------------------------------------

void EventLoop::register_task(TaskBase* t) noexcept {
  t->next_task = tasks_head_;
  t->prev_task = nullptr;
  if (tasks_head_) tasks_head_->prev_task = t;
  tasks_head_ = t;
  ++task_count_;
}

void EventLoop::unregister_task(TaskBase* t) noexcept {
  if (t->prev_task)
    t->prev_task->next_task = t->next_task;
  else
    tasks_head_ = t->next_task;
  if (t->next_task) t->next_task->prev_task = t->prev_task;
  --task_count_;
}

std::vector<Ref<TaskBase>> EventLoop::all_tasks() const {
  std::vector<Ref<TaskBase>> out;
  for (TaskBase* t = tasks_head_; t; t = t->next_task)
    if (!t->done()) out.emplace_back(t);
  std::reverse(out.begin(), out.end());  // creation order
  return out;
}

LoopStats EventLoop::stats() const noexcept {
  LoopStats s;
  s.live_handles = pool_->live();
  s.ready = ready_.size();
  s.timers = timers_.size();
  s.cancelled_timers = timer_cancelled_count_;
  s.live_futures = live_futures_;
  s.futures_created = futures_created_;
  s.live_tasks = task_count_;
  for (TaskBase* t = tasks_head_; t; t = t->next_task)
    if (!t->done()) ++s.pending_tasks;
  s.executor_jobs = executor_jobs_.size();
  s.live_transports = live_transports_;
  s.iterations = iterations_;
  return s;
}

// ---- Signals ------------------------------------------------------------------------------------

void EventLoop::add_signal_handler_impl(int sig,
                                        std::shared_ptr<detail::RepeatingCallback> handler) {
  check_closed();
  capabilities_.require("add_signal_handler");
  backend_->watch_signal(sig, [this, sig] {
    auto it = signal_handlers_.find(sig);
    if (it == signal_handlers_.end()) return;
    using Run = detail::RunRepeatingCallback<std::shared_ptr<detail::RepeatingCallback>>;
    call_soon(Run{it->second, it->second->name}, it->second->where);
  });
  signal_handlers_[sig] = std::move(handler);
}

bool EventLoop::remove_signal_handler(int sig) {
  capabilities_.require("remove_signal_handler");
  backend_->check_signal(sig);
  auto it = signal_handlers_.find(sig);
  if (it == signal_handlers_.end()) return false;
  signal_handlers_.erase(it);
  backend_->unwatch_signal(sig);
  return true;
}

// ---- Executors ----------------------------------------------------------------------------------

std::shared_ptr<Executor> EventLoop::default_executor() {
  if (executor_shutdown_called_) throw RuntimeError("Executor shutdown has been called");
  if (!default_executor_) {
    default_executor_ = backend_->make_default_executor();
    if (!default_executor_)
      throw NotSupportedError("run_in_executor", capabilities_.target,
                              "this build has no threads for a default executor");
  }
  return default_executor_;
}

void EventLoop::set_default_executor(std::shared_ptr<Executor> executor) {
  if (!executor) throw TypeError("set_default_executor: executor must not be null");
  std::shared_ptr<Executor> old = std::exchange(default_executor_, std::move(executor));
  // As asyncio, the executor replaced is left to finish what it runs; the loop must not wait for
  // it. Once nobody else can submit to it, its threads are joined when its jobs are done.
  if (old && old.use_count() == 1 && capabilities_.supports("run_in_executor"))
    retire_executor(std::move(old), {});
}

void EventLoop::retire_executor(std::shared_ptr<Executor> executor, detail::UniqueFunction joined) {
  Executor* raw = executor.get();
  retiring_executors_.push_back(std::move(executor));
  // On the loop's thread, once the jobs are done: joining threads that have returned takes no
  // time, and a WebAssembly pthread joined on the main thread gives its Web Worker back to the
  // pool at once (joined elsewhere, only once the page's JavaScript event loop runs).
  auto join = [this, raw, joined = std::move(joined)]() mutable {
    auto it = std::find_if(retiring_executors_.begin(), retiring_executors_.end(),
                           [raw](const std::shared_ptr<Executor>& e) { return e.get() == raw; });
    if (it != retiring_executors_.end()) {
      std::shared_ptr<Executor> done = std::move(*it);
      retiring_executors_.erase(it);
      done->shutdown(/*wait=*/true);
    }
    if (joined) joined();
  };
  auto post = std::make_shared<detail::UniqueFunction>(
      [inbox = inbox_, join = std::move(join)]() mutable {
        detail::post_to_loop(inbox, std::move(join));
      });
  // An executor that cannot say when it is done is waited for on a thread of its own (close()
  // joins those threads).
  if (!raw->shutdown_then([post] { (*post)(); }))
    executor_shutdown_threads_.emplace_back([raw, post] {
      raw->shutdown(/*wait=*/true);
      (*post)();
    });
}

std::uint64_t EventLoop::add_executor_job(Ref<FutureBase> future) {
  const std::uint64_t id = ++next_executor_job_;
  executor_jobs_.emplace(id, std::move(future));
  return id;
}

Ref<FutureBase> EventLoop::take_executor_job(std::uint64_t id) noexcept {
  auto it = executor_jobs_.find(id);
  if (it == executor_jobs_.end()) return {};
  Ref<FutureBase> f = std::move(it->second);
  executor_jobs_.erase(it);
  return f;
}

Future<void> EventLoop::shutdown_default_executor(double timeout) {
  check_closed();
  executor_shutdown_called_ = true;
  Future<void> done = create_future<void>();
  if (!default_executor_) {
    done.set_result();
    return done;
  }
  // The loop never blocks on the jobs, and a second call waits for the same ones.
  const std::uint64_t id = add_executor_job(done.state());
  retire_executor(default_executor_, [this, id] {
    Ref<FutureBase> f = take_executor_job(id);
    if (f && !f->done()) f->finish_with_result();
  });
  if (timeout >= 0) {
    // The timeout ends with the join, as asyncio's timeout() block: no timer is left behind.
    TimerHandle expiry = call_later(timeout, [this, id, timeout] {
      Ref<FutureBase> f = take_executor_job(id);
      if (!f || f->done()) return;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%g", timeout);
      log(LogLevel::warning, std::string("The executor did not finish joining its threads within ") +
                                 buf + " seconds.");
      f->finish_with_result();
    });
    done.add_done_callback([expiry](Future<void>) mutable { expiry.cancel(); });
  }
  return done;
}

}  // namespace eddy
