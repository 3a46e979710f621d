// The inspector's data model, without any GUI: it decodes the wire protocol (from an agent, a
// recording, or an in-process Feed through the same Encoder) into Frames, keeps the recent history
// for pausing and scrubbing, per-transport write-buffer series with pause/resume markers, and
// exports Chrome trace JSON that Perfetto's UI opens. The views (views.hpp) only read it.
#pragma once

#include <cstdint>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eddy/inspect.hpp"
#include "eddy/inspect_wire.hpp"

namespace eddy::inspector {

using inspect::AwaitInfo;
using inspect::EventKind;
using inspect::ExceptionInfo;
using inspect::HandleInfo;
using inspect::ServerInfo;
using inspect::TaskInfo;
using inspect::TransportInfo;

// The loop as one update left it.
struct Frame {
  std::uint64_t seq = 0;
  double time = 0, interval = 0;
  inspect::Metrics metrics;
  std::uint64_t ready_total = 0, timers_total = 0;
  std::vector<HandleInfo> ready, timers;
  std::map<std::uint64_t, std::shared_ptr<const TaskInfo>> tasks;
  std::map<std::uint64_t, std::shared_ptr<const TransportInfo>> transports;
  std::vector<ServerInfo> servers;
};

struct DecodedEvent {
  double time = 0, value = 0;
  std::uint64_t id = 0;
  std::uint32_t name = 0, file = 0, line = 0;
  EventKind kind = EventKind::callback_run;
};

struct BufferSample {
  double time, bytes;
};
struct Marker {
  double time;
  EventKind kind;  // pause_writing, resume_writing, pause_reading, resume_reading
};
struct TransportHistory {
  std::deque<BufferSample> samples;
  std::deque<Marker> markers;
  std::uint64_t high = 0, low = 0, max_buffer = 0;
  std::uint64_t pauses_writing = 0, resumes_writing = 0, pauses_reading = 0, resumes_reading = 0;
  double last_rate_time = 0, rate_in = 0, rate_out = 0;  // bytes/s between the last two frames
  std::uint64_t last_in = 0, last_out = 0;
};

class Model {
 public:
  std::size_t max_frames = 1200;    // scrubbable history (2 minutes at 10 updates/s)
  std::size_t max_events = 400000;  // for the Chrome trace export
  std::size_t max_samples = 4096;   // per transport

  // Bytes from the wire in any chunking. False (and error()) once the stream is unusable: the
  // caller drops the connection.
  bool feed(std::string_view bytes);
  bool apply_line(std::string_view line);
  const std::string& error() const noexcept { return error_; }
  bool welcomed() const noexcept { return welcomed_; }
  const std::string& server() const noexcept { return server_; }
  const std::vector<std::string>& kind_labels() const noexcept { return kind_labels_; }

  std::size_t frame_count() const noexcept { return frames_.size(); }
  const Frame& frame(std::size_t i) const { return *frames_.at(i); }
  const Frame* latest() const noexcept { return frames_.empty() ? nullptr : frames_.back().get(); }
  std::uint64_t updates() const noexcept { return updates_; }

  const std::deque<ExceptionInfo>& exceptions() const noexcept { return exceptions_; }
  const std::map<std::uint64_t, TransportHistory>& transport_history() const noexcept {
    return history_;
  }
  const std::deque<DecodedEvent>& events() const noexcept { return events_; }
  const std::deque<inspect::PassSample>& passes() const noexcept { return passes_; }
  const std::string& text(std::uint32_t id) const;
  std::uint64_t total_events() const noexcept { return total_events_; }

  // Every line received from now on is also written to `path` (a recording that open() replays).
  bool start_recording(const std::string& path);
  void stop_recording();
  bool recording() const noexcept { return recording_.is_open(); }
  // Replays a recording into this model.
  bool open(const std::string& path);

  // Chrome trace JSON (Perfetto opens it): callback slices, call_soon -> run flow arrows, ready
  // queue depth and per-transport write-buffer counters, pause/resume instants.
  std::string chrome_trace() const;
  // What the views show for the latest frame, as JSON: the tests read it.
  std::string summary_json() const;

 private:
  bool fail(std::string why);
  bool apply_update(const inspect::json::Value& v);

  std::string pending_, error_, server_;
  bool welcomed_ = false;
  std::vector<std::string> kind_labels_, event_kinds_;
  std::deque<std::shared_ptr<const Frame>> frames_;
  std::uint64_t updates_ = 0, total_events_ = 0;
  std::deque<ExceptionInfo> exceptions_;
  std::map<std::uint64_t, TransportHistory> history_;
  std::deque<DecodedEvent> events_;
  std::deque<inspect::PassSample> passes_;
  std::vector<std::string> strings_{""};
  std::ofstream recording_;
};

// In-process source: encodes a local loop's Feed into the model, as a remote agent would.
class FeedSource {
 public:
  explicit FeedSource(std::shared_ptr<inspect::Feed> feed) : feed_(std::move(feed)) {}
  // Pulls what was published since the last call (GUI thread). False once the loop is gone.
  bool pump(Model& model);

 private:
  std::shared_ptr<inspect::Feed> feed_;
  inspect::Encoder encoder_;
  std::uint64_t last_seq_ = 0;
  bool welcomed_ = false;
};

}  // namespace eddy::inspector
