// The inspector agent across threads: the inspected loop (running the demo workload) publishes on
// its thread, the agent serves from its own, and a client loop on the test's thread attaches with
// Eddy's streams and decodes into the inspector's model. Runs under TSan too ([threads]).
#include <future>
#include <thread>

#include "demo_workload.hpp"
#include "eddy/inspector_agent.hpp"
#include "model.hpp"
#include "support.hpp"

using namespace eddy;

#ifndef __EMSCRIPTEN__

namespace {

// Reads until `updates` updates arrived (or EOF); everything goes through the model.
Coro<void> watch(std::uint16_t port, std::string token, std::size_t updates,
                 inspector::Model* model) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  writer->write(inspect::client_hello(token));
  while (model->updates() < updates) {
    std::string data = co_await reader->read(1 << 20);
    if (data.empty() || !model->feed(data)) break;
  }
  writer->close();
  co_await writer->wait_closed();
}

}  // namespace

TEST_CASE("inspect agent: a client loop on another thread attaches; a wrong token is refused",
          "[inspect][threads]") {
  LoopRef inspected = new_event_loop();
  std::promise<std::pair<std::uint16_t, std::string>> ready;
  Future<void> stop;
  std::thread worker([&] {
    inspector::ServeOptions options;
    options.interval = 0.05;
    auto agent = inspector::serve(*inspected, options);
    stop = inspected->create_future<void>();
    ready.set_value({agent->port(), agent->token()});
    inspected->run_until_complete(inspector::run_demo(stop));
    agent.reset();
    inspected->close();
  });
  auto [port, token] = ready.get_future().get();
  CHECK(token.size() == 32);

  LoopRef client = new_event_loop();
  inspector::Model model;
  client->run_until_complete(watch(port, token, 5, &model));
  CHECK(model.error().empty());
  CHECK(model.welcomed());
  CHECK(model.updates() >= 5);
  REQUIRE(model.latest());
  CHECK(model.latest()->servers.size() == 2);
  CHECK(model.latest()->tasks.size() >= 5);

  inspector::Model refused;
  client->run_until_complete(watch(port, "not-the-token", 1, &refused));
  CHECK(refused.error().find("invalid token") != std::string::npos);
  CHECK(refused.updates() == 0);
  client->close();

  inspected->call_soon_threadsafe([&] { stop.set_result(); });
  worker.join();
  CHECK(inspected->stats().live_transports == 0);
  CHECK(inspected->stats().live_tasks == 0);
}

#else

TEST_CASE("inspect agent: a page cannot serve; NotSupportedError names the call and target",
          "[inspect]") {
  LoopRef loop = new_event_loop();
  try {
    inspector::serve(*loop);
    FAIL("serve() returned");
  } catch (const NotSupportedError& e) {
    CHECK(e.method() == "inspector::serve");
    CHECK(std::string(e.what()).find("wasm") != std::string::npos);
  }
  loop->close();
}

#endif
