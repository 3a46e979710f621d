// The inspector's wire format: a small strict JSON reader (the decoder the fuzz target drives) and
// the writer side, the agent's per-client delta Encoder. Message layout:
// docs/inspector-protocol.md.
#include "eddy/inspect_wire.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eddy::inspect {

// ---- Names of the kinds (the wire and the views spell them the same) ----------------------------

namespace {
struct KindNames {
  const char* name;
  const char* label;
};
constexpr KindNames kKinds[] = {
#define EDDY_KIND_ROW(id, label) {#id, label},
    EDDY_HANDLE_KINDS(EDDY_KIND_ROW)
#undef EDDY_KIND_ROW
};
constexpr const char* kEvents[] = {
#define EDDY_EVENT_ROW(id) #id,
    EDDY_EVENT_KINDS(EDDY_EVENT_ROW)
#undef EDDY_EVENT_ROW
};

}  // namespace

const char* kind_name(HandleKind k) noexcept {
  return kKinds[static_cast<std::size_t>(k)].name;
}
const char* kind_label(HandleKind k) noexcept {
  return kKinds[static_cast<std::size_t>(k)].label;
}
const char* event_name(EventKind k) noexcept {
  return kEvents[static_cast<std::size_t>(k)];
}
bool event_kind_from_name(const std::string& name, EventKind& out) noexcept {
  for (std::size_t i = 0; i < std::size(kEvents); ++i)
    if (name == kEvents[i]) {
      out = static_cast<EventKind>(i);
      return true;
    }
  return false;
}

namespace json {

namespace {
const std::vector<Value> kEmptyList;

class Parser {
 public:
  Parser(std::string_view text, Limits limits)
      : p_(text.data()), end_(text.data() + text.size()), limits_(limits) {}

  std::optional<Value> run(std::string* error) {
    Value v;
    skip_ws();
    if (!value(v, 0)) return fail(error);
    skip_ws();
    if (p_ != end_) {
      why_ = "trailing characters";
      return fail(error);
    }
    return v;
  }

