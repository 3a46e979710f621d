// HandlePool blocks, handle cancellation and the thread-safe handles' release.
#include "eddy/handle.hpp"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>

#include "eddy/detail/pages.hpp"
#include "eddy/loop.hpp"

namespace eddy {
namespace detail {

void HandlePool::grow() {
  if (capacity() + kPerBlock > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("eddy: too many live handles");
  blocks_.reserve(blocks_.size() + 1);
  auto* header = static_cast<BlockHeader*>(source_.take());
  header->pool = this;
  header->files = nullptr;
  header->base_index = static_cast<std::uint32_t>(capacity());
  blocks_.push_back(header);
  fresh_ = records_of(header);
  fresh_end_ = fresh_ + kPerBlock;
}

void HandlePool::set_file(HandleRecord* r, const char* file) {
  auto* b = const_cast<BlockHeader*>(header_of(r));
  if (b->files == nullptr) b->files = new const char*[kPerBlock];
  b->files[position_in_block(r)] = file;
}

HandlePool::~HandlePool() {
  for (BlockHeader* b : blocks_) delete[] b->files;
}

void HandlePool::orphan() noexcept {
  loop_ = nullptr;
  if (live_ == 0) delete this;
}

void release_shared_handle(HandleRecord* r) noexcept {
  if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    r->destroy_callback();
    delete static_cast<SharedHandleRecord*>(r);
  }
}

void cancel_handle(HandleRecord* r) noexcept {
  if (r->has(kHandleCancelled)) return;
  r->flags |= kHandleCancelled;
  if (r->has(kHandleTimer) && r->has(kHandleScheduled)) {
    if (EventLoop* loop = HandlePool::pool_of(r)->loop()) {
      loop->timer_cancelled();
      EDDY_INSPECT_HOOK(*loop, timer_cancelled(r));
    }
  }
  if (!r->has(kHandleRunning)) r->destroy_callback();
}

namespace {

bool opens(char c) {
  return c == '(' || c == '<' || c == '[' || c == '{';
}
bool closes(char c) {
  return c == ')' || c == '>' || c == ']' || c == '}';
}

// "f(f(int)::_ZN1f....Frame*)" -> "f"; "operator()() const" -> "operator()"; "<lambda()>" and
// clang's "(lambda at ...)" unchanged.
std::string_view without_parameters(std::string_view c) {
  if (c.empty() || c.front() == '<' || c.front() == '(') return c;
  constexpr std::string_view kConst = " const";
  if (c.size() > kConst.size() && c.substr(c.size() - kConst.size()) == kConst)
    c.remove_suffix(kConst.size());
  if (c.empty() || c.back() != ')') return c;
  int depth = 0;
  for (std::size_t i = c.size(); i-- > 0;) {
    if (closes(c[i])) ++depth;
    if (opens(c[i]) && --depth == 0) return i == 0 ? c : c.substr(0, i);
  }
  return c;
}

}  // namespace

std::string type_name_from_signature(const char* pretty) {
  std::string_view s(pretty);
  std::size_t start = s.find("T = ");
  if (start == std::string_view::npos) return std::string(s);
  start += 4;
  // The end of the template argument: the first ';' or ']' outside brackets (gcc's lambdas read
  // "main()::<lambda()>", clang's "(lambda at file:line:col)").
  int depth = 0;
  std::size_t end = start;
  for (; end < s.size(); ++end) {
    const char c = s[end];
    if (depth == 0 && (c == ';' || c == ']')) break;
    if (opens(c)) ++depth;
    if (closes(c) && depth > 0) --depth;
  }
  const std::string_view type = s.substr(start, end - start);
  // Its scopes, split at the "::" outside brackets.
  std::string out;
  depth = 0;
  std::size_t from = 0;
  auto add = [&](std::string_view c) {
    if (c == "{anonymous}" || c == "(anonymous namespace)") return;
    c = without_parameters(c);
    if (!out.empty()) out += "::";
    out += c;
  };
  for (std::size_t i = 0; i < type.size(); ++i) {
    if (opens(type[i])) ++depth;
    if (closes(type[i]) && depth > 0) --depth;
    if (depth == 0 && type.compare(i, 2, "::") == 0) {
      add(type.substr(from, i - from));
      from = i + 2;
      ++i;
    }
  }
  add(type.substr(from));
  return out.empty() ? std::string(type) : out;
}

}  // namespace detail

void Handle::cancel() noexcept {
  if (!is_ticket()) {
    if (bits_) detail::cancel_handle(record());
    return;
  }
  if (bits_ & detail::ticket::kCancelled) return;
  bits_ |= detail::ticket::kCancelled;
  if (EventLoop* loop = detail::ticket::loop_of(bits_))
    loop->cancel_ticket(detail::ticket::seq(bits_));
}

const char* Handle::callback_name() const noexcept {
  if (is_ticket()) {
    EventLoop* loop = cancelled() ? nullptr : detail::ticket::loop_of(bits_);
    const char* name = loop ? loop->ticket_callback_name(detail::ticket::seq(bits_)) : nullptr;
    return name ? name : "<no callback>";
  }
  detail::HandleRecord* r = record();
  if (!r || !r->ops) return "<no callback>";
  return r->ops->name(r->storage);
}

std::uint64_t Handle::share_ticket() const {
  EventLoop* loop = cancelled() ? nullptr : detail::ticket::loop_of(bits_);
  detail::HandleRecord* r;
  if (loop) {
    r = loop->share_ticket(detail::ticket::seq(bits_));
  } else {
    // Cancelled, or its loop is gone: nothing of the callback is left to share.
    r = detail::new_shared_record();
    if (cancelled()) r->flags = detail::kHandleCancelled;
  }
  r->flags |= detail::kHandleFromTicket;
  r->ticket = bits_ & ~detail::ticket::kCancelled;
  // The record has this handle's reference; the copy takes another.
  detail::retain_handle(r);
  bits_ = reinterpret_cast<std::uintptr_t>(r);
  return bits_;
}

}  // namespace eddy
