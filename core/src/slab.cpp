// The slab allocator behind futures, tasks and coroutine frames (see detail/slab.hpp).
#include "eddy/detail/slab.hpp"

#include <new>

#include "eddy/detail/pages.hpp"

namespace eddy::detail {

BlockSource::~BlockSource() {
  for (void* b : heap_blocks_) ::operator delete (b, std::align_val_t{block_bytes_});
  for (void* a : arenas_) platform::free_pages(a, kHugePageBytes, kHugePageBytes);
}

void* BlockSource::take() {
  if (heap_blocks_.size() < heap_limit_) {
    heap_blocks_.reserve(heap_limit_);
    void* b = ::operator new (block_bytes_, std::align_val_t{block_bytes_});
    heap_blocks_.push_back(b);
    return b;
  }
  if (arena_blocks_left_ == 0) {
    arenas_.reserve(arenas_.size() + 1);
    arenas_.push_back(
        platform::allocate_pages(kHugePageBytes, kHugePageBytes,
                                 arenas_.empty() ? first_arena_ : platform::PageUse::sequential));
    arena_blocks_left_ = kHugePageBytes / block_bytes_;
  }
  return static_cast<char*>(arenas_.back()) + kHugePageBytes - arena_blocks_left_-- * block_bytes_;
}

}  // namespace eddy::detail

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EDDY_SLAB_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EDDY_SLAB_PASSTHROUGH 1
#endif
#endif

namespace eddy::detail {

#ifdef EDDY_SLAB_PASSTHROUGH

void* slab_allocate(std::size_t bytes) { return ::operator new(bytes); }
void slab_free(void* p, std::size_t) noexcept { ::operator delete(p); }

#else

namespace {

// Sizes are rounded to 8 bytes, not 16: an object whose size is an odd multiple of 8 cannot need
// more than 8-byte alignment (a size is a multiple of the alignment), and a coroutine frame of 88
// bytes then takes 88, not 96. Such sizes are carved from an arena two at a time (the second goes
// on the free list), so the arena's cursor stays 16-byte aligned for the other sizes.
constexpr std::size_t kGranule = 8;
constexpr std::size_t kMaxSlabBytes = 1024;
constexpr std::size_t kClasses = kMaxSlabBytes / kGranule;

struct FreeNode {
  FreeNode* next;
};

// One per thread. Arenas are never returned: they are process-lifetime caches, like malloc's.
// A block freed on another thread joins that thread's list, which is safe for that reason.
struct ThreadSlabs {
  FreeNode* free[kClasses] = {};
  char* cursor = nullptr;
  char* end = nullptr;
};

thread_local ThreadSlabs slabs;

std::size_t class_of(std::size_t bytes) noexcept { return (bytes + kGranule - 1) / kGranule - 1; }

}  // namespace

void* slab_allocate(std::size_t bytes) {
  if (bytes == 0 || bytes > kMaxSlabBytes) return ::operator new(bytes);
  const std::size_t c = class_of(bytes);
  ThreadSlabs& s = slabs;
  if (FreeNode* n = s.free[c]) {
    s.free[c] = n->next;
    return n;
  }
  const std::size_t rounded = (c + 1) * kGranule;
  const std::size_t carved = rounded % 16 == 0 ? rounded : 2 * rounded;
  if (static_cast<std::size_t>(s.end - s.cursor) < carved) {
    // The first arena faults in as used, so a small program stays small; a thread that outgrew
    // it is making many objects, and later arenas are populated whole.
    const auto use = s.cursor ? platform::PageUse::sequential : platform::PageUse::lazy;
    s.cursor = static_cast<char*>(platform::allocate_pages(kHugePageBytes, kHugePageBytes, use));
    s.end = s.cursor + kHugePageBytes;
  }
  void* p = s.cursor;
  if (carved != rounded) {
    auto* second = reinterpret_cast<FreeNode*>(s.cursor + rounded);
    second->next = nullptr;  // the list was empty
    s.free[c] = second;
  }
  s.cursor += carved;
  return p;
}

void slab_free(void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes == 0 || bytes > kMaxSlabBytes) {
    ::operator delete(p);
    return;
  }
  ThreadSlabs& s = slabs;
  auto* n = static_cast<FreeNode*>(p);
  const std::size_t c = class_of(bytes);
  n->next = s.free[c];
  s.free[c] = n;
}

#endif

}  // namespace eddy::detail
