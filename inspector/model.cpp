// Decoding updates into Frames and histories; recording, replay and the Chrome trace export.
#include "model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace eddy::inspector {

using inspect::json::Value;
namespace json = inspect::json;

namespace {

// Numbers from the wire as the model's types, without undefined casts for out-of-range input.
std::uint64_t to_count(double x) {
  return x >= 0 && x <= 1.8e19 ? static_cast<std::uint64_t>(x) : 0;
}
float to_float(double x) {
  constexpr double kMax = std::numeric_limits<float>::max();
  return std::isnan(x) ? 0.0f : static_cast<float>(std::clamp(x, -kMax, kMax));
}
const std::string kNoText;

HandleInfo handle_from(const Value& v) {
  HandleInfo h;
  h.name = v.str("name");
  h.file = v.str("file");
  h.line = static_cast<std::uint32_t>(v.u64("line"));
  h.cancelled = v.flag("cancelled");
  h.when = v.num("when");
  return h;
}

// A row as an update gives it: whole when new, else its id and the fields that changed (protocol
// 2; version 1 rows are always whole). Missing or mistyped fields keep what `t` had.
void merge_task(TaskInfo& t, const Value& v) {
  t.name = v.str("name", t.name);
  t.state = v.str("state", t.state);
  t.created = v.num("created", t.created);
  t.runs = v.u64("runs", t.runs);
  t.busy = v.num("busy", t.busy);
  t.file = v.str("file", t.file.str());
  t.line = static_cast<std::uint32_t>(v.u64("line", t.line));
  if (v.get("await")) {
    t.await_chain.clear();
    for (const Value& a : v.list("await"))
      t.await_chain.push_back({a.str("function"), a.str("awaiting"), a.str("file"),
                               static_cast<std::uint32_t>(a.u64("line"))});
  }
}

void merge_transport(TransportInfo& t, const Value& v) {
  t.server = v.u64("server", t.server);
  t.kind = v.str("kind", t.kind);
  t.peer = v.str("peer", t.peer);
  t.state = v.str("state", t.state);
  t.bytes_in = v.u64("bytes_in", t.bytes_in);
  t.bytes_out = v.u64("bytes_out", t.bytes_out);
  t.buffer = v.u64("buffer", t.buffer);
  t.high = v.u64("high", t.high);
  t.low = v.u64("low", t.low);
  t.writing_paused = v.flag("writing_paused", t.writing_paused);
  t.reading_paused = v.flag("reading_paused", t.reading_paused);
}

template <class Row, class Merge>
bool apply_delta(const Value* d, std::map<std::uint64_t, std::shared_ptr<const Row>>& rows,
                 Merge merge) {
  if (!d || d->type != Value::Type::object) return false;
  for (const Value& r : d->list("upsert")) {
    if (r.type != Value::Type::object) return false;
    Row row;
    row.id = r.u64("id");
    auto it = rows.find(row.id);
    if (it != rows.end()) row = *it->second;  // frames share rows: copy, never modify
    merge(row, r);
    rows[row.id] = std::make_shared<const Row>(std::move(row));
  }
  for (const Value& id : d->list("removed"))
    if (id.type == Value::Type::number) rows.erase(id.to_u64());
  return true;
}

template <class T>
void trim(std::deque<T>& q, std::size_t max) {
  while (q.size() > max) q.pop_front();
}
}  // namespace

const std::string& Model::text(std::uint32_t id) const {
  return id < strings_.size() ? strings_[id] : kNoText;
}

bool Model::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  return false;
}

bool Model::feed(std::string_view bytes) {
  if (!error_.empty()) return false;
  pending_.append(bytes.data(), bytes.size());
  std::size_t start = 0;
  for (;;) {
    const std::size_t nl = pending_.find('\n', start);
    if (nl == std::string::npos) break;
    if (!apply_line(std::string_view(pending_).substr(start, nl - start))) return false;
    start = nl + 1;
  }
  pending_.erase(0, start);
  if (pending_.size() > inspect::kMaxServerLine) return fail("update too large");
  return true;
}

bool Model::apply_line(std::string_view line) {
  std::string why;
  auto v = json::parse(line, &why);
  if (!v) return fail("malformed message: " + why);
  if (v->type != Value::Type::object) return fail("malformed message: not an object");
  const std::string type = v->str("type");
  if (recording_.is_open()) recording_ << line << '\n';
  if (type == "welcome") {
    const std::uint64_t protocol = v->u64("protocol");
    if (protocol < inspect::kOldestProtocolVersion || protocol > inspect::kProtocolVersion)
      return fail("unsupported protocol version " + std::to_string(v->u64("protocol")));
    welcomed_ = true;
    server_ = v->str("server");
    kind_labels_.clear();
    for (const Value& k : v->list("handle_kinds"))
      kind_labels_.push_back(k.type == Value::Type::array && k.array.size() == 2 ? k.array[1].string
                                                                                 : "?");
    event_kinds_.clear();
    for (const Value& k : v->list("event_kinds")) event_kinds_.push_back(k.string);
    return true;
  }
  if (type == "error") return fail("agent refused: " + v->str("message"));
  if (type == "pong") return true;
  if (type == "update") {
    if (!welcomed_) return fail("update before welcome");
    return apply_update(*v);
  }
  return fail("unknown message type '" + type + "'");
}