 private:
  std::optional<Value> fail(std::string* error) {
    if (error) *error = why_.empty() ? "invalid JSON" : why_;
    return std::nullopt;
  }
  bool bad(const char* why) {
    if (why_.empty()) why_ = why;
    return false;
  }
  void skip_ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0)
      return bad("invalid literal");
    p_ += n;
    return true;
  }
  bool value(Value& v, std::size_t depth) {
    if (depth > limits_.max_depth) return bad("nested too deeply");
    if (p_ == end_) return bad("unexpected end");
    switch (*p_) {
      case '{':
        return object(v, depth);
      case '[':
        return array(v, depth);
      case '"':
        v.type = Value::Type::string;
        return string(v.string);
      case 't':
        v.type = Value::Type::boolean;
        v.boolean = true;
        return literal("true");
      case 'f':
        v.type = Value::Type::boolean;
        v.boolean = false;
        return literal("false");
      case 'n':
        v.type = Value::Type::null;
        return literal("null");
      default:
        return number(v);
    }
  }
  // Members and items collect on one scratch stack and move into their container once, sized
  // exactly: updates are mostly short arrays, and growing each one would dominate decoding.
  bool object(Value& v, std::size_t depth) {
    v.type = Value::Type::object;
    ++p_;
    skip_ws();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    const std::size_t base = items_.size(), key_base = keys_.size();
    for (;;) {
      skip_ws();
      if (p_ == end_ || *p_ != '"') return bad("expected a member name");
      std::string key;
      if (!string(key)) return false;
      skip_ws();
      if (p_ == end_ || *p_ != ':') return bad("expected ':'");
      ++p_;
      skip_ws();
      Value member;
      if (!value(member, depth + 1)) return false;
      keys_.push_back(std::move(key));
      items_.push_back(std::move(member));
      skip_ws();
      if (p_ == end_) return bad("unterminated object");
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == '}') {
        ++p_;
        take(v.keys, keys_, key_base);
        take(v.array, items_, base);
        return true;
      }
      return bad("expected ',' or '}'");
    }
  }
  bool array(Value& v, std::size_t depth) {
    v.type = Value::Type::array;
    ++p_;
    skip_ws();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    const std::size_t base = items_.size();
    for (;;) {
      skip_ws();
      Value item;
      if (!value(item, depth + 1)) return false;
      items_.push_back(std::move(item));
      skip_ws();
      if (p_ == end_) return bad("unterminated array");
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == ']') {
        ++p_;
        take(v.array, items_, base);
        return true;
      }
      return bad("expected ',' or ']'");
    }
  }
  template <typename T>
  static void take(std::vector<T>& into, std::vector<T>& stack, std::size_t base) {
    into.reserve(stack.size() - base);
    for (std::size_t i = base; i < stack.size(); ++i) into.push_back(std::move(stack[i]));
    stack.resize(base);
  }
  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  bool hex4(std::uint32_t& cp) {
    if (end_ - p_ < 4) return bad("short \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      cp <<= 4;
      if (c >= '0' && c <= '9')
        cp |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        cp |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        cp |= static_cast<std::uint32_t>(c - 'A' + 10);
      else
        return bad("bad \\u escape");
    }
    return true;
  }
  bool string(std::string& out) {
    ++p_;  // the opening quote
    for (;;) {
      if (p_ == end_) return bad("unterminated string");
      const char c = *p_++;
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return bad("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p_ == end_) return bad("unterminated escape");
      switch (*p_++) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            std::uint32_t lo;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return bad("lone surrogate");
            p_ += 2;
            if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return bad("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return bad("lone surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          return bad("bad escape");
      }
    }
  }
  bool number(Value& v) {
    const char* start = p_;
    const bool negative = p_ != end_ && *p_ == '-';
    if (negative) ++p_;
    if (p_ == end_ || !(*p_ >= '0' && *p_ <= '9')) return bad("unexpected character");
    std::uint64_t integer = 0;
    const char* digits = p_;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9')
        integer = integer * 10 + static_cast<std::uint64_t>(*p_++ - '0');
    }
    bool exact_integer = p_ - digits <= 15;  // below 2^53: the double is exact
    if (p_ != end_ && *p_ == '.') {
      exact_integer = false;
      ++p_;
      if (p_ == end_ || !(*p_ >= '0' && *p_ <= '9')) return bad("bad fraction");
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      exact_integer = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !(*p_ >= '0' && *p_ <= '9')) return bad("bad exponent");
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    const std::size_t n = static_cast<std::size_t>(p_ - start);
    if (n > 64) return bad("number too long");
    v.type = Value::Type::number;
    if (exact_integer) {  // most of an update: ids, counts, interned string indexes
      v.number = negative ? -static_cast<double>(integer) : static_cast<double>(integer);
      return true;
    }
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    std::from_chars(start, p_, v.number);  // the grammar was checked above
#else
    char buf[65];
    std::memcpy(buf, start, n);
    buf[n] = '\0';
    v.number = std::strtod(buf, nullptr);
#endif
    return true;
  }

  const char* p_;
  const char* end_;
  Limits limits_;
  std::string why_;
  std::vector<Value> items_;
  std::vector<std::string> keys_;
};
}  // namespace

const Value* Value::get(std::string_view key) const noexcept {
  if (type != Type::object) return nullptr;
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key) return &array[i];
  return nullptr;
}
double Value::num(std::string_view key, double fallback) const noexcept {
  const Value* v = get(key);
  return v && v->type == Type::number ? v->number : fallback;
}
std::uint64_t Value::u64(std::string_view key, std::uint64_t fallback) const noexcept {
  const Value* v = get(key);
  return v ? v->to_u64(fallback) : fallback;
}
std::uint64_t Value::to_u64(std::uint64_t fallback) const noexcept {
  if (type != Type::number || !(number >= 0) || number > 1.8e19) return fallback;
  return static_cast<std::uint64_t>(number);
}
std::string Value::str(std::string_view key, std::string fallback) const {
  const Value* v = get(key);
  return v && v->type == Type::string ? v->string : fallback;
}
bool Value::flag(std::string_view key, bool fallback) const noexcept {
  const Value* v = get(key);
  return v && v->type == Type::boolean ? v->boolean : fallback;
}
const std::vector<Value>& Value::list(std::string_view key) const noexcept {
  const Value* v = get(key);
  return v && v->type == Type::array ? v->array : kEmptyList;
}

std::optional<Value> parse(std::string_view text, std::string* error, Limits limits) {
  if (text.size() > limits.max_bytes) {
    if (error) *error = "message too large";
    return std::nullopt;
  }
  return Parser(text, limits).run(error);
}

