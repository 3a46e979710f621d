// The apps' shared step and options (see app.hpp).
#include "app.hpp"

#include <fstream>
#include <sstream>

#include "eddy/errors.hpp"
#include "imgui.h"

namespace eddy::inspector {

const char* usage() {
  return "usage: eddy-inspector [--attach HOST:PORT --token TOKEN | --open RECORDING | --serve "
         "[--port P]]\n"
         "                      [--record FILE] [--export TRACE.json] [--summary FILE] [--tab "
         "VIEW]\n"
         "                      [--frames N] [--seconds S] [--web-root DIR]\n"
         "With no source it runs the built-in demo workload (an echo server, clients, a slow "
         "reader)\n"
         "in-process. --serve runs it headless with the agent, serving the browser inspector.\n"
         "--tab opens a view first: overview, ready, timers, tasks, transports or exceptions.\n";
}

std::string tab_choices() {
  std::string s = "(one of";
  for (std::string_view t : kTabNames) (s += ' ') += t;
  return s + ")";
}

AppOptions parse_args(const std::vector<std::string>& args) {
  AppOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw ValueError(a + " needs a value");
      return args[++i];
    };
    auto number = [&](double lo, double hi) {
      const std::string& v = value();
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(d >= lo && d <= hi))
        throw ValueError("bad value for " + a + ": '" + v + "'");
      return d;
    };
    if (a == "--attach")
      o.attach = value();
    else if (a == "--token")
      o.token = value();
    else if (a == "--open")
      o.open = value();
    else if (a == "--serve")
      o.serve = true;
    else if (a == "--port")
      o.port = static_cast<std::uint16_t>(number(0, 65535));
    else if (a == "--frames")
      o.frames = static_cast<int>(number(1, 1e9));
    else if (a == "--seconds")
      o.seconds = number(0.001, 1e9);
    else if (a == "--summary")
      o.summary = value();
    else if (a == "--record")
      o.record = value();
    else if (a == "--export")
      o.export_path = value();
    else if (a == "--tab") {
      o.tab = value();
      if (!is_tab_name(o.tab)) throw ValueError("unknown tab '" + o.tab + "' " + tab_choices());
    } else if (a == "--help" || a == "-h")
      o.help = true;
    else if (a == "--web-root")
      o.web_root = value();
    else if (a == "--e2e-marker")
      continue;  // lets a test find (and clean up) its own processes
    else
      throw ValueError("unknown argument '" + a + "'");
  }
  if (!o.attach.empty() && !o.open.empty())
    throw ValueError("--attach and --open exclude each other");
  if (o.serve && (!o.attach.empty() || !o.open.empty()))
    throw ValueError("--serve runs its own workload");
  return o;
}

void ReplaySource::pump(Model& model) {
  if (loaded_) return;
  loaded_ = true;
  model.open(path_);  // a failure shows as the model's error
}

App::App(AppOptions o, std::unique_ptr<Source> source)
    : options(std::move(o)), source_(std::move(source)) {
  view.source = source_->describe();
  if (is_tab_name(options.tab))
    view.select_tab = options.tab;
  else if (!options.tab.empty())  // the page's #tab=, which has no command line to refuse it
    view.status = "unknown tab '" + options.tab + "' " + tab_choices();
  if (!options.record.empty()) {
    if (model.start_recording(options.record))
      view.status = "recording to " + options.record;
    else
      view.status = "cannot record to " + options.record;
  }
}

void App::frame() {
  source_->pump(model);
  if (std::string s = source_->status(); !s.empty()) view.status = s;
  draw_inspector(model, view);
  if (view.want_record_toggle) {
    view.want_record_toggle = false;
    const std::string path = options.record.empty() ? "eddy-recording.jsonl" : options.record;
    if (model.recording()) {
      model.stop_recording();
      view.status = "recorded " + path;
      if (save) {
        std::ifstream in(path, std::ios::binary);
        std::ostringstream os;
        os << in.rdbuf();
        save(path, os.str());
      }
    } else {
      view.status =
          model.start_recording(path) ? "recording to " + path : "cannot record to " + path;
    }
  }
  if (view.want_export) {
    view.want_export = false;
    const std::string path = options.export_path.empty() ? "eddy-trace.json" : options.export_path;
    if (save) {
      save(path, model.chrome_trace());
    } else {
      std::ofstream(path, std::ios::binary) << model.chrome_trace();
    }
    view.status = "exported " + path + " (open it in ui.perfetto.dev)";
  }
  ++frames_;
  if (started_ < 0) started_ = ImGui::GetTime();
  if (options.frames > 0 && frames_ >= options.frames) done_ = true;
  if (options.seconds > 0 && ImGui::GetTime() - started_ >= options.seconds) done_ = true;
}

void App::finish() {
  if (model.recording()) model.stop_recording();
  if (!options.export_path.empty())
    std::ofstream(options.export_path, std::ios::binary) << model.chrome_trace();
  if (!options.summary.empty())
    std::ofstream(options.summary, std::ios::binary) << shown_json(model, view) << '\n';
}

}  // namespace eddy::inspector
