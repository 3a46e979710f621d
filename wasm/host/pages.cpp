// WebAssembly page source for the core's slabs: linear memory has no page faults to avoid and no
// mmap worth using, so slabs are aligned allocations from the C++ heap.
#include <new>

#include "eddy/detail/pages.hpp"

namespace eddy::platform {

void* allocate_pages(std::size_t bytes, std::size_t align, PageUse) {
  return ::operator new(bytes, std::align_val_t{align});
}

void free_pages(void* p, std::size_t, std::size_t align) noexcept {
  ::operator delete(p, std::align_val_t{align});
}

}  // namespace eddy::platform