bool Model::apply_update(const Value& v) {
  auto f = std::make_shared<Frame>();
  const bool full = v.flag("full");
  if (!full && !frames_.empty()) {
    f->tasks = frames_.back()->tasks;  // shared rows: a copy costs pointers only
    f->transports = frames_.back()->transports;
  }
  f->seq = v.u64("seq");
  f->time = v.num("time");
  f->interval = v.num("interval");
  if (const Value* m = v.get("metrics"); m && m->type == Value::Type::object) {
    inspect::Metrics& x = f->metrics;
    x.iterations = m->u64("iterations");
    x.iterations_per_s = m->num("iterations_per_s");
    x.lag_max = m->num("lag_max");
    x.lag_mean = m->num("lag_mean");
    x.poll_s = m->num("poll_s");
    x.timers_s = m->num("timers_s");
    x.ready_s = m->num("ready_s");
    x.ready_depth = m->u64("ready_depth");
    x.ready_depth_max = m->u64("ready_depth_max");
    x.callbacks = m->u64("callbacks");
    x.timers = m->u64("timers");
    x.cancelled_timers = m->u64("cancelled_timers");
    x.dropped_events = m->u64("dropped_events");
    x.event_stride = m->u64("event_stride", 1);
    const auto& live = m->list("live");
    for (std::size_t i = 0; i < live.size() && i < x.live.size(); ++i)
      if (live[i].type == Value::Type::number) x.live[i] = live[i].to_u64();
  } else {
    return fail("update without metrics");
  }
  f->ready_total = v.u64("ready_total");
  f->timers_total = v.u64("timers_total");
  for (const Value& h : v.list("ready")) f->ready.push_back(handle_from(h));
  for (const Value& h : v.list("timers")) f->timers.push_back(handle_from(h));
  if (!apply_delta(v.get("tasks"), f->tasks, merge_task)) return fail("update: bad tasks delta");
  if (!apply_delta(v.get("transports"), f->transports, merge_transport))
    return fail("update: bad transports delta");
  for (const Value& s : v.list("servers"))
    f->servers.push_back(
        ServerInfo{s.u64("id"), s.str("address"), s.flag("serving"), s.u64("connections")});

  for (const Value& e : v.list("exceptions")) {
    ExceptionInfo x;
    x.time = e.num("time");
    x.message = e.str("message");
    x.exception = e.str("exception");
    x.file = e.str("file");
    x.line = static_cast<std::uint32_t>(e.u64("line"));
    x.slow = e.flag("slow");
    x.duration = e.num("duration");
    exceptions_.push_back(std::move(x));
  }
  trim(exceptions_, 1000);

  for (const Value& p : v.list("passes")) {
    if (p.type != Value::Type::array || p.array.size() != 5) continue;
    passes_.push_back(inspect::PassSample{p.array[0].number, to_float(p.array[1].number),
                                          to_float(p.array[2].number), to_float(p.array[3].number),
                                          static_cast<std::uint32_t>(p.array[4].to_u64())});
  }
  trim(passes_, 100000);

  for (const Value& s : v.list("strings")) {
    if (s.type != Value::Type::array || s.array.size() != 2 ||
        s.array[0].type != Value::Type::number)
      continue;
    const auto id = static_cast<std::size_t>(s.array[0].to_u64());
    if (id == 0 || id > 1'000'000) return fail("update: bad string id");
    if (strings_.size() <= id) strings_.resize(id + 1);
    strings_[id] = s.array[1].string;
  }

  for (const Value& e : v.list("events")) {
    if (e.type != Value::Type::array || e.array.size() != 7) return fail("update: bad event");
    for (const Value& x : e.array)
      if (x.type != Value::Type::number) return fail("update: bad event");
    DecodedEvent d;
    d.time = e.array[0].number;
    const std::uint64_t kind = e.array[1].to_u64(~std::uint64_t(0));
    if (kind > static_cast<std::uint64_t>(EventKind::slow_callback))
      return fail("update: unknown event kind");
    d.kind = static_cast<EventKind>(kind);
    d.id = e.array[2].to_u64();
    d.value = e.array[3].number;
    d.name = static_cast<std::uint32_t>(e.array[4].to_u64());
    d.file = static_cast<std::uint32_t>(e.array[5].to_u64());
    d.line = static_cast<std::uint32_t>(e.array[6].to_u64());
    ++total_events_;
    switch (d.kind) {
      case EventKind::write_buffer: {
        TransportHistory& h = history_[d.id];
        h.samples.push_back({d.time, d.value});
        h.max_buffer = std::max(h.max_buffer, to_count(d.value));
        trim(h.samples, max_samples);
        break;
      }
      case EventKind::pause_writing:
      case EventKind::resume_writing:
      case EventKind::pause_reading:
      case EventKind::resume_reading: {
        TransportHistory& h = history_[d.id];
        h.markers.push_back({d.time, d.kind});
        trim(h.markers, max_samples);
        if (d.kind == EventKind::pause_writing) ++h.pauses_writing;
        if (d.kind == EventKind::resume_writing) ++h.resumes_writing;
        if (d.kind == EventKind::pause_reading) ++h.pauses_reading;
        if (d.kind == EventKind::resume_reading) ++h.resumes_reading;
        if (d.kind == EventKind::pause_writing || d.kind == EventKind::resume_writing) {
          h.samples.push_back({d.time, d.value});
          h.max_buffer = std::max(h.max_buffer, to_count(d.value));
        }
        break;
      }
      default:
        break;
    }
    events_.push_back(d);
  }
  trim(events_, max_events);

  // Each live transport also gets a sample per frame (idle ones too), its limits and rates.
  for (const auto& [id, t] : f->transports) {
    TransportHistory& h = history_[id];
    h.high = t->high;
    h.low = t->low;
    h.max_buffer = std::max(h.max_buffer, t->buffer);
    h.samples.push_back({f->time, static_cast<double>(t->buffer)});
    trim(h.samples, max_samples);
    const double dt = f->time - h.last_rate_time;
    if (h.last_rate_time > 0 && dt > 0) {
      h.rate_in = static_cast<double>(t->bytes_in - std::min(t->bytes_in, h.last_in)) / dt;
      h.rate_out = static_cast<double>(t->bytes_out - std::min(t->bytes_out, h.last_out)) / dt;
    }
    h.last_rate_time = f->time;
    h.last_in = t->bytes_in;
    h.last_out = t->bytes_out;
  }
  // Histories of transports gone from the last many frames are dropped with their rows.
  if (history_.size() > 4 * f->transports.size() + 64)
    for (auto it = history_.begin(); it != history_.end();)
      it = f->transports.count(it->first) ? std::next(it) : history_.erase(it);

  frames_.push_back(std::move(f));
  ++updates_;
  trim(frames_, max_frames);
  return true;
}

