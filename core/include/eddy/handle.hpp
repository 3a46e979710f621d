// Handle and TimerHandle: what call_soon / call_later / call_at return, as in asyncio. A handle is
// a 48-byte record (40 in WebAssembly) from the loop's HandlePool (no heap allocation per callback
// or timer); the Handle object is a counted reference to it. The loop owns one reference while
// the handle is queued. Handles belong to their loop's thread, except those made by
// call_soon_threadsafe, whose count is atomic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

#include "eddy/config.hpp"
#include "eddy/detail/callback.hpp"

namespace eddy {

class EventLoop;

namespace detail {

enum HandleFlag : std::uint8_t {
  kHandleCancelled = 1,  // cancel() was called
  kHandleTimer = 2,      // a TimerHandle (made by call_at / call_later)
  kHandleTraced = 4,     // the inspector sampled it: its run is recorded as an event
  kHandleScheduled = 8,  // a timer still in the loop's timer heap
  kHandleRunning = 16,   // its callback is executing right now
};

struct HandleRecord {
  const CallbackOps* ops;  // null once the callback ran or was cancelled and destroyed
  const char* file;  // where it was scheduled (next to `ops`: no padding with 4-byte pointers)
  union {
    alignas(8) unsigned char storage[kInlineCallbackSize];
    HandleRecord* next_free;
  };
  double when;  // timers: the loop.time() at which it is due
  std::uint32_t refs;
  std::uint16_t line;   // clamped to 65535
  std::uint8_t flags;   // HandleFlag bits; written by the loop's thread only
  std::uint8_t shared;  // made by call_soon_threadsafe: own allocation, atomic count. A byte of
                        // its own, set before publication, so other threads may read it while
                        // the loop updates `flags`.

  bool has(HandleFlag f) const noexcept { return (flags & f) != 0; }
  static std::uint16_t clamp_line(std::uint32_t line) noexcept {
    return line > 0xFFFF ? 0xFFFF : static_cast<std::uint16_t>(line);
  }
  void destroy_callback() noexcept {
    if (ops) {
      const CallbackOps* o = ops;
      ops = nullptr;
      if (o->destroy) o->destroy(storage);
    }
  }
};
static_assert(sizeof(HandleRecord) == (sizeof(void*) == 8 ? 48 : 40),
              "handle records are sized for the timer memory budget");

// Slab allocator for handle records. Blocks are aligned to their size so that a record finds
// its pool (and so its loop) from its own address; records are addressed by a 32-bit index in
// the timer heap. The pool outlives its loop while user code still holds handles.
class HandlePool {
 public:
  static constexpr std::size_t kBlockBytes = 64 * 1024;
  struct BlockHeader {
    HandlePool* pool;
    std::uint32_t base_index;
    std::uint32_t pad;
  };
  static constexpr std::size_t kPerBlock = (kBlockBytes - sizeof(BlockHeader)) / sizeof(HandleRecord);

  explicit HandlePool(EventLoop* loop) : loop_(loop) {}
  HandlePool(const HandlePool&) = delete;
  HandlePool& operator=(const HandlePool&) = delete;

  HandleRecord* allocate() {
    HandleRecord* r = free_;
    if (EDDY_LIKELY(r != nullptr)) {
      free_ = r->next_free;
    } else {
      if (EDDY_UNLIKELY(fresh_ == fresh_end_)) grow();
      r = fresh_++;  // never-used records are handed out in address order, touched on first use
      r->ops = nullptr;
    }
    ++live_;
    return r;
  }
  void free(HandleRecord* r) noexcept {
    r->destroy_callback();
    r->next_free = free_;
    free_ = r;
    --live_;
    if (EDDY_UNLIKELY(loop_ == nullptr && live_ == 0)) delete this;
  }
  HandleRecord* at(std::uint32_t index) const noexcept {
    const std::uint32_t block = index / kPerBlock;
    return records_of(blocks_[block]) + (index - block * kPerBlock);
  }
  static std::uint32_t index_of(const HandleRecord* r) noexcept {
    const BlockHeader* b = header_of(r);
    return b->base_index + static_cast<std::uint32_t>(r - records_of(const_cast<BlockHeader*>(b)));
  }
  static HandlePool* pool_of(const HandleRecord* r) noexcept { return header_of(r)->pool; }

