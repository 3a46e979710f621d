// eddy-inspector, the desktop app: SDL2 + OpenGL3. Its sources run Eddy loops on helper threads
// (the demo workload in-process, or the connection to a remote agent); the GUI thread only reads
// what they publish. Without a display, the demo is served to the browser inspector instead.
#include <SDL.h>
#include <SDL_opengl.h>

#include <sys/stat.h>
#include <csignal>
#include <cstdio>
#include <future>
#include <mutex>
#include <thread>

#include "app.hpp"
#include "demo_workload.hpp"
#include "eddy/eddy.hpp"
#include "eddy/inspector_agent.hpp"
#include "imgui.h"
#include "imgui_impl_opengl3.h"
#include "imgui_impl_sdl2.h"
#include "remote.hpp"

using namespace eddy;
using namespace eddy::inspector;

namespace {

DemoOptions demo_options() {
  DemoOptions d;
  d.raise_exceptions = true;
  d.slow_callbacks = true;
  return d;
}

// The demo workload on its own loop thread, inspected in-process through its Feed.
class ThreadDemoSource final : public Source {
 public:
  ThreadDemoSource() {
    std::promise<std::shared_ptr<inspect::Feed>> ready;
    auto feed = ready.get_future();
    // The loop is made here and only run on the thread: this object keeps it (and its memory)
    // alive until the thread is joined.
    loop_ = new_event_loop();
    thread_ = std::thread([this, &ready] {
      EventLoop& loop = *loop_;
      loop.set_exception_handler(
          [](EventLoop&, const ExceptionContext&) {});  // the inspector shows them
      ready.set_value(inspect::enable(loop).feed());
      stop_ = loop.create_future<void>();
      started_.set_value();
      loop.run_until_complete(run_demo(stop_, demo_options()));
      loop.close();
    });
    source_ = std::make_unique<FeedSource>(feed.get());
    started_.get_future().wait();
  }
  ~ThreadDemoSource() override {
    try {
      loop_->call_soon_threadsafe([this] { stop_.set_result(); });
    } catch (const RuntimeError&) {  // the loop already ended
    }
    thread_.join();
  }
  void pump(Model& model) override { source_->pump(model); }
  std::string describe() const override { return "demo workload (in-process)"; }

 private:
  LoopRef loop_;
  std::thread thread_;
  std::promise<void> started_;
  Future<void> stop_;
  std::unique_ptr<FeedSource> source_;
};

// A remote agent, read by an Eddy loop on a helper thread.
class ThreadRemoteSource final : public Source {
 public:
  ThreadRemoteSource(std::string where, std::string token) : where_(std::move(where)) {
    auto [host, port] = split_host_port(where_);
    std::promise<void> started;
    loop_ = new_event_loop();  // run on the thread, kept alive here until it is joined
    thread_ = std::thread([this, &started, host = host, port = port, token = std::move(token)] {
      EventLoop* loop = loop_.get();
      stop_ = loop->create_future<void>();
      started.set_value();
      auto sink = [this](std::string_view bytes) {
        std::lock_guard<std::mutex> lock(mu_);
        bytes_.append(bytes.data(), bytes.size());
        return true;
      };
      try {
        loop->run_until_complete(attach(host, port, token, sink, stop_));
        set_status("the agent closed the connection");
      } catch (const std::exception& e) {
        set_status(std::string("cannot attach: ") + e.what());
      }
      loop->close();
    });
    started.get_future().wait();
  }
  ~ThreadRemoteSource() override {
    try {
      loop_->call_soon_threadsafe([this] {
        if (!stop_.done()) stop_.set_result();
      });
    } catch (const RuntimeError&) {  // the connection already ended and its loop closed
    }
    thread_.join();
  }
  void pump(Model& model) override {
    std::string bytes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bytes.swap(bytes_);
    }
    if (!bytes.empty()) model.feed(bytes);
  }
  std::string describe() const override { return "attached to " + where_; }
  std::string status() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  void set_status(std::string s) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(s);
  }
  std::string where_;
  LoopRef loop_;
  std::thread thread_;
  Future<void> stop_;
  mutable std::mutex mu_;
  std::string bytes_, status_;
};

std::string default_web_root() {
#ifdef EDDY_INSPECTOR_WEB_ROOT
  return EDDY_INSPECTOR_WEB_ROOT;
#else
  return "";
#endif
}

