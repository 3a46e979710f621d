// The Recorder: what the loop's hooks write while inspection is on, and how a Snapshot of the
// whole loop is built and published. Everything here runs on the loop thread except Feed, whose
// readers may be anywhere; the loop only ever try-locks it, so a reader can never stall a pass.
#include "eddy/inspect.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "eddy/future.hpp"
#include "eddy/loop.hpp"
#include "eddy/server.hpp"
#include "eddy/task.hpp"

namespace eddy::inspect {

namespace {
constexpr std::size_t kMaxExceptionsPerWindow = 256;

// Queued by Feed::request() to make an idle loop run a pass (and so publish).
struct PublishRequest {
  void operator()() const noexcept {}
  const char* callback_name() const noexcept { return "eddy::inspect::PublishRequest"; }
};

}  // namespace

// ---- Feed ---------------------------------------------------------------------------------------

std::shared_ptr<const Snapshot> Feed::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return history_.empty() ? nullptr : history_.back();
}

std::vector<std::shared_ptr<const Snapshot>> Feed::since(std::uint64_t after) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<const Snapshot>> out;
  for (const auto& s : history_)
    if (s->seq > after) out.push_back(s);
  return out;
}

void Feed::request() const {
  std::function<void()> waker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    waker = waker_;
    requested_.store(true, std::memory_order_relaxed);
  }
  if (waker) waker();
}

bool Feed::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

bool Feed::try_publish(std::shared_ptr<const Snapshot> s, std::size_t history) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  history_.push_back(std::move(s));
  while (history_.size() > std::max<std::size_t>(history, 1)) history_.pop_front();
  return true;
}

void Feed::set_waker(std::function<void()> waker) {
  std::lock_guard<std::mutex> lock(mu_);
  waker_ = std::move(waker);
}

void Feed::close() {
  std::function<void()> waker;
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  waker.swap(waker_);
}

// ---- Recorder -----------------------------------------------------------------------------------

Recorder::Recorder(EventLoop& loop, Options options)
    : loop_(loop), options_(options), feed_(std::make_shared<Feed>()) {
  events_.reserve(std::min<std::size_t>(options_.event_capacity, 4096));
  burst_limit_ = next_burst_limit();
  window_start_ = loop_.time();
  next_publish_ = window_start_;  // the first pass publishes
  calibrate_ticks();
  std::shared_ptr<detail::Inbox> inbox = loop_.inbox();
  feed_->set_waker([inbox] {
    detail::HandleRecord* r = detail::new_shared_record(__FILE__, __LINE__);  // the queue's ref
    detail::CallbackOpsFor<PublishRequest>::construct(r->storage, PublishRequest{});
    r->ops = &detail::CallbackOpsFor<PublishRequest>::ops;
    if (!inbox->post(r)) detail::release_handle(r);
  });
}

Recorder::~Recorder() {
  if (stepped_) stepped_->release();
  feed_->close();
}

double Recorder::clock() {
  return last_clock_ = loop_.time();
}

double Recorder::tick_clock() noexcept {
  const auto elapsed = static_cast<std::int64_t>(loop_.backend_->ticks() - anchor_ticks_);
  const double now = anchor_time_ + static_cast<double>(elapsed) * seconds_per_tick_;
  // Never backwards: the last exact read (or another core's counter) may be a little ahead.
  if (now > last_clock_) last_clock_ = now;
  return last_clock_;
}

void Recorder::calibrate_ticks() {
  // A pair (loop time, ticks) read within 50 us: a thread preempted between the two reads would
  // skew the rate and the anchor by the time it lost, so such a pair waits for the next try.
  const double before = loop_.time();
  const std::uint64_t ticks = loop_.backend_->ticks();
  if (ticks == 0) return;
  const double after = loop_.time();
  if (after - before > 50e-6) return;
  const double now = (before + after) / 2;
  if (first_ticks_ == 0) {
    first_ticks_ = ticks;
    first_time_ = now;
    return;
  }
  if (now - first_time_ < 0.01 || ticks <= first_ticks_) return;
  seconds_per_tick_ = (now - first_time_) / static_cast<double>(ticks - first_ticks_);
  anchor_ticks_ = ticks;
  anchor_time_ = now;
}