void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x",
                        static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void append_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += '0';
    return;
  }
  char buf[32];
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  // Several times faster than snprintf, and updates are mostly numbers.
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 9);
  out.append(buf, r.ptr);
#else
  std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
#endif
}

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace json

// ---- Handshake ----------------------------------------------------------------------------------

std::string client_hello(std::string_view token) {
  std::string out = "{\"type\":\"hello\",\"protocol\":";
  json::append_number(out, static_cast<std::uint64_t>(kProtocolVersion));
  out += ",\"token\":";
  json::append_string(out, token);
  out += "}\n";
  return out;
}

std::optional<Hello> parse_client_hello(std::string_view line) {
  auto v = json::parse(line, nullptr, json::Limits{kMaxClientLine, 4});
  if (!v || v->type != json::Value::Type::object || v->str("type") != "hello") return std::nullopt;
  const json::Value* token = v->get("token");
  if (!token || token->type != json::Value::Type::string) return std::nullopt;
  Hello h;
  h.protocol = static_cast<int>(v->num("protocol", 0));
  h.token = token->string;
  return h;
}

std::string welcome_message(std::string_view server_name) {
  std::string out = "{\"type\":\"welcome\",\"protocol\":";
  json::append_number(out, static_cast<std::uint64_t>(kProtocolVersion));
  out += ",\"server\":";
  json::append_string(out, server_name);
  out += ",\"handle_kinds\":[";
  for (std::size_t i = 0; i < kHandleKindCount; ++i) {
    if (i) out += ',';
    out += '[';
    json::append_string(out, kind_name(static_cast<HandleKind>(i)));
    out += ',';
    json::append_string(out, kind_label(static_cast<HandleKind>(i)));
    out += ']';
  }
  out += "],\"event_kinds\":[";
  for (std::size_t i = 0;; ++i) {
    const EventKind k = static_cast<EventKind>(i);
    if (i > static_cast<std::size_t>(EventKind::slow_callback)) break;
    if (i) out += ',';
    json::append_string(out, event_name(k));
  }
  out += "]}\n";
  return out;
}

std::string error_message(std::string_view message) {
  std::string out = "{\"type\":\"error\",\"message\":";
  json::append_string(out, message);
  out += "}\n";
  return out;
}

// ---- Encoder ------------------------------------------------------------------------------------

namespace {
using json::append_number;
using json::append_string;

void key(std::string& out, const char* k) {
  out += '"';
  out += k;
  out += "\":";
}
void num_field(std::string& out, const char* k, double v) {
  key(out, k);
  append_number(out, v);
  out += ',';
}
void u64_field(std::string& out, const char* k, std::uint64_t v) {
  key(out, k);
  append_number(out, v);
  out += ',';
}
void str_field(std::string& out, const char* k, std::string_view v) {
  key(out, k);
  append_string(out, v);
  out += ',';
}
void bool_field(std::string& out, const char* k, bool v) {
  key(out, k);
  out += v ? "true," : "false,";
}
// Replaces a trailing ',' by the closing character.
void close_with(std::string& out, char c) {
  if (!out.empty() && out.back() == ',')
    out.back() = c;
  else
    out += c;
}

void handle_rows(std::string& out, const std::vector<HandleInfo>& rows, bool timers) {
  out += '[';
  for (const HandleInfo& h : rows) {
    out += '{';
    str_field(out, "name", h.name);
    str_field(out, "file", h.file);
    u64_field(out, "line", h.line);
    if (h.cancelled) bool_field(out, "cancelled", true);
    if (timers) num_field(out, "when", h.when);
    close_with(out, '}');
    out += ',';
  }
  close_with(out, ']');
}

void write_await(std::string& out, const char* k, const std::vector<AwaitInfo>& chain) {
  key(out, k);
  out += '[';
  for (const AwaitInfo& a : chain) {
    out += '{';
    str_field(out, "function", a.function);
    str_field(out, "awaiting", a.awaiting);
    str_field(out, "file", a.file);
    u64_field(out, "line", a.line);
    close_with(out, '}');
    out += ',';
  }
  close_with(out, ']');
  out += ',';
}

}  // namespace

