// HandlePool blocks, handle cancellation and the thread-safe handles' release.
#include "eddy/handle.hpp"

#include <cstring>
#include <limits>
#include <stdexcept>

#include "eddy/loop.hpp"

namespace eddy {
namespace detail {

void HandlePool::grow() {
  if (capacity() + kPerBlock > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("eddy: too many live handles");
  void* mem = ::operator new(kBlockBytes, std::align_val_t{kBlockBytes});
  auto* header = static_cast<BlockHeader*>(mem);
  header->pool = this;
  header->base_index = static_cast<std::uint32_t>(capacity());
  blocks_.push_back(header);
  HandleRecord* recs = records_of(header);
  for (std::size_t i = kPerBlock; i-- > 0;) {  // lowest address handed out first
    recs[i].ops = nullptr;
    recs[i].next_free = free_;
    free_ = &recs[i];
  }
}

HandlePool::~HandlePool() {
  for (BlockHeader* b : blocks_) ::operator delete(b, std::align_val_t{kBlockBytes});
}

void HandlePool::orphan() noexcept {
  loop_ = nullptr;
  if (live_ == 0) delete this;
}

void release_shared_handle(HandleRecord* r) noexcept {
  if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    r->destroy_callback();
    delete r;
  }
}

void cancel_handle(HandleRecord* r) noexcept {
  if (r->has(kHandleCancelled)) return;
  r->flags |= kHandleCancelled;
  if (r->has(kHandleTimer) && r->has(kHandleScheduled)) {
    if (EventLoop* loop = HandlePool::pool_of(r)->loop()) loop->timer_cancelled();
  }
  if (!r->has(kHandleRunning)) r->destroy_callback();
}

std::string type_name_from_signature(const char* pretty) {
  std::string s(pretty);
  std::size_t start = s.find("T = ");
  if (start == std::string::npos) return s;
  start += 4;
  std::size_t end = s.find_first_of(";]", start);
  // Lambdas in gcc contain ']'-free text like "main()::<lambda()>"; clang writes
  // "(lambda at file:line:col)". Cut at the closing bracket of the template argument list.
  if (end == std::string::npos) end = s.size();
  return s.substr(start, end - start);
}

}  // namespace detail

const char* Handle::callback_name() const noexcept {
  if (!rec_ || !rec_->ops) return "<no callback>";
  return rec_->ops->name(rec_->storage);
}

}  // namespace eddy