void Recorder::record(EventKind kind, std::uint64_t id, double value, const char* name,
                      const char* file, std::uint32_t line) {
  if (EDDY_UNLIKELY(events_.size() >= burst_limit_)) {
    if (events_.size() >= options_.event_capacity) {
      ++dropped_;
      return;
    }
    // A burst: this window already holds its budget twice over (load just started, say). Sample
    // harder now rather than at the next publication, so that one window stays a few budgets
    // long instead of filling its capacity, and the clients decoding it stay cheap.
    stride_ *= 2;
    burst_limit_ = next_burst_limit();
  }
  events_.push_back(
      Event{loop_.in_pass_ ? last_clock_ : clock(), id, value, name, file, line, kind});
}

void Recorder::callback_scheduled(detail::HandleRecord* r) {
  if (!sampled()) return;
  r->flags |= detail::kHandleTraced;  // its run will be recorded too: the pair makes a flow arrow
  const SourceLocation where = detail::record_where(r);
  record(EventKind::callback_scheduled, reinterpret_cast<std::uintptr_t>(r), 0, nullptr, where.file,
         where.line);
}

bool Recorder::entry_scheduled(detail::ReadyEntry e) {
  if (!sampled()) return false;
  const SourceLocation where = detail::ready_entry_source(e);
  record(EventKind::callback_scheduled, e.id(), 0, nullptr, where.file, where.line);
  return true;
}

void Recorder::callback_run(detail::ReadyEntry e, const char* name, double start, double duration) {
  ++window_callbacks_;
  if (TaskBase* t = std::exchange(stepped_, nullptr)) {
    t->add_busy_time(duration);
    if (sampled()) record(EventKind::task_step, t->id(), duration);
    t->release();
  }
  if (!(e.is_record() ? e.record()->has(detail::kHandleTraced) : e.traced())) return;
  if (EDDY_UNLIKELY(events_.size() >= options_.event_capacity)) {
    ++dropped_;
    return;
  }
  const SourceLocation where = detail::ready_entry_source(e);
  events_.push_back(
      Event{start, e.id(), duration, name, where.file, where.line, EventKind::callback_run});
}

void Recorder::timer_armed(const detail::HandleRecord* r) {
  if (!sampled()) return;
  const SourceLocation where = detail::record_where(r);
  record(EventKind::timer_armed, reinterpret_cast<std::uintptr_t>(r), r->when, nullptr, where.file,
         where.line);
}

void Recorder::timer_cancelled(const detail::HandleRecord* r) {
  if (!sampled()) return;
  const SourceLocation where = detail::record_where(r);
  record(EventKind::timer_cancelled, reinterpret_cast<std::uintptr_t>(r), r->when, nullptr,
         where.file, where.line);
}

void Recorder::timer_fired(detail::HandleRecord* r, double now) {
  const double late = now - r->when;
  window_lag_sum_ += late;
  window_lag_max_ = std::max(window_lag_max_, late);
  ++window_lag_count_;
  if (!sampled()) return;
  r->flags |= detail::kHandleTraced;
  const SourceLocation where = detail::record_where(r);
  record(EventKind::timer_fired, reinterpret_cast<std::uintptr_t>(r), late, nullptr, where.file,
         where.line);
}

void Recorder::task_created(TaskBase* t) {
  t->set_created_time(clock());
  if (!sampled()) return;
  record(EventKind::task_created, t->id(), 0, nullptr, t->created_at().file, t->created_at().line);
}

void Recorder::task_stepping(TaskBase* t) {
  t->retain();
  if (stepped_) stepped_->release();
  stepped_ = t;
}

