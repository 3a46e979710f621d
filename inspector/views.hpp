// The inspector's views (Dear ImGui), one codebase for the desktop and the browser: Overview,
// Ready queue, Timers, Tasks, Transports (write buffer against the water marks, with pause/resume
// markers), Exceptions. They read the Model only; actions (record, export) go back to the app.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "model.hpp"

namespace eddy::inspector {

// The views' tabs, by the names `--tab` and the page's `#tab=` take, in the order shown.
inline constexpr std::array<std::string_view, 6> kTabNames = {
    "overview", "ready", "timers", "tasks", "transports", "exceptions"};
bool is_tab_name(std::string_view name);

// What the views showed in the last frame: the tests read it back from the running app.
struct Shown {
  std::uint64_t frame_seq = 0, ready_depth = 0, ready_depth_max = 0, tasks = 0, transports = 0;
  std::uint64_t transports_above_high = 0, pause_writing_markers = 0, resume_writing_markers = 0;
  std::uint64_t dropped_events = 0;
  bool paused = false;
  std::string tab;  // the open view's name (kTabNames)
  // Each tab's rectangle on screen (x0, y0, x1, y1): where a test clicks to switch views.
  std::map<std::string, std::array<float, 4>, std::less<>> tab_rects;
  // The Overview's plots and tables, and the window: a test checks that each lies inside it.
  std::map<std::string, std::array<float, 4>, std::less<>> panel_rects;
  std::array<float, 4> window_rect{};
};

struct ViewState {
  bool paused = false;    // the live view is frozen; the slider scrubs through history
  int frame_index = 0;    // which frame, while paused
  char filter[128] = {};  // tasks: name/state/place substring
  std::uint64_t selected_task = 0, selected_transport = 0;
  bool transport_chosen = false;  // false: the Transports view follows the busiest one
  std::string source;             // "demo (in-process)", "127.0.0.1:6669", "recording.jsonl"
  std::string status;             // the app's last message (recording, export, errors)
  bool can_record = true;
  bool want_record_toggle = false, want_export = false;  // set by the views, cleared by the app
  std::string select_tab;  // a tab the app asks for (kTabNames); cleared once it is open
  Shown shown;
};

void draw_inspector(Model& model, ViewState& state);

// Colours and spacing for a readable dark theme.
void apply_style();

// The views' last-frame numbers as JSON, merged with the model's summary.
std::string shown_json(const Model& model, const ViewState& state);

}  // namespace eddy::inspector
