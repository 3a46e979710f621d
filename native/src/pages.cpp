// Native page source for the core's slabs: anonymous mmap, trimmed to the requested alignment.
// Not marked MADV_HUGEPAGE: under the common `defrag=madvise` setting a huge-page fault may
// compact memory synchronously, which stalled first-touching runs by up to 5x on a busy machine.
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
  return reinterpret_cast<void*>(aligned);
}

void free_pages(void* p, std::size_t bytes, std::size_t) noexcept { ::munmap(p, bytes); }

}  // namespace eddy::platform
