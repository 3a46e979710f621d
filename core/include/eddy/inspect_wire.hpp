// The inspector's wire protocol (docs/inspector-protocol.md): newline-delimited JSON over a byte
// stream (TCP, or WebSocket binary messages carrying the stream). The agent's Encoder turns
// Snapshots into delta updates for one client; json::parse is the decoder every client and the
// agent use for what they receive, bounded in size and depth so hostile input only fails.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eddy/inspect.hpp"

namespace eddy::inspect {

// 2: a changed task or transport row carries its id and only the fields that changed. A client
// also reads version 1 (recordings), whose rows are always whole.
constexpr int kProtocolVersion = 2;
constexpr int kOldestProtocolVersion = 1;
constexpr std::size_t kMaxClientLine = 4096;       // hello, ping: anything longer is hostile
constexpr std::size_t kMaxServerLine = 64u << 20;  // one update

namespace json {

struct Value {
  enum class Type : std::uint8_t { null, boolean, number, string, array, object };
  Type type = Type::null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;       // an array's items, or an object's member values
  std::vector<std::string> keys;  // an object's member names (keys[i] names array[i])

  const Value* get(std::string_view key) const noexcept;  // objects only
  // Typed reads with a fallback for missing or mistyped members.
  double num(std::string_view key, double fallback = 0) const noexcept;
  std::uint64_t u64(std::string_view key, std::uint64_t fallback = 0) const noexcept;
  // This value as an unsigned integer; `fallback` unless it is a number within range (a hostile
  // peer's 1e300 or -1 must not reach a cast).
  std::uint64_t to_u64(std::uint64_t fallback = 0) const noexcept;
  std::string str(std::string_view key, std::string fallback = {}) const;
  bool flag(std::string_view key, bool fallback = false) const noexcept;
  const std::vector<Value>& list(std::string_view key) const noexcept;  // empty if absent
};

struct Limits {
  std::size_t max_bytes = kMaxServerLine;
  std::size_t max_depth = 32;
};

// One JSON text (surrounding whitespace allowed). nullopt and `error` set on anything invalid.
std::optional<Value> parse(std::string_view text, std::string* error = nullptr, Limits limits = {});

// Writer helpers: a quoted, escaped string; a number in the shortest exact-enough form.
void append_string(std::string& out, std::string_view s);
void append_number(std::string& out, double v);
void append_number(std::string& out, std::uint64_t v);

}  // namespace json

// Row writers (JSON objects as in an update's "upsert" lists).
void write_task(std::string& out, const TaskInfo& t);
void write_transport(std::string& out, const TransportInfo& t);

// The client's first line: {"type":"hello","protocol":1,"token":"..."}.
std::string client_hello(std::string_view token);
struct Hello {
  int protocol = 0;
  std::string token;
};
// nullopt unless `line` is a well-formed hello (the caller then closes the connection).
std::optional<Hello> parse_client_hello(std::string_view line);

// What the agent answers: welcome (with the kind tables) or an error, one line each.
std::string welcome_message(std::string_view server_name);
std::string error_message(std::string_view message);

// Encodes snapshots for one client as delta updates: tasks and transports are sent whole when new,
// as their changed fields when changed, and listed by id when gone; callback names and file
// names are interned once.
class Encoder {
 public:
  // `skipped` counts snapshots (and so events) this client missed; it goes into its counter.
  std::string update(const Snapshot& s, std::uint64_t skipped_events = 0);

 private:
  std::uint32_t intern(const char* text, std::string& new_strings);
  template <class Row>
  struct Sent {
    Row row;                       // as the client has it
    std::uint64_t generation = 0;  // the update that last listed it
  };
  std::unordered_map<std::uint64_t, Sent<TaskInfo>> tasks_;
  std::unordered_map<std::uint64_t, Sent<TransportInfo>> transports_;
  std::uint64_t generation_ = 0;
  std::map<const char*, std::uint32_t> strings_;
  std::uint64_t dropped_for_client_ = 0;
  bool first_ = true;
};

}  // namespace eddy::inspect
