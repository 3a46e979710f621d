// The slab allocator behind futures, tasks and coroutine frames (see detail/slab.hpp).
#include "eddy/detail/slab.hpp"

#include <new>

#include "eddy/detail/pages.hpp"

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

constexpr std::size_t kGranule = 16;
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
  if (static_cast<std::size_t>(s.end - s.cursor) < rounded) {
    // The first arena faults in as used, so a small program stays small; a thread that outgrew
    // it is making many objects, and later arenas are populated whole.
    const auto use = s.cursor ? platform::PageUse::sequential : platform::PageUse::lazy;
    s.cursor = static_cast<char*>(platform::allocate_pages(kHugePageBytes, kHugePageBytes, use));
    s.end = s.cursor + kHugePageBytes;
  }
  void* p = s.cursor;
  s.cursor += rounded;
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