  EventLoop* loop() const noexcept { return loop_; }
  std::size_t live() const noexcept { return live_; }
  std::size_t capacity() const noexcept { return blocks_.size() * kPerBlock; }

  // Called by the loop's destructor: frees now, or when the last outstanding handle goes.
  void orphan() noexcept;

 private:
  ~HandlePool();
  void grow();
  static const BlockHeader* header_of(const HandleRecord* r) noexcept {
    return reinterpret_cast<const BlockHeader*>(reinterpret_cast<std::uintptr_t>(r) &
                                                ~(std::uintptr_t{kBlockBytes} - 1));
  }
  static HandleRecord* records_of(BlockHeader* b) noexcept {
    return reinterpret_cast<HandleRecord*>(b + 1);
  }

  // The first blocks are single heap allocations (a small loop stays small); later ones are
  // carved from 2 MiB page arenas (see detail/pages.hpp).
  static constexpr std::size_t kHeapBlocks = 4;

  EventLoop* loop_;
  HandleRecord* free_ = nullptr;
  HandleRecord* fresh_ = nullptr;
  HandleRecord* fresh_end_ = nullptr;
  std::size_t live_ = 0;
  std::vector<BlockHeader*> blocks_;
  std::vector<void*> arenas_;
  std::size_t arena_blocks_left_ = 0;
};

void cancel_handle(HandleRecord* r) noexcept;

inline void retain_handle(HandleRecord* r) noexcept {
  if (EDDY_UNLIKELY(r->shared))
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
  else
    ++r->refs;
}
void release_shared_handle(HandleRecord* r) noexcept;
inline void release_handle(HandleRecord* r) noexcept {
  if (EDDY_UNLIKELY(r->shared))
    release_shared_handle(r);
  else if (--r->refs == 0)
    HandlePool::pool_of(r)->free(r);
}

}  // namespace detail

// asyncio.Handle: a callback wrapper returned by call_soon(); cancel() keeps it from running.
class Handle {
 public:
  Handle() noexcept = default;
  Handle(const Handle& o) noexcept : rec_(o.rec_) {
    if (rec_) detail::retain_handle(rec_);
  }
  Handle(Handle&& o) noexcept : rec_(std::exchange(o.rec_, nullptr)) {}
  Handle& operator=(Handle o) noexcept {
    std::swap(rec_, o.rec_);
    return *this;
  }
  ~Handle() {
    if (rec_) detail::release_handle(rec_);
  }

  // Cancels the callback: it will not run, and what it captured is released now (unless the
  // callback is running at this moment, in which case it is released when it returns).
  void cancel() noexcept {
    if (rec_) detail::cancel_handle(rec_);
  }
  bool cancelled() const noexcept { return rec_ && rec_->has(detail::kHandleCancelled); }
  explicit operator bool() const noexcept { return rec_ != nullptr; }

  // For debug reports and the inspector: the callable's type name and where it was scheduled.
  const char* callback_name() const noexcept;
  SourceLocation where() const noexcept {
    return rec_ ? SourceLocation{rec_->file, "", rec_->line} : SourceLocation{};
  }
  friend bool operator==(const Handle& a, const Handle& b) noexcept { return a.rec_ == b.rec_; }

  // Adopts one reference to `r` (the loop's own API).
  static Handle adopt(detail::HandleRecord* r) noexcept {
    Handle h;
    h.rec_ = r;
    return h;
  }
  detail::HandleRecord* record() const noexcept { return rec_; }

 protected:
  detail::HandleRecord* rec_ = nullptr;
};

// asyncio.TimerHandle: a Handle with a deadline in the loop's time().
class TimerHandle : public Handle {
 public:
  TimerHandle() noexcept = default;
  explicit TimerHandle(Handle h) noexcept : Handle(std::move(h)) {}
  double when() const noexcept { return rec_ ? rec_->when : 0.0; }
};

}  // namespace eddy