namespace {
// Writes one row: its id, then every field (`whole`) or only those of `now` that differ from
// `was`; either way `was` becomes `now`. One list of fields per row type serves new rows,
// changed rows and recordings alike.
class RowFields {
 public:
  RowFields(std::string& out, std::uint64_t id, bool whole)
      : out_(out), start_(out.size()), whole_(whole) {
    out_ += '{';
    u64_field(out_, "id", id);
    fields_ = out_.size();
  }
  template <class T, class Write>
  void field(const char* k, T& was, const T& now, Write write) {
    if (!whole_ && was == now) return;
    write(out_, k, now);
    was = now;
  }
  // True (and the row closed) if there is something to send; a changed row with no change is
  // taken back.
  bool close() {
    if (!whole_ && out_.size() == fields_) {
      out_.resize(start_);
      return false;
    }
    close_with(out_, '}');
    return true;
  }

 private:
  std::string& out_;
  std::size_t start_, fields_ = 0;
  bool whole_;
};

bool task_row(std::string& out, TaskInfo& was, const TaskInfo& now, bool whole) {
  RowFields c(out, now.id, whole);
  c.field("name", was.name, now.name, str_field);
  c.field("state", was.state, now.state, str_field);
  c.field("created", was.created, now.created, num_field);
  c.field("runs", was.runs, now.runs, u64_field);
  c.field("busy", was.busy, now.busy, num_field);
  c.field("file", was.file, now.file, str_field);
  c.field("line", was.line, now.line,
          [](std::string& o, const char* k, std::uint32_t v) { u64_field(o, k, v); });
  c.field("await", was.await_chain, now.await_chain, write_await);
  return c.close();
}

bool transport_row(std::string& out, TransportInfo& was, const TransportInfo& now, bool whole) {
  RowFields c(out, now.id, whole);
  c.field("server", was.server, now.server, u64_field);
  c.field("kind", was.kind, now.kind, str_field);
  c.field("peer", was.peer, now.peer, str_field);
  c.field("state", was.state, now.state, str_field);
  c.field("bytes_in", was.bytes_in, now.bytes_in, u64_field);
  c.field("bytes_out", was.bytes_out, now.bytes_out, u64_field);
  c.field("buffer", was.buffer, now.buffer, u64_field);
  c.field("high", was.high, now.high, u64_field);
  c.field("low", was.low, now.low, u64_field);
  c.field("writing_paused", was.writing_paused, now.writing_paused, bool_field);
  c.field("reading_paused", was.reading_paused, now.reading_paused, bool_field);
  return c.close();
}
}  // namespace

void write_task(std::string& out, const TaskInfo& t) {
  TaskInfo scratch;
  task_row(out, scratch, t, true);
}

void write_transport(std::string& out, const TransportInfo& t) {
  TransportInfo scratch;
  transport_row(out, scratch, t, true);
}

namespace {
// Writes {"upsert":[...],"removed":[...]}: a new row whole, a known one as its id and the fields
// that changed since `sent` (not at all if none did), and the ids that are gone. `sent` is updated
// in place, so an unchanged row costs one lookup and one comparison per field.
template <class Row, class SentMap, class WriteRow>
void delta(std::string& out, const std::vector<Row>& rows, SentMap& sent, std::uint64_t generation,
           WriteRow write_row) {
  out += "{\"upsert\":[";
  for (const Row& r : rows) {
    auto [it, inserted] = sent.try_emplace(r.id);
    it->second.generation = generation;
    if (write_row(out, it->second.row, r, inserted)) out += ',';
  }
  close_with(out, ']');
  out += ",\"removed\":[";
  for (auto it = sent.begin(); it != sent.end();) {
    if (it->second.generation == generation) {
      ++it;
      continue;
    }
    append_number(out, it->first);
    out += ',';
    it = sent.erase(it);
  }
  close_with(out, ']');
  out += '}';
}
}  // namespace

std::uint32_t Encoder::intern(const char* text, std::string& new_strings) {
  if (!text) return 0;
  auto [it, inserted] = strings_.emplace(text, static_cast<std::uint32_t>(strings_.size() + 1));
  if (inserted) {
    new_strings += '[';
    append_number(new_strings, static_cast<std::uint64_t>(it->second));
    new_strings += ',';
    append_string(new_strings, text);
    new_strings += "],";
  }
  return it->second;
}