bool Model::start_recording(const std::string& path) {
  recording_.open(path, std::ios::binary | std::ios::trunc);
  if (!recording_) return false;
  // A recording must replay on its own: restate the welcome, and make the next update full.
  std::string w =
      "{\"type\":\"welcome\",\"protocol\":" + std::to_string(inspect::kProtocolVersion) +
      ",\"server\":";
  json::append_string(w, server_);
  w += ",\"handle_kinds\":[";
  for (std::size_t i = 0; i < kind_labels_.size(); ++i) {
    if (i) w += ',';
    w += '[';
    json::append_string(w, inspect::kind_name(static_cast<inspect::HandleKind>(i)));
    w += ',';
    json::append_string(w, kind_labels_[i]);
    w += ']';
  }
  w += "]}";
  recording_ << w << '\n';
  if (const Frame* f = latest()) {
    // The rows known so far, as one synthetic full update.
    std::string u =
        "{\"type\":\"update\",\"full\":true,\"seq\":" + std::to_string(f->seq) + ",\"time\":";
    json::append_number(u, f->time);
    u += ",\"metrics\":{},\"tasks\":{\"upsert\":[";
    bool first = true;
    for (const auto& [id, t] : f->tasks) {
      if (!first) u += ',';
      first = false;
      inspect::write_task(u, *t);
    }
    u += "],\"removed\":[]},\"transports\":{\"upsert\":[";
    first = true;
    for (const auto& [id, t] : f->transports) {
      if (!first) u += ',';
      first = false;
      inspect::write_transport(u, *t);
    }
    u += "],\"removed\":[]}}";
    recording_ << u << '\n';
  }
  return true;
}

void Model::stop_recording() {
  recording_.close();
}

bool Model::open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open " + path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && !apply_line(line)) return false;
  return true;
}