void Recorder::restore_stepping(TaskBase* t) noexcept {
  if (stepped_) stepped_->release();
  stepped_ = t;
}

void Recorder::task_done(TaskBase* t) {
  if (!sampled()) return;
  record(EventKind::task_done, t->id(), 0);
}

void Recorder::transport_event(EventKind kind, std::uint64_t transport, double value) {
  if (kind == EventKind::write_buffer && !sampled()) return;
  record(kind, transport, value);
}

void Recorder::exception(const ExceptionContext& c) {
  if (exceptions_.size() >= kMaxExceptionsPerWindow) {
    ++dropped_;
    return;
  }
  ExceptionInfo e;
  e.time = clock();
  e.message = c.message;
  e.exception = c.exception_text();
  e.file = c.source.file ? c.source.file : "";
  e.line = c.source.line;
  exceptions_.push_back(std::move(e));
  record(EventKind::exception, exceptions_.size() - 1, 0);
}

void Recorder::slow_callback(detail::ReadyEntry entry, const char* name, double duration) {
  const SourceLocation where = detail::ready_entry_source(entry);
  if (exceptions_.size() < kMaxExceptionsPerWindow) {
    ExceptionInfo e;
    e.time = clock();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", duration);
    e.message = std::string("Executing <Handle ") + name + "> took " + buf + " seconds";
    e.file = where.file ? where.file : "";
    e.line = where.line;
    e.duration = duration;
    e.slow = true;
    exceptions_.push_back(std::move(e));
  }
  record(EventKind::slow_callback, entry.id(), duration, name, where.file, where.line);
}

void Recorder::pass_done(double start, double polled, double timers_done, double end,
                         std::size_t ran) {
  ++window_passes_;
  window_poll_ += polled - start;
  window_timers_ += timers_done - polled;
  window_ready_ += end - timers_done;
  window_depth_max_ = std::max<std::uint64_t>(window_depth_max_, ran);
  if (++pass_tick_ >= pass_stride_ && passes_.size() < options_.pass_capacity) {
    pass_tick_ = 0;
    passes_.push_back(PassSample{
        start, static_cast<float>(polled - start), static_cast<float>(timers_done - polled),
        static_cast<float>(end - timers_done), static_cast<std::uint32_t>(ran)});
  }
  if (end >= next_publish_ || feed_->take_request()) publish(end);
}