std::string Encoder::update(const Snapshot& s, std::uint64_t skipped_events) {
  dropped_for_client_ += skipped_events;
  std::string out;
  out.reserve(4096 + s.events.size() * 48 + s.tasks.size() * 64);
  out += "{\"type\":\"update\",";
  u64_field(out, "seq", s.seq);
  num_field(out, "time", s.time);
  num_field(out, "interval", s.interval);
  bool_field(out, "full", first_);
  first_ = false;

  const Metrics& m = s.metrics;
  key(out, "metrics");
  out += '{';
  u64_field(out, "iterations", m.iterations);
  num_field(out, "iterations_per_s", m.iterations_per_s);
  num_field(out, "lag_max", m.lag_max);
  num_field(out, "lag_mean", m.lag_mean);
  num_field(out, "poll_s", m.poll_s);
  num_field(out, "timers_s", m.timers_s);
  num_field(out, "ready_s", m.ready_s);
  u64_field(out, "ready_depth", m.ready_depth);
  u64_field(out, "ready_depth_max", m.ready_depth_max);
  u64_field(out, "callbacks", m.callbacks);
  u64_field(out, "timers", m.timers);
  u64_field(out, "cancelled_timers", m.cancelled_timers);
  u64_field(out, "dropped_events", m.dropped_events + dropped_for_client_);
  u64_field(out, "event_stride", m.event_stride);
  key(out, "live");
  out += '[';
  for (std::size_t i = 0; i < kHandleKindCount; ++i) {
    if (i) out += ',';
    append_number(out, m.live[i]);
  }
  out += "]},";

  u64_field(out, "ready_total", s.ready_total);
  u64_field(out, "timers_total", s.timers_total);
  key(out, "ready");
  handle_rows(out, s.ready, false);
  out += ',';
  key(out, "timers");
  handle_rows(out, s.timers, true);
  out += ',';
  key(out, "tasks");
  ++generation_;
  delta(out, s.tasks, tasks_, generation_, task_row);
  out += ',';
  key(out, "transports");
  delta(out, s.transports, transports_, generation_, transport_row);
  out += ',';

  key(out, "servers");
  out += '[';
  for (const ServerInfo& sv : s.servers) {
    out += '{';
    u64_field(out, "id", sv.id);
    str_field(out, "address", sv.address);
    bool_field(out, "serving", sv.serving);
    u64_field(out, "connections", sv.connections);
    close_with(out, '}');
    out += ',';
  }
  close_with(out, ']');
  out += ',';

  key(out, "exceptions");
  out += '[';
  for (const ExceptionInfo& e : s.exceptions) {
    out += '{';
    num_field(out, "time", e.time);
    str_field(out, "message", e.message);
    str_field(out, "exception", e.exception);
    str_field(out, "file", e.file);
    u64_field(out, "line", e.line);
    if (e.slow) {
      bool_field(out, "slow", true);
      num_field(out, "duration", e.duration);
    }
    close_with(out, '}');
    out += ',';
  }
  close_with(out, ']');
  out += ',';

  key(out, "passes");
  out += '[';
  for (const PassSample& p : s.passes) {
    out += '[';
    append_number(out, p.start);
    out += ',';
    append_number(out, static_cast<double>(p.poll));
    out += ',';
    append_number(out, static_cast<double>(p.timers));
    out += ',';
    append_number(out, static_cast<double>(p.ready));
    out += ',';
    append_number(out, static_cast<std::uint64_t>(p.ready_depth));
    out += "],";
  }
  close_with(out, ']');
  out += ',';

  // Events: [time, kind, id, value, name, file, line] with names and files interned.
  std::string strings;
  std::string events;
  events.reserve(s.events.size() * 40);
  for (const Event& e : s.events) {
    const std::uint32_t name = intern(e.name, strings);
    const std::uint32_t file = intern(e.file, strings);
    events += '[';
    append_number(events, e.time);
    events += ',';
    append_number(events, static_cast<std::uint64_t>(e.kind));
    events += ',';
    append_number(events, e.id);
    events += ',';
    append_number(events, e.value);
    events += ',';
    append_number(events, static_cast<std::uint64_t>(name));
    events += ',';
    append_number(events, static_cast<std::uint64_t>(file));
    events += ',';
    append_number(events, static_cast<std::uint64_t>(e.line));
    events += "],";
  }
  key(out, "strings");
  out += '[';
  out += strings;
  close_with(out, ']');
  out += ',';
  key(out, "events");
  out += '[';
  out += events;
  close_with(out, ']');
  out += "}\n";
  return out;
}

}  // namespace eddy::inspect
