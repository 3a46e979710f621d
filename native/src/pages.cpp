// Native page source for the core's slabs and large arrays: anonymous mmap, trimmed to the
// requested alignment. Arenas that will be used front to back soon are populated with one
// MADV_POPULATE_WRITE (Linux 5.14+; older kernels fail the call and fault pages in lazily). They
// stay on 4 KiB pages unless EDDY_HUGE_PAGES=1 is set: on VMs that hand free 2 MiB blocks back to
// the host (virtio-balloon free page reporting) a huge page is usually one the host must supply
// again, which made a million pending callbacks or tasks three times slower than 4 KiB pages
// (docs/architecture.md).
#include <sys/mman.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "eddy/detail/pages.hpp"

namespace eddy::platform {
namespace {
#ifdef MADV_POPULATE_WRITE
constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kPopulateWrite = 23;  // Linux's value, for C library headers that predate it
#endif

// EDDY_HUGE_PAGES=1: back busy arenas and arrays of several huge pages with huge pages, where
// the host keeps freed memory (bare metal, VMs without free page reporting).
bool huge_pages_wanted() noexcept {
  static const bool wanted = [] {
    const char* v = std::getenv("EDDY_HUGE_PAGES");
    return v && std::strcmp(v, "1") == 0;
  }();
  return wanted;
}

// Marks [p, p + bytes) for huge pages where that is wanted and worth it, then populates it if it
// will be used front to back soon.
void prepare_pages(void* p, std::size_t bytes, std::size_t align, PageUse use) noexcept {
#ifdef MADV_HUGEPAGE
  // A lazy arena of one huge page (a thread's first) stays on 4 KiB pages: small programs keep a
  // small resident size.
  const bool worth_huge = use == PageUse::sequential || bytes >= 2 * detail::kHugePageBytes;
  if (worth_huge && align % detail::kHugePageBytes == 0 && bytes >= detail::kHugePageBytes &&
      huge_pages_wanted())
    ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  if (use == PageUse::sequential) ::madvise(p, bytes, kPopulateWrite);
}

// Maps `bytes` aligned to `align`, trimming the slack mapped to find the alignment.
void* map_aligned(std::size_t bytes, std::size_t align, int prot, int flags) noexcept {
  const std::size_t span = bytes + align;
  void* raw = ::mmap(nullptr, span, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (base + align - 1) & ~(std::uintptr_t{align} - 1);
  if (aligned > base) ::munmap(raw, aligned - base);
  const std::uintptr_t end = base + span, used_end = aligned + bytes;
  if (end > used_end) ::munmap(reinterpret_cast<void*>(used_end), end - used_end);
  return reinterpret_cast<void*>(aligned);
}
}  // namespace

void* allocate_pages(std::size_t bytes, std::size_t align, PageUse use) {
  void* p = map_aligned(bytes, align, PROT_READ | PROT_WRITE, 0);
  if (p == nullptr) throw std::bad_alloc();
  prepare_pages(p, bytes, align, use);
  return p;
}

void free_pages(void* p, std::size_t bytes, std::size_t) noexcept { ::munmap(p, bytes); }

}  // namespace eddy::platform
