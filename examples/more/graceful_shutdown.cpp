// Signal-driven graceful shutdown: a server runs until SIGTERM or SIGINT, then stops accepting,
// lets open connections finish, and exits 0. `eddy_graceful_shutdown [--self-test]`: with
// --self-test it sends itself SIGTERM after a moment (used by the test suite).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

using namespace eddy;

static Coro<int> serve(bool self_test) {
  EventLoop& loop = get_running_loop();
  Ref<Server> server = co_await loop.create_server([] { return std::make_shared<Protocol>(); }, "127.0.0.1", 0);
  std::printf("serving on %s; stop with Ctrl-C or `kill %d` (SIGTERM)\n",
              server->sockets()[0].address.to_string().c_str(), static_cast<int>(::getpid()));
  std::fflush(stdout);
  Future<int> stop = loop.create_future<int>();
  auto stop_on = [&loop, stop](int sig) {
    loop.add_signal_handler(sig, [stop, sig]() mutable {
      if (!stop.done()) stop.set_result(sig);
    });
  };
  stop_on(SIGTERM);
  stop_on(SIGINT);
  if (self_test) loop.call_later(0.1, [] { ::kill(::getpid(), SIGTERM); });
  const int sig = co_await stop;
  std::printf("got %s: closing the server, waiting for %zu connection(s)\n", strsignal(sig),
              server->active_connections());
  server->close();
  co_await server->wait_closed();
  loop.remove_signal_handler(SIGTERM);
  loop.remove_signal_handler(SIGINT);
  std::printf("stopped cleanly\n");
  co_return 0;
}

int main(int argc, char** argv) {
  const bool self_test = argc > 1 && std::strcmp(argv[1], "--self-test") == 0;
  return examples::run_example([&] { return eddy::run(serve(self_test)); });
}
