// Size-classed allocation for the loop's small, numerous objects: futures, tasks and coroutine
// frames. Per-thread free lists over 2 MiB page arenas (detail/pages.hpp), with no per-object
// header, so a freed frame is reused by the next one of its size. Sanitizer builds use plain
// operator new so ASan still sees every use after free.
#pragma once

#include <cstddef>
#include <new>

namespace eddy::detail {

void* slab_allocate(std::size_t bytes);
void slab_free(void* p, std::size_t bytes) noexcept;

// Base for classes allocated through the slab (sized delete is required: virtual destructors
// pass the dynamic size).
struct SlabAllocated {
  static void* operator new(std::size_t bytes) { return slab_allocate(bytes); }
  static void operator delete(void* p, std::size_t bytes) noexcept { slab_free(p, bytes); }
  // Over-aligned types bypass the slab (it aligns objects whose size is a multiple of 16 to 16
  // bytes, others to 8).
  static void* operator new(std::size_t bytes, std::align_val_t al) { return ::operator new(bytes, al); }
  static void operator delete(void* p, std::size_t, std::align_val_t al) noexcept { ::operator delete(p, al); }
};

}  // namespace eddy::detail
