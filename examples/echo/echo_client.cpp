// Echo client with asyncio's Protocol API: `eddy_echo_client [HOST PORT | unix:PATH] MESSAGE...`.
// Sends the messages, half-closes (write_eof), prints what comes back, and checks it is what it
// sent. Exit status 0 when the echo matched.
#include <cstdio>
#include <string>
#include <vector>

#include "eddy/eddy.hpp"
#include "example_main.hpp"

using namespace eddy;

struct Client final : Protocol {
  explicit Client(Future<void> done) : done(std::move(done)) {}
  Future<void> done;
  std::string received, error;
  void data_received(std::string_view data) override { received += data; }
  bool eof_received() override {
    std::printf("server finished sending\n");
    return false;  // close our side too
  }
  void connection_lost(std::exception_ptr exc) override {
    error = eddy::exception_text(exc);
    done.set_result();
  }
};

static Coro<int> talk(std::vector<std::string> args) {
  EventLoop& loop = get_running_loop();
  auto client = std::make_shared<Client>(loop.create_future<void>());
  ProtocolFactory factory = [client] { return client; };
  std::size_t first_message = 2;
  Connection c;
  if (args[0].rfind("unix:", 0) == 0) {
    c = co_await loop.create_unix_connection(factory, args[0].substr(5));
    first_message = 1;
  } else {
    c = co_await loop.create_connection(factory, args[0], examples::parse_port(args[1]));
  }
  std::string sent;
  for (std::size_t i = first_message; i < args.size(); ++i) {
    c.first->write(args[i] + "\n");
    sent += args[i] + "\n";
  }
  c.first->write_eof();
  co_await client->done;
  if (!client->error.empty()) std::printf("connection lost: %s\n", client->error.c_str());
  const std::string& got = client->received;
  std::printf("echoed: %s%s", got.c_str(), got.empty() || got.back() != '\n' ? "\n" : "");
  const bool ok = got == sent;
  std::printf("%s\n", ok ? "echo matches" : "echo DIFFERS from what was sent");
  co_return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: %s HOST PORT MESSAGE... | unix:PATH MESSAGE...\n", argv[0]);
    return 2;
  }
  return examples::run_example([&] { return eddy::run(talk(std::move(args))); });
}