void Recorder::fill_state(Snapshot& s) {
  EventLoop& L = loop_;
  s.time = clock();
  Metrics& m = s.metrics;
  m.iterations = L.iterations_;
  m.ready_depth = L.ready_.size();
  m.timers = L.timers_.size();
  m.cancelled_timers = L.timer_cancelled_count_;
  m.dropped_events = dropped_;
  auto live = [&m](HandleKind k) -> std::uint64_t& { return m.live[static_cast<std::size_t>(k)]; };
  live(HandleKind::callback) = L.ready_.size();
  live(HandleKind::timer) = L.timers_.size() - L.timer_cancelled_count_;
  live(HandleKind::future) = L.live_futures_ >= L.task_count_ ? L.live_futures_ - L.task_count_ : 0;
  live(HandleKind::server) = L.servers_.size();
  for (const auto& [fd, w] : L.fd_watches_)
    live(HandleKind::fd_watch) += (w.callbacks[0] ? 1 : 0) + (w.callbacks[1] ? 1 : 0);
  live(HandleKind::signal_handler) = L.signal_handlers_.size();
  live(HandleKind::executor_job) = L.executor_jobs_.size();
  live(HandleKind::async_generator) = L.asyncgen_count_;

  s.ready_total = L.ready_.size();
  const std::size_t nready = std::min(L.ready_.size(), options_.max_ready);
  s.ready.reserve(nready);
  for (std::size_t i = 0; i < nready; ++i) {
    const detail::ReadyEntry e = L.ready_.at(i);
    const SourceLocation where = detail::ready_entry_source(e);
    s.ready.push_back(HandleInfo{
        detail::ready_entry_name(e), where.file ? where.file : "", where.line,
        e.is_record() && (e.record() == nullptr || e.record()->has(detail::kHandleCancelled)), 0});
  }

  s.timers_total = L.timers_.size();
  std::vector<detail::HandleRecord*> timers;
  timers.reserve(L.timers_.size());
  for (auto e : L.timers_) timers.push_back(L.pool_->at(e.index));
  const std::size_t ntimers = std::min(timers.size(), options_.max_timers);
  std::partial_sort(timers.begin(), timers.begin() + static_cast<std::ptrdiff_t>(ntimers),
                    timers.end(), [](auto a, auto b) { return a->when < b->when; });
  s.timers.reserve(ntimers);
  for (std::size_t i = 0; i < ntimers; ++i) {
    detail::HandleRecord* r = timers[i];
    const SourceLocation where = detail::record_where(r);
    s.timers.push_back(HandleInfo{detail::ready_entry_name(r), where.file, where.line,
                                  r->has(detail::kHandleCancelled), r->when});
  }

  std::size_t ntasks = 0;
  for (TaskBase* t = L.tasks_head_; t && ntasks < options_.max_tasks; t = t->next_task) ++ntasks;
  s.tasks.reserve(ntasks);
  for (TaskBase* t = L.tasks_head_; t; t = t->next_task) {
    if (!t->done()) ++live(HandleKind::task);
    if (s.tasks.size() >= options_.max_tasks) continue;
    TaskInfo& ti = s.tasks.emplace_back();  // built in place: a row is moved nowhere
    ti.id = t->id();
    ti.name = t->get_name();
    ti.state = !t->done()       ? (L.current_task_ == t ? "running" : "pending")
               : t->cancelled() ? "cancelled"
               : t->failed()    ? "failed"
                                : "done";
    ti.created = t->created_time();
    ti.runs = t->run_count();
    ti.busy = t->busy_time();
    ti.file = Text::of_static(t->created_at().file ? t->created_at().file : "");
    ti.line = t->created_at().line;
    // Source files, coroutine names and most descriptions are static: pointers, not copies.
    if (!t->done()) ti.await_chain.reserve(2);  // most chains: a coroutine and what it awaits
    t->for_each_await([&ti](const char* function, const AwaitRecord& awaiting, const char* fixed,
                            std::string& scratch) {
      const bool placed = awaiting.kind != AwaitRecord::Kind::none;
      const char* file = placed && awaiting.where.file ? awaiting.where.file : "";
      ti.await_chain.push_back(AwaitInfo{Text::of_static(function ? function : ""),
                                         fixed ? Text::of_static(fixed) : Text(std::move(scratch)),
                                         Text::of_static(file), placed ? awaiting.where.line : 0});
    });
  }

  for (const auto& [server, id] : L.servers_) {
    ServerInfo si;
    si.id = id;
    for (const ServerSocket& sock : server->sockets()) {
      if (!si.address.empty()) si.address += ", ";
      si.address += sock.address.to_string();
    }
    si.serving = server->is_serving();
    si.connections = server->active_connections();
    s.servers.push_back(std::move(si));
  }
  std::size_t ntransports = 0;
  for (TransportProbe* p = L.transports_head_; p; p = p->probe_next) ++ntransports;
  s.transports.reserve(ntransports);
  for (TransportProbe* p = L.transports_head_; p; p = p->probe_next) {
    TransportInfo& ti = s.transports.emplace_back();
    const void* server = nullptr;
    p->describe(ti, server);
    ti.id = p->inspect_id;
    ti.bytes_in = p->bytes_in;
    ti.bytes_out = p->bytes_out;
    for (const auto& [sv, id] : L.servers_)
      if (sv == server) ti.server = id;
    if (ti.kind == "subprocess")
      ++live(HandleKind::subprocess_transport);
    else if (ti.kind == "udp" || ti.kind == "unix datagram")
      ++live(HandleKind::datagram_transport);
    else
      ++live(HandleKind::stream_transport);
  }
}

