// The demo workload (see demo_workload.hpp). Every piece is an ordinary Eddy program; the names
// given to tasks and callbacks are what the inspector shows.
#include "demo_workload.hpp"

#include <chrono>
#include <deque>
#include <string>
#include <vector>

namespace eddy::inspector {

namespace {

// Reads a chunk, then rests with reading paused: its peer's writer backs up past high water.
class SlowReader : public Protocol {
 public:
  SlowReader(EventLoop& loop, double pause, std::shared_ptr<DemoStats> stats)
      : loop_(loop), pause_(pause), stats_(std::move(stats)) {}
  void connection_made(Ref<Transport> transport) override { transport_ = transport; }
  void data_received(std::string_view data) override {
    stats_->read_slowly += data.size();
    if (!transport_ || transport_->is_closing()) return;
    transport_->pause_reading();
    resume_ = loop_.call_later(pause_, [this] {
      if (transport_ && !transport_->is_closing()) transport_->resume_reading();
    });
  }
  void connection_lost(std::exception_ptr) override {
    resume_.cancel();
    transport_ = nullptr;
  }

 private:
  EventLoop& loop_;
  double pause_;
  std::shared_ptr<DemoStats> stats_;
  Ref<Transport> transport_;
  TimerHandle resume_;
};

struct BurstCallback {
  std::shared_ptr<DemoStats> stats;
  void operator()() const { ++stats->ticks; }
  const char* callback_name() const noexcept { return "demo::burst_callback"; }
};

struct FailingCallback {
  void operator()() const { throw RuntimeError("demo: a callback failed on purpose"); }
  const char* callback_name() const noexcept { return "demo::failing_callback"; }
};

struct SlowCallback {
  void operator()() const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(120);
    while (std::chrono::steady_clock::now() < until) {
    }
  }
  const char* callback_name() const noexcept { return "demo::slow_callback"; }
};

struct FarTimer {
  void operator()() const {}
  const char* callback_name() const noexcept { return "demo::far_timer"; }
};

Coro<void> echo_handler(std::shared_ptr<StreamReader> reader,
                        std::shared_ptr<StreamWriter> writer) {
  while (true) {
    std::string line = co_await reader->readline();
    if (line.empty()) break;
    writer->write(line);
    co_await writer->drain();
  }
  writer->close();
}

Coro<void> echo_client(std::uint16_t port, int index, Future<void> stop,
                       std::shared_ptr<DemoStats> stats) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  const std::string line = "hello from client " + std::to_string(index) + "\n";
  while (!stop.done()) {
    writer->write(line);
    co_await writer->drain();
    std::string back = co_await reader->readline();
    if (back.empty()) break;
    stats->echoed += back.size();
    co_await sleep(0.01 * (index + 1));
  }
  writer->close();
  co_await writer->wait_closed();
}

Coro<void> fast_writer(std::uint16_t port, std::size_t chunk, Future<void> stop,
                       std::shared_ptr<DemoStats> stats) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  const std::string data(chunk, 'x');
  while (!stop.done()) {
    writer->write(data);
    stats->written += data.size();
    co_await writer->drain();  // waits while the transport is paused (above high water)
    co_await sleep(0);
  }
  writer->transport()->abort();
}

Coro<void> worker(std::shared_ptr<Queue<int>> jobs, std::shared_ptr<DemoStats> stats) {
  while (true) {
    int job = co_await jobs->get();
    co_await sleep(0.002 * (job % 5 + 1));
    ++stats->jobs;
    jobs->task_done();
  }
}

Coro<void> ticker(EventLoop& loop, DemoOptions options, std::shared_ptr<Queue<int>> jobs,
                  Future<void> stop, std::shared_ptr<DemoStats> stats) {
  std::deque<TimerHandle> far;
  std::uint64_t n = 0;
  while (!stop.done()) {
    ++n;
    for (std::size_t i = 0; i < options.burst; ++i) loop.call_soon(BurstCallback{stats});
    for (int j = 0; j < 8; ++j)
      if (!jobs->full()) jobs->put_nowait(static_cast<int>(n * 8 + j));
    far.push_back(loop.call_later(5.0 + static_cast<double>(n % 25), FarTimer{}));
    if (n % 2 == 0) far.back().cancel();  // cancelled but not yet purged: the inspector counts them
    while (far.size() > 60) {
      far.front().cancel();
      far.pop_front();
    }
    if (options.raise_exceptions && n % 40 == 0) loop.call_soon(FailingCallback{});
    if (options.slow_callbacks && n % 100 == 50) loop.call_soon(SlowCallback{});
    co_await sleep(options.tick);
  }
  for (auto& t : far) t.cancel();
}

// Awaits a cancelled task (a helper coroutine: Emscripten mishandles try/co_await inside a loop).
Coro<void> reap(Task<void> task) {
  try {
    co_await task;
  } catch (const CancelledError&) {
  }
}

}  // namespace

Coro<void> run_demo(Future<void> stop, DemoOptions options, std::shared_ptr<DemoStats> stats) {
  EventLoop& loop = get_running_loop();
  if (!stats) stats = std::make_shared<DemoStats>();
  ClientConnectedCallback handler = echo_handler;
  Ref<Server> echo = co_await start_server(handler, "127.0.0.1", 0);
  auto slow_factory = [&loop, options, stats] {
    return std::static_pointer_cast<BaseProtocol>(
        std::make_shared<SlowReader>(loop, options.slow_read_pause, stats));
  };
  Ref<Server> sink = co_await loop.create_server(slow_factory, "127.0.0.1", 0);
  const std::uint16_t echo_port = echo->sockets()[0].address.port;
  const std::uint16_t sink_port = sink->sockets()[0].address.port;

  auto jobs = std::make_shared<Queue<int>>(64);
  std::vector<Task<void>> tasks;
  for (int i = 0; i < options.echo_clients; ++i)
    tasks.push_back(loop.create_task(echo_client(echo_port, i, stop, stats),
                                     "echo-client-" + std::to_string(i)));
  tasks.push_back(
      loop.create_task(fast_writer(sink_port, options.chunk, stop, stats), "fast-writer"));
  for (int i = 0; i < options.workers; ++i)
    tasks.push_back(loop.create_task(worker(jobs, stats), "worker-" + std::to_string(i)));
  tasks.push_back(loop.create_task(ticker(loop, options, jobs, stop, stats), "ticker"));

  co_await stop;
  for (auto& t : tasks) t.cancel();
  for (auto& t : tasks) co_await reap(t);
  echo->close();
  sink->close();
  echo->close_clients();
  sink->close_clients();
  co_await echo->wait_closed();
  co_await sink->wait_closed();
}

}  // namespace eddy::inspector
