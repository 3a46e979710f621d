// A subprocess pipeline with asyncio's SubprocessProtocol: feeds text to `sort`, then what `sort`
// printed to `uniq -c` (one process after the other, each through its pipes), and prints the result
// with each child's return code.
#include <cstdio>
#include <string>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

using namespace eddy;

struct Collect final : SubprocessProtocol {
  explicit Collect(EventLoop& loop) : finished(loop.create_future<void>()) {}
  std::string out;
  Future<void> finished;
  void pipe_data_received(int fd, std::string_view data) override {
    if (fd == 1) out += data;
  }
  void connection_lost(std::exception_ptr) override { finished.set_result(); }
};

static Coro<std::string> run_through(EventLoop& loop, std::vector<std::string> args, std::string input, int* rc) {
  auto p = std::make_shared<Collect>(loop);
  SubprocessProtocolFactory factory = [p] { return p; };  // named: see docs/api.md on gcc 12
  SubprocessConnection c = co_await loop.subprocess_exec(factory, std::move(args));
  auto* in = dynamic_cast<WriteTransport*>(c.first->get_pipe_transport(0).get());
  in->write(input);
  in->write_eof();
  co_await p->finished;
  *rc = *c.first->get_returncode();
  co_return p->out;
}

static Coro<int> pipeline() {
  EventLoop& loop = get_running_loop();
  int rc_sort = -1, rc_uniq = -1;
  // (no braced lists in coroutine bodies: gcc 12 cannot keep their arrays in the frame)
  std::vector<std::string> sort_args(1, "sort"), uniq_args(1, "uniq");
  uniq_args.emplace_back("-c");
  std::string sorted = co_await run_through(loop, sort_args, "pear\napple\npear\nfig\napple\npear\n", &rc_sort);
  std::string counted = co_await run_through(loop, uniq_args, sorted, &rc_uniq);
  std::printf("%s", counted.c_str());
  std::printf("sort exited %d, uniq exited %d\n", rc_sort, rc_uniq);
  co_return rc_sort == 0 && rc_uniq == 0 && counted.find("3 pear") != std::string::npos ? 0 : 1;
}

int main() {
  return examples::run_example([] { return eddy::run(pipeline()); });
}