Snapshot Recorder::capture() {
  Snapshot s;
  s.seq = seq_;
  fill_state(s);
  return s;
}

void Recorder::publish(double now) {
  calibrate_ticks();
  auto s = std::make_shared<Snapshot>();
  s->seq = ++seq_;
  fill_state(*s);
  Metrics& m = s->metrics;
  const double span = now - window_start_;
  s->interval = span;
  m.iterations_per_s = span > 0 ? static_cast<double>(window_passes_) / span : 0;
  if (window_passes_) {
    m.poll_s = window_poll_ / static_cast<double>(window_passes_);
    m.timers_s = window_timers_ / static_cast<double>(window_passes_);
    m.ready_s = window_ready_ / static_cast<double>(window_passes_);
  }
  m.lag_max = window_lag_max_;
  m.lag_mean = window_lag_count_ ? window_lag_sum_ / static_cast<double>(window_lag_count_) : 0;
  m.ready_depth_max = std::max<std::uint64_t>(window_depth_max_, m.ready_depth);
  m.callbacks = window_callbacks_;
  m.event_stride = stride_;
  // The next window's strides keep what is kept near the budgets: the events this window would
  // have kept at stride 1 (what it kept, times its stride), over the budget. A quiet or short
  // window (a publish on request) halves a stride rather than resetting it, so the next window
  // is not flooded and bursts stay bounded.
  const auto stride_for = [](std::uint64_t unsampled, std::size_t budget, std::uint64_t current) {
    const std::uint64_t b = std::max<std::size_t>(budget, 1);
    return std::max<std::uint64_t>({1, (unsampled + b - 1) / b, current / 2});
  };
  const std::uint64_t next_stride =
      stride_for(events_.size() * stride_, options_.event_budget, stride_);
  const std::uint64_t next_pass_stride =
      stride_for(window_passes_, options_.pass_budget, pass_stride_);
  // The events go with the snapshot; the recorder starts a fresh window.
  s->events.swap(events_);
  s->passes.swap(passes_);
  s->exceptions.swap(exceptions_);
  events_.reserve(std::min<std::size_t>(options_.event_capacity,
                                        std::max<std::size_t>(s->events.size(), 4096)));
  if (!feed_->try_publish(s, options_.history)) {
    // A reader holds the feed this instant: keep the window open and try again next pass.
    s->events.swap(events_);
    s->passes.swap(passes_);
    s->exceptions.swap(exceptions_);
    --seq_;
    return;
  }
  window_start_ = now;
  next_publish_ = now + options_.interval;
  stride_ = next_stride;
  tick_ = 0;
  burst_limit_ = next_burst_limit();
  pass_stride_ = next_pass_stride;
  window_passes_ = window_callbacks_ = window_depth_max_ = window_lag_count_ = 0;
  window_poll_ = window_timers_ = window_ready_ = window_lag_sum_ = window_lag_max_ = 0;
}

// ---- The switch ---------------------------------------------------------------------------------

Recorder& enable(EventLoop& loop, Options options) {
#if EDDY_INSPECT
  loop.check_closed();
  if (!(options.interval > 0)) throw ValueError("inspect::Options::interval must be > 0");
  if (!loop.inspector_) loop.inspector_ = new Recorder(loop, options);
  return *loop.inspector_;
#else
  (void)loop;
  (void)options;
  throw NotSupportedError("inspect::enable", "this build",
                          "Eddy was built with -DEDDY_INSPECTOR=OFF");
#endif
}

void disable(EventLoop& loop) {
  delete std::exchange(loop.inspector_, nullptr);
}

Recorder* recorder(EventLoop& loop) noexcept {
  return loop.inspector();
}

}  // namespace eddy::inspect
