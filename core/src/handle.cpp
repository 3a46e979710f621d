// HandlePool blocks, handle cancellation and the thread-safe handles' release.
#include "eddy/handle.hpp"

#include <cstring>
#include <limits>
#include <stdexcept>

#include "eddy/detail/pages.hpp"
#include "eddy/loop.hpp"

namespace eddy {
namespace detail {

void HandlePool::grow() {
  if (capacity() + kPerBlock > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("eddy: too many live handles");
  blocks_.reserve(blocks_.size() + 1);
  void* mem;
  if (blocks_.size() < kHeapBlocks) {
    mem = ::operator new(kBlockBytes, std::align_val_t{kBlockBytes});
  } else {
    if (arena_blocks_left_ == 0) {
      arenas_.reserve(arenas_.size() + 1);
      arenas_.push_back(
          platform::allocate_pages(kHugePageBytes, kHugePageBytes, platform::PageUse::sequential));
      arena_blocks_left_ = kHugePageBytes / kBlockBytes;
    }
    mem = static_cast<char*>(arenas_.back()) + (kHugePageBytes / kBlockBytes - arena_blocks_left_) * kBlockBytes;
    --arena_blocks_left_;
  }
  auto* header = static_cast<BlockHeader*>(mem);
  header->pool = this;
  header->base_index = static_cast<std::uint32_t>(capacity());
  blocks_.push_back(header);
  fresh_ = records_of(header);
  fresh_end_ = fresh_ + kPerBlock;
}

HandlePool::~HandlePool() {
  for (std::size_t i = 0; i < blocks_.size() && i < kHeapBlocks; ++i)
    ::operator delete(blocks_[i], std::align_val_t{kBlockBytes});
  for (void* a : arenas_) platform::free_pages(a, kHugePageBytes, kHugePageBytes);
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
    if (EventLoop* loop = HandlePool::pool_of(r)->loop()) {
      loop->timer_cancelled();
      EDDY_INSPECT_HOOK(*loop, timer_cancelled(r));
    }
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
