// What the desktop and browser inspector apps share: command-line/URL options, the data sources
// (in-process Feed, remote agent, recording) behind one interface, and the per-frame step that
// pumps the source, draws the views and carries out their actions (record, export).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model.hpp"
#include "views.hpp"

namespace eddy::inspector {

struct AppOptions {
  std::string attach;       // HOST:PORT of an agent
  std::string token;        // the agent's token
  std::string open;         // a recording to replay
  bool serve = false;       // headless: run the demo workload and serve it (agent + browser page)
  std::uint16_t port = 0;   // --serve: the agent's port
  int frames = -1;          // quit after N frames (tests)
  double seconds = -1;      // quit after N seconds (tests; --serve too)
  std::string summary;      // write what the views showed (JSON) here on exit
  std::string record;       // record everything received to this file
  std::string export_path;  // write a Chrome trace here on exit
  std::string tab;          // a view to open first (kTabNames: "transports", "tasks", ...)
  std::string web_root;     // --serve: where the browser inspector's files are
  bool help = false;        // --help: print usage() and exit
};

// ValueError for unknown or malformed arguments.
AppOptions parse_args(const std::vector<std::string>& args);
const char* usage();
// "(one of overview ready ...)": the names --tab takes, for error messages.
std::string tab_choices();

class Source {
 public:
  virtual ~Source() = default;
  virtual void pump(Model& model) = 0;  // GUI thread, once per frame
  virtual std::string describe() const = 0;
  virtual std::string status() const { return {}; }  // e.g. a connection error
};

// A recording: loaded whole on the first frame, then scrubbed like paused live data.
class ReplaySource final : public Source {
 public:
  explicit ReplaySource(std::string path) : path_(std::move(path)) {}
  void pump(Model& model) override;
  std::string describe() const override { return "recording " + path_; }

 private:
  std::string path_;
  bool loaded_ = false;
};

class App {
 public:
  App(AppOptions options, std::unique_ptr<Source> source);
  // One frame's work inside an ImGui frame: pump, draw, act.
  void frame();
  // Writes the summary and export files the options asked for.
  void finish();
  bool done() const noexcept { return done_; }

  Model model;
  ViewState view;
  AppOptions options;
  // Where exports and finished recordings go: the desktop writes files; the browser offers a
  // download. Null: write to the file name in the working directory.
  std::function<void(const std::string& name, const std::string& contents)> save;

 private:
  std::unique_ptr<Source> source_;
  int frames_ = 0;
  double started_ = -1;
  bool done_ = false;
};

}  // namespace eddy::inspector
