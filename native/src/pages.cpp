// Native page source for the core's slabs: anonymous mmap, trimmed to the requested alignment and
// marked MADV_HUGEPAGE, so that on kernels in `madvise` THP mode large slabs fault in 2 MiB at a
// time (page faults are the dominant cost of first-touching handle memory on virtual machines).
#include <sys/mman.h>

#include <cstdint>
#include <new>

#include "eddy/detail/pages.hpp"

namespace eddy::platform {

void* allocate_pages(std::size_t bytes, std::size_t align) {
  const std::size_t span = bytes + align;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (base + align - 1) & ~(std::uintptr_t{align} - 1);
  if (aligned > base) ::munmap(raw, aligned - base);
  const std::uintptr_t end = base + span, used_end = aligned + bytes;
  if (end > used_end) ::munmap(reinterpret_cast<void*>(used_end), end - used_end);
#ifdef MADV_HUGEPAGE
  if (bytes >= detail::kHugePageBytes) ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void*>(aligned);
}

void free_pages(void* p, std::size_t bytes, std::size_t) noexcept { ::munmap(p, bytes); }

}  // namespace eddy::platform
