// Large, aligned, page-backed memory for the loop's slabs (handle records, the ready queue, the
// timer heap, coroutine frames). The platform decides how pages are obtained: natively they are
// mmap'ed (on huge pages when the kernel has them free); in WebAssembly they come from the C++ heap.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace eddy::platform {
// How the caller will use new pages. `sequential`: it hands the memory out front to back and will
// use all of it soon (a slab arena of a growing loop), so the platform may fault every page in at
// once, which costs about half as much as faulting them one by one.
enum class PageUse { lazy, sequential };
// Returns `bytes` of zeroed or uninitialised memory aligned to `align` (a power of two, at most
// 2 MiB), or throws std::bad_alloc. Defined by native/ or wasm/.
void* allocate_pages(std::size_t bytes, std::size_t align, PageUse use = PageUse::lazy);
void free_pages(void* p, std::size_t bytes, std::size_t align) noexcept;
}  // namespace eddy::platform

namespace eddy::detail {
// Slabs at least this large come from allocate_pages; smaller ones from operator new.
inline constexpr std::size_t kHugePageBytes = 2 * 1024 * 1024;

// Memory for the loop's large arrays (the ready ring, the timer heap): blocks of kArrayPagesBytes
// or more come from allocate_pages, so the block an array outgrew goes back to the system at once
// instead of staying resident in the C++ heap (glibc keeps freed blocks below its mmap threshold,
// which benchmarks and servers often raise).
inline constexpr std::size_t kArrayPagesBytes = 256 * 1024;
inline constexpr std::size_t kPageBytes = 4096;
// Blocks of a huge page or more are aligned to one, so the platform may back them with huge pages.
inline constexpr std::size_t array_alignment(std::size_t bytes) {
  return bytes >= kHugePageBytes ? kHugePageBytes : kPageBytes;
}
// An array is allocated when it outgrows the previous block, whose contents are copied into the
// first half at once; the rest fills as it keeps growing. So its pages are asked for in one go
// (`sequential`), which spares a first-touch fault per 4 KiB page.
inline void* allocate_array(std::size_t bytes) {
  return bytes >= kArrayPagesBytes ? platform::allocate_pages(bytes, array_alignment(bytes),
                                                              platform::PageUse::sequential)
                                   : ::operator new(bytes);
}
inline void free_array(void* p, std::size_t bytes) noexcept {
  if (bytes >= kArrayPagesBytes)
    platform::free_pages(p, bytes, array_alignment(bytes));
  else
    ::operator delete(p);
}

// Fixed-size blocks for the loop's slabs (handle records, the ready queue): the first few from
// the C++ heap, so that a small loop stays small, then carved from 2 MiB arenas faulted in at
// once, but for the first when `first_arena` is lazy (for a slab that often needs a few blocks
// more than the heap's, and seldom the whole arena). Blocks are aligned to their size (at most an
// arena's); all go back with the source.
class BlockSource {
 public:
  BlockSource(std::size_t block_bytes, std::size_t heap_blocks,
              platform::PageUse first_arena = platform::PageUse::sequential) noexcept
      : block_bytes_(block_bytes), heap_limit_(heap_blocks), first_arena_(first_arena) {}
  ~BlockSource();
  BlockSource(const BlockSource&) = delete;
  BlockSource& operator=(const BlockSource&) = delete;
  void* take();  // std::bad_alloc when out of memory

 private:
  std::size_t block_bytes_;
  std::size_t heap_limit_;
  platform::PageUse first_arena_;
  std::vector<void*> heap_blocks_;
  std::vector<void*> arenas_;
  std::size_t arena_blocks_left_ = 0;
};

// A std allocator over allocate_array/free_array.
template <class T>
struct ArrayAllocator {
  using value_type = T;
  ArrayAllocator() = default;
  template <class U>
  ArrayAllocator(const ArrayAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(allocate_array(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { free_array(p, n * sizeof(T)); }
  friend bool operator==(const ArrayAllocator&, const ArrayAllocator&) noexcept { return true; }
};
}  // namespace eddy::detail
