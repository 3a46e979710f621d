// Eddy's micro benchmarks for the harness in ../shared/bench (same semantics as its
// impls/python/micro.py): `micro TEST N` prints one JSON line.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "eddy/eddy.hpp"

#ifdef __EMSCRIPTEN__
#include <emscripten.h>
// WebAssembly cannot read /proc: ask Node for its peak resident set (KiB); -1 in a browser.
// clang-format off
EM_JS(double, node_peak_rss_kb, (), {
  return typeof process == 'object' && process.resourceUsage ? process.resourceUsage().maxRSS : -1;
});
// clang-format on
#endif

using namespace eddy;
using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

static long peak_rss_kb() {
#ifdef __EMSCRIPTEN__
  return static_cast<long>(node_peak_rss_kb());
#else
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
#endif
}

// Each step captures one pointer, as the C anchor passes one `void*` (see StopAfter below).
struct ChainState {
  EventLoop* loop;
  long count;
  long n;
};

static void call_soon_chain(EventLoop& loop, long n) {
  ChainState state{&loop, 0, n};
  struct Step {
    ChainState* s;
    void operator()() const {
      if (++s->count < s->n)
        s->loop->call_soon(*this);
      else
        s->loop->stop();
    }
  };
  auto t0 = Clock::now();
  loop.call_soon(Step{&state});
  loop.run_forever();
  std::printf(
      "{\"test\": \"call_soon_chain\", \"n\": %ld, \"seconds\": %.6f, \"peak_rss_kb\": %ld}\n", n,
      since(t0), peak_rss_kb());
}

// The callbacks capture one pointer, as the C anchor passes one `void*`; a capture that does not
// fit a handle's 16 inline bytes would cost a heap allocation per call.
struct StopAfter {
  EventLoop* loop;
  long count;
  long target;
  void hit() {
    if (++count == target) loop->stop();
  }
};

static void call_soon_batch(EventLoop& loop, long n) {
  StopAfter state{&loop, 0, n};
  auto cb = [s = &state] { s->hit(); };
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) loop.call_soon(cb);
  double sched = since(t0);
  loop.run_forever();
  std::printf(
      "{\"test\": \"call_soon_batch\", \"n\": %ld, \"seconds\": %.6f, \"schedule_ns\": %.1f, "
      "\"peak_rss_kb\": %ld}\n",
      n, since(t0), sched / n * 1e9, peak_rss_kb());
}

static void timers(EventLoop& loop, long n) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> dist(0.0, 1.0);
  std::vector<double> delays(n);
  for (auto& d : delays) d = dist(rng);
  const long target = n - (n + 1) / 2;
  StopAfter state{&loop, 0, target};
  auto cb = [s = &state] { s->hit(); };
  std::vector<TimerHandle> handles;
  handles.reserve(n);
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) handles.push_back(loop.call_later(delays[i], cb));
  double t1 = since(t0);
  for (long i = 0; i < n; i += 2) handles[i].cancel();
  double t2 = since(t0);
  std::clock_t c2 = std::clock();
  if (target) loop.run_forever();
  double t3 = since(t0);
  double cpu = double(std::clock() - c2) / CLOCKS_PER_SEC;
  std::printf(
      "{\"test\": \"timers\", \"n\": %ld, \"seconds\": %.6f, \"schedule_ns\": %.1f, \"cancel_ns\": "
      "%.1f, "
      "\"run_s\": %.6f, \"fire_cpu_ns\": %.1f, \"peak_rss_kb\": %ld}\n",
      n, t3, t1 / n * 1e9, (t2 - t1) / ((n + 1) / 2) * 1e9, t3 - t2,
      cpu / (target ? target : 1) * 1e9, peak_rss_kb());
}

static Coro<void> noop() {
  co_return;
}

static Coro<void> tasks_main(long n) {
  EventLoop& loop = get_running_loop();
  std::vector<Task<void>> ts;
  ts.reserve(n);
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) ts.push_back(loop.create_task(noop()));
  double created = since(t0);
  co_await gather(std::move(ts));  // as micro.py: one done callback per child
  std::printf(
      "{\"test\": \"tasks\", \"n\": %ld, \"seconds\": %.6f, \"create_ns\": %.1f, \"peak_rss_kb\": "
      "%ld}\n",
      n, since(t0), created / n * 1e9, peak_rss_kb());
}

static Coro<void> ponger(long n, Future<void>* ping, Future<void>* pong) {
  EventLoop& loop = get_running_loop();
  for (long i = 0; i < n; ++i) {
    co_await *ping;
    *ping = loop.create_future<void>();
    pong->set_result();
  }
}

static Coro<void> pingpong_main(long n) {
  EventLoop& loop = get_running_loop();
  Future<void> ping = loop.create_future<void>();
  Future<void> pong;
  auto t0 = Clock::now();
  auto t = loop.create_task(ponger(n, &ping, &pong));
  for (long i = 0; i < n; ++i) {
    pong = loop.create_future<void>();
    ping.set_result();
    co_await pong;
  }
  co_await t;
  std::printf(
      "{\"test\": \"pingpong_future\", \"n\": %ld, \"seconds\": %.6f, \"peak_rss_kb\": %ld}\n", n,
      since(t0), peak_rss_kb());
}

