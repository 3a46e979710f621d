// Large, aligned, page-backed memory for the loop's slabs (handle records, the ready queue,
// coroutine frames). The platform decides how pages are obtained: natively they are mmap'ed (and
// faulted in lazily, 4 KiB at a time); in WebAssembly they come from the C++ heap.
#pragma once

#include <cstddef>

namespace eddy::platform {
// Returns `bytes` of zeroed or uninitialised memory aligned to `align` (a power of two, at most
// 2 MiB), or throws std::bad_alloc. Defined by native/ or wasm/.
void* allocate_pages(std::size_t bytes, std::size_t align);
void free_pages(void* p, std::size_t bytes, std::size_t align) noexcept;
}  // namespace eddy::platform

namespace eddy::detail {
// Slabs at least this large come from allocate_pages; smaller ones from operator new.
inline constexpr std::size_t kHugePageBytes = 2 * 1024 * 1024;
}  // namespace eddy::detail
