// The views. Every list with possibly thousands of rows goes through ImGuiListClipper, so only
// visible rows cost anything; plots are drawn straight into the window's draw list.
#include "views.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <vector>

#include "imgui.h"

namespace eddy::inspector {

namespace {

const ImVec4 kDim(0.55f, 0.58f, 0.65f, 1.0f);
const ImVec4 kWarn(0.95f, 0.55f, 0.20f, 1.0f);
const ImVec4 kBad(0.95f, 0.30f, 0.30f, 1.0f);
const ImVec4 kGood(0.35f, 0.80f, 0.45f, 1.0f);
const ImU32 kHighColor = IM_COL32(235, 80, 80, 255);
const ImU32 kLowColor = IM_COL32(90, 200, 110, 255);
const ImU32 kBufferColor = IM_COL32(100, 160, 255, 255);
const ImU32 kPauseColor = IM_COL32(245, 150, 40, 255);
const ImU32 kResumeColor = IM_COL32(80, 220, 230, 255);

std::string bytes_text(double b) {
  char buf[32];
  if (b >= 1 << 20)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1 << 20));
  else if (b >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

std::string place(std::string_view file, std::uint32_t line) {
  if (file.empty()) return "";
  const std::size_t slash = file.find_last_of('/');
  return std::string(slash == std::string_view::npos ? file : file.substr(slash + 1)) + ":" +
         std::to_string(line);
}

bool contains(const std::string& hay, const char* needle) {
  if (!*needle) return true;
  std::string h = hay, n = needle;
  std::transform(h.begin(), h.end(), h.begin(), ::tolower);
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  return h.find(n) != std::string::npos;
}

// A series over the frames up to `last`, for PlotLines.
template <class F>
std::vector<float> series(const Model& model, std::size_t last, std::size_t max_points, F value) {
  std::vector<float> out;
  const std::size_t first = last + 1 > max_points ? last + 1 - max_points : 0;
  for (std::size_t i = first; i <= last && i < model.frame_count(); ++i)
    out.push_back(static_cast<float>(value(model.frame(i))));
  return out;
}

// A line plot as wide as the current item width (PushItemWidth sets it for a column of plots).
void plot(const char* label, const std::vector<float>& v, const char* fmt, float height = 60) {
  float top = 0;
  for (float x : v) top = std::max(top, x);
  char overlay[64];
  std::snprintf(overlay, sizeof overlay, fmt, v.empty() ? 0.0 : static_cast<double>(v.back()));
  ImGui::PlotLines(label, v.data(), static_cast<int>(v.size()), 0, overlay, 0.0f,
                   top > 0 ? top * 1.15f : 1.0f, ImVec2(ImGui::CalcItemWidth(), height));
}

// Where the last item was drawn, under `name` in the views' report.
void record_panel(Shown& shown, const char* name) {
  const ImVec2 lo = ImGui::GetItemRectMin(), hi = ImGui::GetItemRectMax();
  shown.panel_rects[name] = {lo.x, lo.y, hi.x, hi.y};
}

void toolbar(Model& model, ViewState& st, std::size_t& index) {
  const std::size_t n = model.frame_count();
  if (ImGui::Button(st.paused ? "Resume live" : "Pause")) {
    st.paused = !st.paused;
    st.frame_index = static_cast<int>(n ? n - 1 : 0);
  }
  ImGui::SameLine();
  if (st.paused && n > 0) {
    ImGui::SetNextItemWidth(320);
    ImGui::SliderInt("##history", &st.frame_index, 0, static_cast<int>(n - 1), "frame %d");
    st.frame_index = std::clamp(st.frame_index, 0, static_cast<int>(n - 1));
    index = static_cast<std::size_t>(st.frame_index);
    ImGui::SameLine();
    ImGui::TextColored(kWarn, "PAUSED  t=%.2f s (%.1f s ago)", model.frame(index).time,
                       model.frame(n - 1).time - model.frame(index).time);
  } else {
    ImGui::TextColored(kGood, "LIVE");
  }
  ImGui::SameLine(0, 24);
  if (st.can_record && ImGui::Button(model.recording() ? "Stop recording" : "Record"))
    st.want_record_toggle = true;
  ImGui::SameLine();
  if (ImGui::Button("Export Perfetto trace")) st.want_export = true;
  ImGui::SameLine(0, 24);
  ImGui::TextColored(kDim, "%s", st.source.c_str());
  if (!model.error().empty()) {
    ImGui::SameLine(0, 16);
    ImGui::TextColored(kBad, "%s", model.error().c_str());
  } else if (!st.status.empty()) {
    ImGui::SameLine(0, 16);
    ImGui::TextColored(kDim, "%s", st.status.c_str());
  }
}

void overview(const Model& model, const Frame& f, std::size_t index, ViewState& st) {
  const inspect::Metrics& m = f.metrics;
  if (ImGui::BeginTable("metrics", 4, ImGuiTableFlags_SizingStretchSame)) {
    ImGui::TableNextColumn();
    ImGui::Text("iterations/s  %.0f", m.iterations_per_s);
    ImGui::Text("iterations    %" PRIu64, m.iterations);
    ImGui::TableNextColumn();
    ImGui::Text("loop lag max  %.2f ms", m.lag_max * 1e3);
    ImGui::Text("lag mean      %.2f ms", m.lag_mean * 1e3);
    ImGui::TableNextColumn();
    ImGui::Text("ready now     %" PRIu64, m.ready_depth);
    ImGui::Text("ready max     %" PRIu64, m.ready_depth_max);
    ImGui::TableNextColumn();
    ImGui::TextColored(m.dropped_events ? kWarn : kDim, "dropped events %" PRIu64,
                       m.dropped_events);
    ImGui::Text("callbacks/upd %" PRIu64, m.callbacks);
    ImGui::TextColored(m.event_stride > 1 ? kWarn : kDim, "events sampled 1 in %" PRIu64, m.event_stride);
    ImGui::EndTable();
  }
  ImGui::Separator();
  const float half = ImGui::GetContentRegionAvail().x * 0.5f - 8;
  ImGui::BeginGroup();
  ImGui::PushItemWidth(half);
  ImGui::TextUnformatted("Ready-queue depth (max per update)");
  plot("##depth",
       series(model, index, 600, [](const Frame& x) { return double(x.metrics.ready_depth_max); }),
       "%.0f");
  record_panel(st.shown, "depth");
  ImGui::TextUnformatted("Iterations per second");
  plot("##ips",
       series(model, index, 600, [](const Frame& x) { return x.metrics.iterations_per_s; }),
       "%.0f /s");
  record_panel(st.shown, "ips");
  ImGui::TextUnformatted("Loop lag (timers' lateness, max)");
  plot("##lag", series(model, index, 600, [](const Frame& x) { return x.metrics.lag_max * 1e3; }),
       "%.2f ms");
  record_panel(st.shown, "lag");
  ImGui::PopItemWidth();
  ImGui::EndGroup();
  ImGui::SameLine(0, 16);
  ImGui::BeginGroup();
  ImGui::PushItemWidth(half);
  ImGui::TextUnformatted("Time per iteration by phase");
  plot("##poll", series(model, index, 600, [](const Frame& x) { return x.metrics.poll_s * 1e6; }),
       "poll %.1f us", 40);
  record_panel(st.shown, "poll");
  plot("##timers",
       series(model, index, 600, [](const Frame& x) { return x.metrics.timers_s * 1e6; }),
       "timers %.1f us", 40);
  record_panel(st.shown, "timers");
  plot("##ready", series(model, index, 600, [](const Frame& x) { return x.metrics.ready_s * 1e6; }),
       "ready %.1f us", 40);
  record_panel(st.shown, "ready");
  ImGui::PopItemWidth();
  ImGui::TextUnformatted("Live handles by kind");
  if (ImGui::BeginTable("kinds", 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) {
    for (std::size_t k = 0; k < m.live.size(); ++k) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(k < model.kind_labels().size()
                                 ? model.kind_labels()[k].c_str()
                                 : inspect::kind_label(static_cast<inspect::HandleKind>(k)));
      ImGui::TableNextColumn();
      ImGui::Text("%" PRIu64, m.live[k]);
    }
    ImGui::EndTable();
    record_panel(st.shown, "live_handles");
  }
  ImGui::EndGroup();
}

void ready_view(const Frame& f) {
  ImGui::Text("%" PRIu64 " callback%s ready%s", f.ready_total, f.ready_total == 1 ? "" : "s",
              f.ready_total > f.ready.size() ? " (first ones shown)" : "");
  if (ImGui::BeginTable(
          "ready", 3,
          ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_Resizable)) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("#", ImGuiTableColumnFlags_WidthFixed, 50);
    ImGui::TableSetupColumn("callback");
    ImGui::TableSetupColumn("scheduled at");
    ImGui::TableHeadersRow();
    ImGuiListClipper clip;
    clip.Begin(static_cast<int>(f.ready.size()));
    while (clip.Step())
      for (int i = clip.DisplayStart; i < clip.DisplayEnd; ++i) {
        const HandleInfo& h = f.ready[static_cast<std::size_t>(i)];
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::Text("%d", i);
        ImGui::TableNextColumn();
        if (h.cancelled)
          ImGui::TextColored(kDim, "%s (cancelled)", h.name.c_str());
        else
          ImGui::TextUnformatted(h.name.c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(place(h.file, h.line).c_str());
      }
    ImGui::EndTable();
  }
}

void timers_view(const Frame& f) {
  std::size_t cancelled = 0;
  double horizon = 1;
  for (const HandleInfo& h : f.timers) {
    cancelled += h.cancelled;
    horizon = std::max(horizon, h.when - f.time);
  }
  ImGui::Text("%" PRIu64 " timer%s in the heap, %" PRIu64 " cancelled but not yet purged",
              f.timers_total, f.timers_total == 1 ? "" : "s", f.metrics.cancelled_timers);
  // The time axis: now at the left, each timer a tick at its deadline.
  const ImVec2 p = ImGui::GetCursorScreenPos();
  const float w = ImGui::GetContentRegionAvail().x, h = 70;
  ImGui::InvisibleButton("axis", ImVec2(w, h));
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(p, ImVec2(p.x + w, p.y + h), IM_COL32(30, 34, 44, 255));
  dl->AddLine(ImVec2(p.x, p.y + h - 16), ImVec2(p.x + w, p.y + h - 16),
              IM_COL32(120, 120, 130, 255));
  for (int s = 0; s <= 10; ++s) {
    const float x = p.x + w * static_cast<float>(s) / 10;
    char label[32];
    std::snprintf(label, sizeof label, "+%.1fs", horizon * s / 10);
    dl->AddLine(ImVec2(x, p.y + h - 18), ImVec2(x, p.y + h - 12), IM_COL32(120, 120, 130, 255));
    dl->AddText(ImVec2(x + 2, p.y + h - 14), IM_COL32(150, 150, 160, 255), label);
  }
  for (const HandleInfo& t : f.timers) {
    const float x =
        p.x + static_cast<float>(std::clamp((t.when - f.time) / horizon, 0.0, 1.0)) * (w - 2);
    dl->AddLine(ImVec2(x, p.y + 6), ImVec2(x, p.y + h - 20),
                t.cancelled ? IM_COL32(235, 80, 80, 200) : IM_COL32(110, 170, 255, 200),
                t.cancelled ? 1.0f : 2.0f);
  }
  ImGui::TextColored(kDim, "blue: pending   red: cancelled, still in the heap (%zu shown)",
                     cancelled);
  if (ImGui::BeginTable(
          "timers", 4,
          ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_Resizable)) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("due in", ImGuiTableColumnFlags_WidthFixed, 90);
    ImGui::TableSetupColumn("callback");
    ImGui::TableSetupColumn("scheduled at");
    ImGui::TableSetupColumn("state", ImGuiTableColumnFlags_WidthFixed, 90);
    ImGui::TableHeadersRow();
    ImGuiListClipper clip;
    clip.Begin(static_cast<int>(f.timers.size()));
    while (clip.Step())
      for (int i = clip.DisplayStart; i < clip.DisplayEnd; ++i) {
        const HandleInfo& t = f.timers[static_cast<std::size_t>(i)];
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::Text("%.3f s", t.when - f.time);
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(t.name.c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(place(t.file, t.line).c_str());
        ImGui::TableNextColumn();
        if (t.cancelled)
          ImGui::TextColored(kBad, "cancelled");
        else
          ImGui::TextUnformatted("pending");
      }
    ImGui::EndTable();
  }
}

void tasks_view(const Frame& f, ViewState& st) {
  ImGui::SetNextItemWidth(300);
  ImGui::InputTextWithHint("##filter", "filter: name, state or place", st.filter, sizeof st.filter);
  std::vector<const TaskInfo*> rows;
  rows.reserve(f.tasks.size());
  for (const auto& [id, t] : f.tasks)
    if (contains(t->name, st.filter) || contains(t->state, st.filter) ||
        contains(place(t->file, t->line), st.filter))
      rows.push_back(t.get());
  ImGui::SameLine();
  ImGui::Text("%zu of %zu tasks", rows.size(), f.tasks.size());
  const float chain_height = st.selected_task ? 150.0f : 0.0f;
  if (ImGui::BeginTable("tasks", 8,
                        ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY |
                            ImGuiTableFlags_Resizable | ImGuiTableFlags_BordersInnerV,
                        ImVec2(0, -chain_height))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("id", ImGuiTableColumnFlags_WidthFixed, 60);
    ImGui::TableSetupColumn("name", ImGuiTableColumnFlags_WidthStretch, 1.0f);
    ImGui::TableSetupColumn("state", ImGuiTableColumnFlags_WidthFixed, 80);
    ImGui::TableSetupColumn("age", ImGuiTableColumnFlags_WidthFixed, 80);
    ImGui::TableSetupColumn("runs", ImGuiTableColumnFlags_WidthFixed, 70);
    ImGui::TableSetupColumn("busy", ImGuiTableColumnFlags_WidthFixed, 80);
    ImGui::TableSetupColumn("await chain", ImGuiTableColumnFlags_WidthStretch, 3.0f);
    ImGui::TableSetupColumn("created at", ImGuiTableColumnFlags_WidthStretch, 1.0f);
    ImGui::TableHeadersRow();
    std::string chain;
    ImGuiListClipper clip;
    clip.Begin(static_cast<int>(rows.size()));
    while (clip.Step())
      for (int i = clip.DisplayStart; i < clip.DisplayEnd; ++i) {
        const TaskInfo& t = *rows[static_cast<std::size_t>(i)];
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        char id[32];
        std::snprintf(id, sizeof id, "%" PRIu64, t.id);
        if (ImGui::Selectable(id, st.selected_task == t.id, ImGuiSelectableFlags_SpanAllColumns))
          st.selected_task = st.selected_task == t.id ? 0 : t.id;
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(t.name.c_str());
        ImGui::TableNextColumn();
        const ImVec4 c = t.state == "failed"    ? kBad
                         : t.state == "running" ? kGood
                         : t.state == "pending" ? ImVec4(1, 1, 1, 1)
                                                : kDim;
        ImGui::TextColored(c, "%s", t.state.c_str());
        ImGui::TableNextColumn();
        if (t.created > 0)
          ImGui::Text("%.1f s", f.time - t.created);
        else
          ImGui::TextColored(kDim, "-");
        ImGui::TableNextColumn();
        ImGui::Text("%" PRIu64, t.runs);
        ImGui::TableNextColumn();
        ImGui::Text("%.2f ms", t.busy * 1e3);
        ImGui::TableNextColumn();
        // The coroutines from the task's down to the innermost, then what that one awaits:
        // "echo_client > sleep > <Future pending>" (the selected task's pane adds the places).
        chain.clear();
        for (const AwaitInfo& a : t.await_chain) (chain += a.function) += " > ";
        if (!t.await_chain.empty()) chain += t.await_chain.back().awaiting;
        ImGui::TextUnformatted(chain.c_str());
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", chain.c_str());  // when cut short
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(place(t.file, t.line).c_str());
      }
    ImGui::EndTable();
  }
  if (st.selected_task) {
    auto it = f.tasks.find(st.selected_task);
    if (it == f.tasks.end()) {
      ImGui::TextColored(kDim, "task %" PRIu64 " is gone", st.selected_task);
      return;
    }
    ImGui::Text("Await chain of %s (outermost first)", it->second->name.c_str());
    for (const AwaitInfo& a : it->second->await_chain)
      ImGui::BulletText("%s  awaits %s  at %s", a.function.c_str(), a.awaiting.c_str(),
                        place(a.file, a.line).c_str());
  }
}

// The write buffer of one transport over time, against its water marks, with pause/resume marks.
void buffer_plot(const Model& model, const TransportHistory& h, double now, float height,
                 Shown& shown) {
  const ImVec2 p = ImGui::GetCursorScreenPos();
  const float w = ImGui::GetContentRegionAvail().x;
  ImGui::InvisibleButton("buffer", ImVec2(w, height));
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(p, ImVec2(p.x + w, p.y + height), IM_COL32(26, 30, 40, 255));
  const double span = 10.0;  // seconds shown
  double top = static_cast<double>(std::max<std::uint64_t>(h.high, 1)) * 1.6;
  for (const BufferSample& s : h.samples)
    if (s.time >= now - span) top = std::max(top, s.bytes * 1.1);
  // Two marker lanes outside the plot, so that the sawtooth (which drops to the low mark just as
  // writing resumes) never covers them: pauses in a strip along the top, resumes along the bottom.
  constexpr float kLane = 14;
  const float plot_top = p.y + kLane, plot_bottom = p.y + height - kLane;
  auto X = [&](double t) { return p.x + static_cast<float>((t - (now - span)) / span) * w; };
  auto Y = [&](double b) {
    return plot_bottom - static_cast<float>(b / top) * (plot_bottom - plot_top - 4);
  };
  dl->AddRectFilled(p, ImVec2(p.x + w, plot_top), IM_COL32(34, 38, 50, 255));
  dl->AddRectFilled(ImVec2(p.x, plot_bottom), ImVec2(p.x + w, p.y + height),
                    IM_COL32(34, 38, 50, 255));
  dl->AddLine(ImVec2(p.x, Y(double(h.high))), ImVec2(p.x + w, Y(double(h.high))), kHighColor, 1.5f);
  dl->AddText(ImVec2(p.x + 4, Y(double(h.high)) - 15), kHighColor,
              ("high " + bytes_text(double(h.high))).c_str());
  dl->AddLine(ImVec2(p.x, Y(double(h.low))), ImVec2(p.x + w, Y(double(h.low))), kLowColor, 1.5f);
  dl->AddText(ImVec2(p.x + 4, Y(double(h.low)) - 15), kLowColor,
              ("low " + bytes_text(double(h.low))).c_str());
  // Writing's markers span their lane; reading's are half as tall.
  for (const Marker& m : h.markers) {
    if (m.time < now - span || m.time > now) continue;
    const bool pause = m.kind == EventKind::pause_writing || m.kind == EventKind::pause_reading;
    const bool writing = m.kind == EventKind::pause_writing || m.kind == EventKind::resume_writing;
    const float x = X(m.time), len = writing ? kLane - 2 : kLane / 2;
    if (pause)
      dl->AddLine(ImVec2(x, p.y + 1), ImVec2(x, p.y + 1 + len), kPauseColor, 1.5f);
    else
      dl->AddLine(ImVec2(x, p.y + height - 1 - len), ImVec2(x, p.y + height - 1), kResumeColor,
                  1.5f);
    if (m.kind == EventKind::pause_writing) ++shown.pause_writing_markers;
    if (m.kind == EventKind::resume_writing) ++shown.resume_writing_markers;
  }
  ImVec2 prev(0, 0);
  bool have = false;
  for (const BufferSample& s : h.samples) {
    if (s.time < now - span || s.time > now) continue;
    const ImVec2 q(X(s.time), Y(s.bytes));
    if (have) {
      dl->AddLine(prev, ImVec2(q.x, prev.y), kBufferColor, 2.0f);
      dl->AddLine(ImVec2(q.x, prev.y), q, kBufferColor, 2.0f);
    }
    prev = q;
    have = true;
  }
  const char* legend = "blue: write buffer  orange (top strip): pause  cyan (bottom strip): resume";
  dl->AddText(ImVec2(p.x + w - ImGui::CalcTextSize(legend).x - 6, plot_top + 4),
              IM_COL32(200, 200, 210, 255), legend);
  (void)model;
}

void transports_view(const Model& model, const Frame& f, ViewState& st) {
  const auto& hist = model.transport_history();
  if (!st.transport_chosen || !f.transports.count(st.selected_transport)) {
    // Until the user picks one, follow the busiest: the one that paused most.
    std::uint64_t best = 0, best_pauses = 0;
    for (const auto& [id, t] : f.transports) {
      auto h = hist.find(id);
      const std::uint64_t pauses = h == hist.end() ? 0 : h->second.pauses_writing + 1;
      if (!best || pauses > best_pauses) best = id, best_pauses = pauses;
    }
    st.selected_transport = best;
  }
  if (!f.servers.empty()) {
    ImGui::TextUnformatted("Servers:");
    for (const ServerInfo& s : f.servers) {
      ImGui::SameLine();
      ImGui::Text("[#%" PRIu64 " %s, %s, %" PRIu64 " connections]", s.id, s.address.c_str(),
                  s.serving ? "serving" : "closed", s.connections);
    }
  }
  if (ImGui::BeginTable("transports", 10,
                        ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY |
                            ImGuiTableFlags_Resizable | ImGuiTableFlags_BordersInnerV,
                        ImVec2(0, ImGui::GetContentRegionAvail().y * 0.45f))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    // Widths by what the columns hold, so that rates and water marks are not cut at 1280 px.
    const std::pair<const char*, float> columns[] = {
        {"id", 0.4f},     {"kind", 0.6f},        {"peer", 1.6f},
        {"server", 0.5f}, {"state", 0.7f},       {"in", 0.9f},
        {"out", 0.9f},    {"rate in/out", 1.9f}, {"buffer / high / low", 2.2f},
        {"paused", 1.1f}};
    for (const auto& [name, weight] : columns)
      ImGui::TableSetupColumn(name, ImGuiTableColumnFlags_WidthStretch, weight);
    ImGui::TableHeadersRow();
    for (const auto& [id, tp] : f.transports) {
      const TransportInfo& t = *tp;
      auto h = hist.find(id);
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      char label[32];
      std::snprintf(label, sizeof label, "%" PRIu64, id);
      if (ImGui::Selectable(label, st.selected_transport == id,
                            ImGuiSelectableFlags_SpanAllColumns)) {
        st.selected_transport = id;
        st.transport_chosen = true;
      }
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(t.kind.c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(t.peer.c_str());
      ImGui::TableNextColumn();
      if (t.server) ImGui::Text("#%" PRIu64, t.server);
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(t.state.c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(bytes_text(double(t.bytes_in)).c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(bytes_text(double(t.bytes_out)).c_str());
      ImGui::TableNextColumn();
      if (h != hist.end())
        ImGui::Text("%s/s / %s/s", bytes_text(h->second.rate_in).c_str(),
                    bytes_text(h->second.rate_out).c_str());
      ImGui::TableNextColumn();
      const bool above = t.high && t.buffer > t.high;
      ImGui::TextColored(above ? kBad : ImVec4(1, 1, 1, 1), "%s / %s / %s",
                         bytes_text(double(t.buffer)).c_str(), bytes_text(double(t.high)).c_str(),
                         bytes_text(double(t.low)).c_str());
      ImGui::TableNextColumn();
      if (t.writing_paused) ImGui::TextColored(kWarn, "writing ");
      if (t.writing_paused && t.reading_paused) ImGui::SameLine(0, 0);
      if (t.reading_paused) ImGui::TextColored(kWarn, "reading");
    }
    ImGui::EndTable();
  }
  auto sel = f.transports.find(st.selected_transport);
  auto h = hist.find(st.selected_transport);
  if (sel != f.transports.end() && h != hist.end()) {
    ImGui::Text("Transport %" PRIu64 " (%s %s): write buffer, last 10 s; pause_writing %" PRIu64
                "x, resume_writing %" PRIu64 "x, pause_reading %" PRIu64 "x",
                sel->first, sel->second->kind.c_str(), sel->second->peer.c_str(),
                h->second.pauses_writing, h->second.resumes_writing, h->second.pauses_reading);
    buffer_plot(model, h->second, f.time, std::max(120.0f, ImGui::GetContentRegionAvail().y - 8),
                st.shown);
  }
}

void exceptions_view(const Model& model, double now) {
  ImGui::Text("%zu exceptions and slow callbacks", model.exceptions().size());
  if (ImGui::BeginTable(
          "exceptions", 4,
          ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_Resizable)) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("when", ImGuiTableColumnFlags_WidthFixed, 80);
    ImGui::TableSetupColumn("message", ImGuiTableColumnFlags_WidthStretch, 2.4f);
    ImGui::TableSetupColumn("exception", ImGuiTableColumnFlags_WidthStretch, 1.6f);
    ImGui::TableSetupColumn("scheduled at", ImGuiTableColumnFlags_WidthStretch, 0.9f);
    ImGui::TableHeadersRow();
    const auto& ex = model.exceptions();
    ImGuiListClipper clip;
    clip.Begin(static_cast<int>(ex.size()));
    while (clip.Step())
      for (int i = clip.DisplayStart; i < clip.DisplayEnd; ++i) {
        const ExceptionInfo& e = ex[ex.size() - 1 - static_cast<std::size_t>(i)];  // newest first
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ImGui::Text("%.1f s ago", std::max(0.0, now - e.time));  // e.time is the loop's time()
        ImGui::TableNextColumn();
        ImGui::TextColored(e.slow ? kWarn : kBad, "%s", e.message.c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(e.exception.c_str());
        ImGui::TableNextColumn();
        ImGui::TextUnformatted(place(e.file, e.line).c_str());
      }
    ImGui::EndTable();
  }
}

}  // namespace

void apply_style() {
  ImGui::StyleColorsDark();
  ImGuiStyle& s = ImGui::GetStyle();
  s.WindowRounding = 0;
  s.FrameRounding = 3;
  s.TabRounding = 3;
  s.ItemSpacing = ImVec2(8, 5);
  s.Colors[ImGuiCol_WindowBg] = ImVec4(0.10f, 0.12f, 0.16f, 1.0f);
  s.Colors[ImGuiCol_TableRowBgAlt] = ImVec4(1, 1, 1, 0.03f);
  s.Colors[ImGuiCol_PlotLines] = ImVec4(0.40f, 0.63f, 1.0f, 1.0f);
}

bool is_tab_name(std::string_view name) {
  for (std::string_view t : kTabNames)
    if (t == name) return true;
  return false;
}

void draw_inspector(Model& model, ViewState& st) {
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(vp->WorkPos);
  ImGui::SetNextWindowSize(vp->WorkSize);
  ImGui::Begin("Eddy inspector", nullptr,
               ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                   ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus);
  std::size_t index = model.frame_count() ? model.frame_count() - 1 : 0;
  toolbar(model, st, index);
  st.shown = Shown{};
  st.shown.paused = st.paused;
  const ImVec2 window_lo = ImGui::GetWindowPos(), window_size = ImGui::GetWindowSize();
  st.shown.window_rect = {window_lo.x, window_lo.y, window_lo.x + window_size.x,
                          window_lo.y + window_size.y};
  if (!model.frame_count()) {
    ImGui::Separator();
    ImGui::TextColored(kDim,
                       model.welcomed() ? "waiting for the first update..." : "connecting...");
    ImGui::End();
    return;
  }
  const Frame& f = model.frame(index);
  st.shown.frame_seq = f.seq;
  st.shown.ready_depth = f.metrics.ready_depth;
  st.shown.ready_depth_max = f.metrics.ready_depth_max;
  st.shown.tasks = f.tasks.size();
  st.shown.transports = f.transports.size();
  st.shown.dropped_events = f.metrics.dropped_events;
  for (const auto& [id, t] : f.transports)
    st.shown.transports_above_high += t->high && t->buffer > t->high;

  if (ImGui::BeginTabBar("views")) {
    // Opens a tab; one the app asked for is selected once, then the user's clicks decide.
    auto tab = [&](const char* label, std::string_view name) {
      const bool asked = st.select_tab == name;
      const bool open =
          ImGui::BeginTabItem(label, nullptr, asked ? ImGuiTabItemFlags_SetSelected : 0);
      const ImVec2 lo = ImGui::GetItemRectMin(), hi = ImGui::GetItemRectMax();
      st.shown.tab_rects[std::string(name)] = {lo.x, lo.y, hi.x, hi.y};
      if (open) {
        st.shown.tab = name;
        if (asked) st.select_tab.clear();
      }
      return open;
    };
    if (tab("Overview###overview", "overview")) {
      overview(model, f, index, st);
      ImGui::EndTabItem();
    }
    char label[64];
    std::snprintf(label, sizeof label, "Ready queue (%" PRIu64 ")###ready", f.ready_total);
    if (tab(label, "ready")) {
      ready_view(f);
      ImGui::EndTabItem();
    }
    std::snprintf(label, sizeof label, "Timers (%" PRIu64 ")###timers", f.timers_total);
    if (tab(label, "timers")) {
      timers_view(f);
      ImGui::EndTabItem();
    }
    std::snprintf(label, sizeof label, "Tasks (%zu)###tasks", f.tasks.size());
    if (tab(label, "tasks")) {
      tasks_view(f, st);
      ImGui::EndTabItem();
    }
    std::snprintf(label, sizeof label, "Transports (%zu)###transports", f.transports.size());
    if (tab(label, "transports")) {
      transports_view(model, f, st);
      ImGui::EndTabItem();
    }
    std::snprintf(label, sizeof label, "Exceptions (%zu)###exceptions", model.exceptions().size());
    if (tab(label, "exceptions")) {
      exceptions_view(model, f.time);
      ImGui::EndTabItem();
    }
    ImGui::EndTabBar();
  }
  ImGui::End();
}

std::string shown_json(const Model& model, const ViewState& st) {
  std::string s = model.summary_json();
  s.pop_back();  // '}'
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ",\"shown\":{\"frame_seq\":%" PRIu64 ",\"ready_depth\":%" PRIu64
                ",\"ready_depth_max\":%" PRIu64 ",\"tasks\":%" PRIu64 ",\"transports\":%" PRIu64
                ",\"transports_above_high\":%" PRIu64 ",\"pause_writing_markers\":%" PRIu64
                ",\"resume_writing_markers\":%" PRIu64 ",\"dropped_events\":%" PRIu64
                ",\"paused\":%s,\"tab\":",
                st.shown.frame_seq, st.shown.ready_depth, st.shown.ready_depth_max, st.shown.tasks,
                st.shown.transports, st.shown.transports_above_high, st.shown.pause_writing_markers,
                st.shown.resume_writing_markers, st.shown.dropped_events,
                st.shown.paused ? "true" : "false");
  s += buf;
  inspect::json::append_string(s, st.shown.tab);
  s += ",\"tab_rects\":{";
  const char* sep = "";
  for (const auto& [name, r] : st.shown.tab_rects) {
    std::snprintf(buf, sizeof buf, "%s\"%s\":[%.0f,%.0f,%.0f,%.0f]", sep, name.c_str(), r[0], r[1],
                  r[2], r[3]);
    s += buf;
    sep = ",";
  }
  s += "},\"panel_rects\":{";
  sep = "";
  for (const auto& [name, r] : st.shown.panel_rects) {
    std::snprintf(buf, sizeof buf, "%s\"%s\":[%.0f,%.0f,%.0f,%.0f]", sep, name.c_str(), r[0], r[1],
                  r[2], r[3]);
    s += buf;
    sep = ",";
  }
  const std::array<float, 4>& w = st.shown.window_rect;
  std::snprintf(buf, sizeof buf, "},\"window_rect\":[%.0f,%.0f,%.0f,%.0f]}", w[0], w[1], w[2],
                w[3]);
  s += buf;
  s += ",\"source\":";
  inspect::json::append_string(s, st.source);
  s += ",\"server\":";
  inspect::json::append_string(s, model.server());
  s += ",\"error\":";
  inspect::json::append_string(s, model.error());
  s += "}";
  return s;
}

}  // namespace eddy::inspector
