// The browser inspector: the same views, compiled to WebAssembly + WebGL2 (Emscripten's GLFW).
// Opened plainly it inspects a loop running in this page (the demo workload on the page's
// virtual network, driven by the page's event loop). Opened from an agent as
// http://HOST:PORT/#token=T it attaches to that native process over the agent's WebSocket,
// reached through the virtual network's WebSocket route with Eddy's own streams.
#include <GLES3/gl3.h>
#include <GLFW/glfw3.h>
#include <emscripten.h>

#include <cstdio>
#include <string>

#include "app.hpp"
#include "demo_workload.hpp"
#include "eddy/eddy.hpp"
#include "host/host_driver.hpp"
#include "imgui.h"
#include "imgui_impl_glfw.h"
#include "imgui_impl_opengl3.h"
#include "remote.hpp"
#include "selector/virtual_network.hpp"

using namespace eddy;
using namespace eddy::inspector;

namespace {

// Window = viewport size, no canvas-resize callback (toolchain notes P7).
// clang-format off
EM_JS(int, viewport_width, (), { return window.innerWidth; });
EM_JS(int, viewport_height, (), { return window.innerHeight; });
EM_JS(char*, location_hash, (), {
  var s = decodeURIComponent(window.location.hash || "");
  var n = lengthBytesUTF8(s) + 1;
  var p = _malloc(n);
  stringToUTF8(s, p, n);
  return p;
});
EM_JS(char*, location_host, (), {
  var s = window.location.host;
  var n = lengthBytesUTF8(s) + 1;
  var p = _malloc(n);
  stringToUTF8(s, p, n);
  return p;
});
EM_JS(void, offer_download, (const char* name, const char* data, int size), {
  var bytes = HEAPU8.slice(data, data + size);
  var a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes]));
  a.download = UTF8ToString(name);
  document.body.appendChild(a);
  a.click();
  a.remove();
});
// clang-format on

// A string EM_JS allocated, taken over and freed.
std::string take_js_string(char* p) {
  std::string s(p);
  std::free(p);
  return s;
}

// "token=T&agent=HOST:PORT&tab=transports" -> the value of `key`.
std::string hash_param(const std::string& hash, const std::string& key) {
  std::size_t at = 0;
  while (at < hash.size()) {
    const std::size_t end = hash.find('&', at);
    const std::string part =
        hash.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (part.compare(0, key.size() + 1, key + "=") == 0) return part.substr(key.size() + 1);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return {};
}

LoopRef g_loop;
GLFWwindow* g_window = nullptr;
App* g_app = nullptr;
std::string g_summary;

// The page's own loop, inspected in-process.
class PageDemoSource final : public Source {
 public:
  explicit PageDemoSource(EventLoop& loop) : feed_(inspect::enable(loop).feed()) {
    stop_ = loop.create_future<void>();
    DemoOptions d;
    d.raise_exceptions = true;
    demo_ = loop.create_task(run_demo(stop_, d), "demo");
  }
  void pump(Model& model) override { feed_.pump(model); }
  std::string describe() const override { return "demo workload in this page (virtual network)"; }

 private:
  FeedSource feed_;
  Future<void> stop_;
  Task<void> demo_;
};

// A native process's agent, over its WebSocket.
class PageRemoteSource final : public Source {
 public:
  PageRemoteSource(EventLoop& loop, const std::string& agent, const std::string& token)
      : where_(agent) {
    // host:port on the virtual network -> the agent's WebSocket endpoint.
    vnet::network(loop).route_websocket("agent.inspector", 80, "ws://" + agent + "/ws");
    stop_ = loop.create_future<void>();
    auto sink = [this](std::string_view bytes) {
      pending_.append(bytes.data(), bytes.size());
      return true;
    };
    task_ = loop.create_task(watch(token, sink), "inspector-client");
  }
  void pump(Model& model) override {
    if (!pending_.empty()) {
      model.feed(pending_);
      pending_.clear();
    }
  }
  std::string describe() const override { return "attached to " + where_; }
  std::string status() const override { return status_; }

 private:
  Coro<void> watch(std::string token, std::function<bool(std::string_view)> sink) {
    try {
      co_await attach("agent.inspector", 80, token, sink, stop_);
      status_ = "the agent closed the connection";
    } catch (const std::exception& e) {
      status_ = std::string("cannot attach: ") + e.what();
    }
  }
  std::string where_, pending_, status_;
  Future<void> stop_;
  Task<void> task_;
};

void frame() {
  glfwPollEvents();
  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  ImGui::NewFrame();
  g_app->frame();
  ImGui::Render();
  int w, h;
  glfwGetFramebufferSize(g_window, &w, &h);
  glViewport(0, 0, w, h);
  glClearColor(0.10f, 0.12f, 0.16f, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  glfwSwapBuffers(g_window);
}

}  // namespace

extern "C" {
// For the page and its tests: what the views showed in the last frame, as JSON.
EMSCRIPTEN_KEEPALIVE const char* inspector_summary() {
  g_summary = g_app ? shown_json(g_app->model, g_app->view) : "{}";
  return g_summary.c_str();
}
// Pause or resume the live view; scrub to a frame while paused (-1: the latest).
EMSCRIPTEN_KEEPALIVE void inspector_pause(int paused, int frame) {
  if (!g_app) return;
  g_app->view.paused = paused != 0;
  const int n = static_cast<int>(g_app->model.frame_count());
  g_app->view.frame_index = frame < 0 ? n - 1 : frame;
}
}

int main() {
  if (!glfwInit()) {
    std::puts("glfwInit failed");
    return 1;
  }
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
  glfwWindowHint(GLFW_CLIENT_API, GLFW_OPENGL_ES_API);
  g_window =
      glfwCreateWindow(viewport_width(), viewport_height(), "Eddy inspector", nullptr, nullptr);
  if (!g_window) {
    std::puts("glfwCreateWindow failed");
    return 1;
  }
  glfwMakeContextCurrent(g_window);
  glfwSwapInterval(1);
  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;
  apply_style();
  ImGui_ImplGlfw_InitForOpenGL(g_window, true);
  ImGui_ImplOpenGL3_Init("#version 300 es");

  g_loop = new_event_loop();
  g_loop->set_exception_handler([](EventLoop&, const ExceptionContext&) {});  // the views show them
  eddy::wasm::drive(*g_loop);
  std::string hash = take_js_string(location_hash());
  if (!hash.empty() && hash[0] == '#') hash.erase(0, 1);
  AppOptions options;
  options.tab = hash_param(hash, "tab");
  const std::string token = hash_param(hash, "token");
  std::string agent = hash_param(hash, "agent");
  if (agent.empty() && !token.empty()) agent = take_js_string(location_host());
  std::unique_ptr<Source> source;
  if (!token.empty())
    source = std::make_unique<PageRemoteSource>(*g_loop, agent, token);
  else
    source = std::make_unique<PageDemoSource>(*g_loop);
  g_app = new App(options, std::move(source));
  g_app->view.can_record = true;
  g_app->save = [](const std::string& name, const std::string& data) {
    offer_download(name.c_str(), data.data(), static_cast<int>(data.size()));
  };
  emscripten_set_main_loop(frame, 0, true);  // never returns
  return 0;
}