// Headless: the demo workload with the agent, which also serves the browser inspector page.
int serve_demo(const AppOptions& o) {
  LoopRef loop = new_event_loop();
  loop->set_exception_handler([](EventLoop&, const ExceptionContext&) {});
  ServeOptions so;
  so.port = o.port;
  so.token = o.token;
  so.web_root = o.web_root.empty() ? default_web_root() : o.web_root;
  auto agent = serve(*loop, so);
  struct stat st;
  const bool page = !so.web_root.empty() && ::stat((so.web_root + "/index.html").c_str(), &st) == 0;
  std::printf("eddy-inspector: serving the demo workload's loop\n");
  std::printf("  browser inspector: %s%s\n", agent->url().c_str(),
              page ? "" : "  (page not built: cmake --build --preset wasm-release)");
  std::printf("  desktop inspector: eddy-inspector --attach 127.0.0.1:%u --token %s\n",
              agent->port(), agent->token().c_str());
  std::printf("agent: %u %s\n", agent->port(), agent->token().c_str());  // for scripts
  std::fflush(stdout);
  Future<void> stop = loop->create_future<void>();
  auto finish = [stop]() mutable {
    if (!stop.done()) stop.set_result();
  };
  loop->add_signal_handler(SIGINT, finish);
  loop->add_signal_handler(SIGTERM, finish);
  TimerHandle deadline;
  if (o.seconds > 0) deadline = loop->call_later(o.seconds, finish);
  loop->run_until_complete(run_demo(stop, demo_options()));
  deadline.cancel();
  loop->remove_signal_handler(SIGINT);
  loop->remove_signal_handler(SIGTERM);
  std::printf("eddy-inspector: %llu updates sent, %llu connections refused\n",
              static_cast<unsigned long long>(agent->updates_sent()),
              static_cast<unsigned long long>(agent->refused()));
  agent.reset();
  loop->close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  AppOptions options;
  try {
    options = parse_args(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eddy-inspector: %s\n%s", e.what(), usage());
    return 2;
  }
  if (options.help) {
    std::fputs(usage(), stdout);
    return 0;
  }
  if (options.serve) return serve_demo(options);

  // No display to show a window on: SDL would fall back to an offscreen or console driver.
  const bool display =
      SDL_getenv("DISPLAY") || SDL_getenv("WAYLAND_DISPLAY") || SDL_getenv("SDL_VIDEODRIVER");
  SDL_Window* window = nullptr;
  if (display && SDL_Init(SDL_INIT_VIDEO | SDL_INIT_TIMER) == 0) {
    SDL_GL_SetAttribute(SDL_GL_CONTEXT_PROFILE_MASK, SDL_GL_CONTEXT_PROFILE_CORE);
    SDL_GL_SetAttribute(SDL_GL_CONTEXT_MAJOR_VERSION, 3);
    SDL_GL_SetAttribute(SDL_GL_CONTEXT_MINOR_VERSION, 0);
    SDL_GL_SetAttribute(SDL_GL_DOUBLEBUFFER, 1);
    window =
        SDL_CreateWindow("Eddy inspector", SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED, 1280,
                         720, SDL_WINDOW_OPENGL | SDL_WINDOW_RESIZABLE | SDL_WINDOW_ALLOW_HIGHDPI);
  }
  if (!window) {
    if (options.attach.empty() && options.open.empty()) {
      std::printf("eddy-inspector: no display (%s); serving the browser inspector instead\n",
                  display ? SDL_GetError() : "neither DISPLAY nor WAYLAND_DISPLAY is set");
      SDL_Quit();
      return serve_demo(options);
    }
    std::fprintf(stderr, "eddy-inspector: no display: %s\n",
                 display ? SDL_GetError() : "neither DISPLAY nor WAYLAND_DISPLAY is set");
    return 1;
  }
  SDL_GLContext gl = SDL_GL_CreateContext(window);
  if (!gl) {
    std::fprintf(stderr, "eddy-inspector: SDL_GL_CreateContext: %s\n", SDL_GetError());
    return 1;
  }
  SDL_GL_MakeCurrent(window, gl);
  SDL_GL_SetSwapInterval(1);
  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;
  apply_style();
  ImGui_ImplSDL2_InitForOpenGL(window, gl);
  ImGui_ImplOpenGL3_Init("#version 130");

  int rc = 0;
  {
    std::unique_ptr<App> app;
    try {
      std::unique_ptr<Source> source;
      if (!options.attach.empty())
        source = std::make_unique<ThreadRemoteSource>(options.attach, options.token);
      else if (!options.open.empty())
        source = std::make_unique<ReplaySource>(options.open);
      else
        source = std::make_unique<ThreadDemoSource>();
      app = std::make_unique<App>(options, std::move(source));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "eddy-inspector: %s\n", e.what());
      rc = 1;
    }
    bool quit = false;
    while (app && !quit && !app->done()) {
      SDL_Event e;
      while (SDL_PollEvent(&e)) {
        ImGui_ImplSDL2_ProcessEvent(&e);
        if (e.type == SDL_QUIT) quit = true;
      }
      ImGui_ImplOpenGL3_NewFrame();
      ImGui_ImplSDL2_NewFrame();
      ImGui::NewFrame();
      app->frame();
      ImGui::Render();
      int w, h;
      SDL_GL_GetDrawableSize(window, &w, &h);
      glViewport(0, 0, w, h);
      glClearColor(0.10f, 0.12f, 0.16f, 1.0f);
      glClear(GL_COLOR_BUFFER_BIT);
      ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
      SDL_GL_SwapWindow(window);
    }
    if (app) app->finish();
  }
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplSDL2_Shutdown();
  ImGui::DestroyContext();
  SDL_GL_DeleteContext(gl);
  SDL_DestroyWindow(window);
  SDL_Quit();
  return rc;
}