// impls/python/micro.py's pingpong_queue: the ponger gets from q1 and puts on q2, main puts on
// q1 and gets from q2 (both unbounded, so put_nowait as in the spec).
static Coro<void> queue_ponger(long n, Queue<int>* ping, Queue<int>* pong) {
  for (long i = 0; i < n; ++i) {
    int v = co_await ping->get();
    pong->put_nowait(v);
  }
}

static Coro<void> pingpong_queue_main(long n) {
  EventLoop& loop = get_running_loop();
  Queue<int> ping;
  Queue<int> pong;
  auto t0 = Clock::now();
  auto t = loop.create_task(queue_ponger(n, &ping, &pong));
  for (long i = 0; i < n; ++i) {
    ping.put_nowait(static_cast<int>(i));
    int v = co_await pong.get();
    (void)v;
  }
  co_await t;
  std::printf(
      "{\"test\": \"pingpong_queue\", \"n\": %ld, \"seconds\": %.6f, \"peak_rss_kb\": %ld}\n", n,
      since(t0), peak_rss_kb());
}

// Not among the harness's tests: line reads over 64-byte lines fed 100 at a time (a line protocol
// reading what one packet brought), the StreamReader with no transport. `readline` ends lines
// with "\n"; `readuntil` with "\r\n", read by readuntil("\r\n"); `readuntil_list` reads them by
// the list-of-separators overload, which always runs a coroutine.
static Coro<void> line_reads_main(long n, const std::string& test) {
  const bool crlf = test != "readline";
  constexpr long kLinesPerChunk = 100;
  const std::string ending = crlf ? "\r\n" : "\n";
  std::string chunk;
  for (long i = 0; i < kLinesPerChunk; ++i) chunk += std::string(64 - ending.size(), 'x') + ending;
  auto reader = std::make_shared<StreamReader>();
  std::size_t bytes = 0;
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    if (i % kLinesPerChunk == 0) reader->feed_data(chunk);
    // (Each co_await its own statement: gcc 12 destroys a co_await's temporary twice inside ?:.)
    if (test == "readuntil") {
      std::string line = co_await reader->readuntil("\r\n");
      bytes += line.size();
    } else if (test == "readuntil_list") {
      std::vector<std::string> separators(1, ending);
      std::string line = co_await reader->readuntil(std::move(separators));
      bytes += line.size();
    } else {
      std::string line = co_await reader->readline();
      bytes += line.size();
    }
  }
  const double seconds = since(t0);
  if (bytes != static_cast<std::size_t>(n) * 64) std::fprintf(stderr, "line reads: lost bytes\n");
  std::printf("{\"test\": \"%s\", \"n\": %ld, \"seconds\": %.6f, \"peak_rss_kb\": %ld}\n",
              test.c_str(), n, seconds, peak_rss_kb());
}

// Not among the harness's tests: n children of one TaskGroup, each a coroutine that yields once
// (asyncio keeps a group's children in a set; the cost per child must not grow with n).
static Coro<void> yields_once() {
  co_await sleep(0);
}

static Coro<void> taskgroup_main(long n) {
  auto t0 = Clock::now();
  auto body = [n](TaskGroup& group) -> Coro<void> {
    for (long i = 0; i < n; ++i) group.create_task(yields_once());
    co_return;
  };
  co_await TaskGroup::run(body);
  std::printf("{\"test\": \"taskgroup\", \"n\": %ld, \"seconds\": %.6f, \"peak_rss_kb\": %ld}\n", n,
              since(t0), peak_rss_kb());
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(
        stderr,
        "usage: %s call_soon_chain|call_soon_batch|timers|tasks|pingpong_future|pingpong_queue"
        "|readline|readuntil|readuntil_list|taskgroup [N]\n",
        argv[0]);
    return 2;
  }
  const std::string test = argv[1];
  const long n = argc > 2 ? std::atol(argv[2]) : 1000000;
  LoopRef loop = new_event_loop();
  if (test == "call_soon_chain")
    call_soon_chain(*loop, n);
  else if (test == "call_soon_batch")
    call_soon_batch(*loop, n);
  else if (test == "timers")
    timers(*loop, n);
  else if (test == "tasks")
    loop->run_until_complete(tasks_main(n));
  else if (test == "pingpong_future")
    loop->run_until_complete(pingpong_main(n));
  else if (test == "pingpong_queue")
    loop->run_until_complete(pingpong_queue_main(n));
  else if (test == "taskgroup")
    loop->run_until_complete(taskgroup_main(n));
  else if (test == "readline" || test == "readuntil" || test == "readuntil_list")
    loop->run_until_complete(line_reads_main(n, test));
  else {
    std::fprintf(stderr, "unknown test %s\n", test.c_str());
    return 2;
  }
  loop->close();
  return 0;
}