std::string Model::chrome_trace() const {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[";
  out += "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":";
  json::append_string(out, server_.empty() ? "eddy" : server_);
  out +=
      "}},{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"event "
      "loop\"}}";
  auto us = [](double seconds) { return seconds * 1e6; };
  auto common = [&](const char* ph, double t) {
    out += ",{\"ph\":\"";
    out += ph;
    out += "\",\"pid\":1,\"tid\":1,\"ts\":";
    json::append_number(out, us(t));
  };
  // call_soon -> run flows: a handle's scheduling pairs with its next run.
  std::map<std::uint64_t, std::uint64_t> open_flows;
  std::uint64_t next_flow = 1;
  for (const DecodedEvent& e : events_) {
    switch (e.kind) {
      case EventKind::callback_scheduled:
        open_flows[e.id] = next_flow;
        common("s", e.time);
        out += ",\"name\":\"call_soon\",\"cat\":\"flow\",\"id\":";
        json::append_number(out, next_flow++);
        out += '}';
        break;
      case EventKind::callback_run: {
        common("X", e.time);
        out += ",\"dur\":";
        json::append_number(out, us(e.value));
        out += ",\"cat\":\"callback\",\"name\":";
        json::append_string(out, text(e.name).empty() ? "callback" : text(e.name));
        out += ",\"args\":{\"scheduled_at\":";
        json::append_string(out, text(e.file) + ":" + std::to_string(e.line));
        out += "}}";
        if (auto it = open_flows.find(e.id); it != open_flows.end()) {
          common("f", e.time);
          out += ",\"bp\":\"e\",\"name\":\"call_soon\",\"cat\":\"flow\",\"id\":";
          json::append_number(out, it->second);
          out += '}';
          open_flows.erase(it);
        }
        break;
      }
      case EventKind::write_buffer:
      case EventKind::pause_writing:
      case EventKind::resume_writing: {
        out += ",{\"ph\":\"C\",\"pid\":1,\"ts\":";
        json::append_number(out, us(e.time));
        out += ",\"name\":\"write buffer (transport " + std::to_string(e.id) +
               ")\",\"args\":{\"bytes\":";
        json::append_number(out, e.value);
        out += "}}";
        if (e.kind == EventKind::write_buffer) break;
        [[fallthrough]];
      }
      case EventKind::pause_reading:
      case EventKind::resume_reading:
      case EventKind::timer_cancelled:
      case EventKind::exception:
      case EventKind::slow_callback:
        common("i", e.time);
        out += ",\"s\":\"t\",\"name\":\"";
        out += inspect::event_name(e.kind);
        out += "\",\"args\":{\"id\":";
        json::append_number(out, e.id);
        out += "}}";
        break;
      default:
        break;
    }
  }
  for (const inspect::PassSample& p : passes_) {
    out += ",{\"ph\":\"C\",\"pid\":1,\"ts\":";
    json::append_number(out, us(p.start));
    out += ",\"name\":\"ready queue depth\",\"args\":{\"callbacks\":";
    json::append_number(out, static_cast<std::uint64_t>(p.ready_depth));
    out += "}}";
  }
  out += "]}\n";
  return out;
}

std::string Model::summary_json() const {
  std::string out = "{";
  const Frame* f = latest();
  out +=
      "\"updates\":" + std::to_string(updates_) + ",\"frames\":" + std::to_string(frames_.size());
  out += ",\"events\":" + std::to_string(total_events_);
  out += ",\"exceptions\":" + std::to_string(exceptions_.size());
  if (f) {
    out += ",\"iterations\":" + std::to_string(f->metrics.iterations);
    out += ",\"ready_depth\":" + std::to_string(f->metrics.ready_depth);
    out += ",\"dropped_events\":" + std::to_string(f->metrics.dropped_events);
    out += ",\"tasks\":" + std::to_string(f->tasks.size());
    out += ",\"timers\":" + std::to_string(f->timers_total);
  }
  std::uint64_t depth_max = 0;
  for (const auto& fr : frames_) depth_max = std::max(depth_max, fr->metrics.ready_depth_max);
  out += ",\"ready_depth_max\":" + std::to_string(depth_max);
  out += ",\"transports\":[";
  bool first = true;
  for (const auto& [id, h] : history_) {
    if (!first) out += ',';
    first = false;
    out += "{\"id\":" + std::to_string(id) + ",\"high\":" + std::to_string(h.high) +
           ",\"low\":" + std::to_string(h.low) + ",\"max_buffer\":" + std::to_string(h.max_buffer) +
           ",\"above_high\":" + (h.high && h.max_buffer > h.high ? "true" : "false") +
           ",\"pause_writing\":" + std::to_string(h.pauses_writing) +
           ",\"resume_writing\":" + std::to_string(h.resumes_writing) +
           ",\"pause_reading\":" + std::to_string(h.pauses_reading) + "}";
  }
  out += "]}";
  return out;
}

}  // namespace eddy::inspector
