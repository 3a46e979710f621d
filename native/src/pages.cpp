// Native page source for the core's slabs and large arrays: anonymous mmap, trimmed to the
// requested alignment. Arenas that will be used front to back soon are populated with one
// MADV_POPULATE_WRITE (Linux 5.14+; older kernels fail the call and fault pages in lazily). Those
// arenas and arrays of several huge pages are backed by huge pages when the kernel has free 2 MiB
// blocks, so a huge page costs no compaction and spares 512 first-touch faults of microseconds
// each on a VM. When free blocks are scarce they stay on 4 KiB pages: under the usual
// `defrag=madvise` a huge-page fault would compact memory synchronously, which was measured to
// slow first-touching runs up to 5x on a busy machine. A reservation (for an array that grows in
// place) is a PROT_NONE mapping whose front mprotect opens as the array grows.
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

// Whether /proc/buddyinfo shows enough free blocks of 2 MiB or more (orders 9 and 10 with 4 KiB
// pages) that a huge page is taken from a free list, not made by compaction. Read per arena: a
// few microseconds against the ~500 page faults a 2 MiB arena would otherwise cost.
bool huge_pages_free() noexcept {
  constexpr long kMinFreeHugePages = 16;
  if (::sysconf(_SC_PAGESIZE) != 4096) return false;
  const int fd = ::open("/proc/buddyinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[2048];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  long free_huge = 0;
  // Each line: "Node 0, zone   Normal  c0 c1 ... c10", the free block count per order.
  for (char* line = buf; line && *line;) {
    char* next = std::strchr(line, '\n');
    if (next) *next++ = 0;
    if (char* zone = std::strstr(line, "zone")) {
      char* p = zone + 4;
      while (*p == ' ') ++p;
      while (*p && *p != ' ') ++p;  // the zone's name
      long counts[16];
      int orders = 0;
      for (char* end; orders < 16; ++orders, p = end) {
        counts[orders] = std::strtol(p, &end, 10);
        if (end == p) break;
      }
      for (int order = 9; order < orders; ++order) free_huge += counts[order] << (order - 9);
    }
    line = next;
  }
  return free_huge >= kMinFreeHugePages;
}

// Marks [p, p + bytes) for huge pages where that is worth it and free blocks exist, then
// populates it if it will be used front to back soon.
void prepare_pages(void* p, std::size_t bytes, std::size_t align, PageUse use) noexcept {
#ifdef MADV_HUGEPAGE
  // A lazy arena of one huge page (a thread's first) stays on 4 KiB pages: small programs keep a
  // small resident size.
  const bool worth_huge = use == PageUse::sequential || bytes >= 2 * detail::kHugePageBytes;
  if (worth_huge && align % detail::kHugePageBytes == 0 && bytes >= detail::kHugePageBytes &&
      huge_pages_free())
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

// A PROT_NONE mapping counts against no commit limit; commit_pages opens its front.
void* reserve_pages(std::size_t bytes) noexcept {
  return map_aligned(bytes, detail::kHugePageBytes, PROT_NONE, MAP_NORESERVE);
}

bool commit_pages(void* p, std::size_t bytes, PageUse use) noexcept {
  if (::mprotect(p, bytes, PROT_READ | PROT_WRITE) != 0) return false;
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % detail::kHugePageBytes == 0;
  prepare_pages(p, bytes, aligned ? detail::kHugePageBytes : detail::kPageBytes, use);
  return true;
}

void unreserve_pages(void* p, std::size_t bytes) noexcept {
  ::munmap(p, bytes);
}

}  // namespace eddy::platform
