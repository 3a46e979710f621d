// Handle and TimerHandle: what call_soon / call_later / call_at return, as in asyncio. A timer, a
// thread-safe call, or a callback that owns resources gets a 40-byte record from the loop's
// HandlePool, no heap allocation each; the Handle counts references to it. A
// call_soon callback of eight trivially copyable bytes (a lambda capturing a pointer) needs no
// record: it waits in the ready queue itself, and its Handle is a ticket naming that queue entry,
// made into a record only if the Handle is copied. The loop owns one reference while a record is
// queued. Handles belong to their loop's thread, except those made by call_soon_threadsafe, whose
// count is atomic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

#include "eddy/config.hpp"
#include "eddy/detail/callback.hpp"
#include "eddy/detail/pages.hpp"

namespace eddy {

class EventLoop;

namespace detail {

enum HandleFlag : std::uint8_t {
  kHandleCancelled = 1,    // cancel() was called
  kHandleTimer = 2,        // a TimerHandle (made by call_at / call_later)
  kHandleTraced = 4,       // the inspector sampled it: its run is recorded as an event
  kHandleScheduled = 8,    // a timer still in the loop's timer heap
  kHandleRunning = 16,     // its callback is executing right now
  kHandleFromTicket = 32,  // made when a ticket's Handle was copied: `ticket` says which
};

struct HandleRecord {
  const CallbackOps* ops;  // null once the callback ran or was cancelled and destroyed
  union {
    alignas(8) unsigned char storage[kInlineCallbackSize];
    HandleRecord* next_free;
  };
  union {
    double when;           // timers: the loop.time() at which it is due
    std::uint64_t ticket;  // kHandleFromTicket: the ticket it was (see detail::ticket), so that
                           // handles still holding that ticket compare equal to it
  };
  std::uint32_t refs;
  std::uint16_t line;   // where it was scheduled, clamped to 65535; 0: not kept (record_where)
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
static_assert(sizeof(HandleRecord) == 40, "handle records are sized for the timer memory budget");

// A record of its own allocation (see new_shared_record), which keeps its file itself.
struct SharedHandleRecord : HandleRecord {
  const char* file;
};

// Slab allocator for handle records. Blocks are aligned to their size so that a record finds
// its pool (and so its loop) from its own address; records are addressed by a 32-bit index in
// the timer heap. The pool outlives its loop while user code still holds handles.
class HandlePool {
 public:
  static constexpr std::size_t kBlockBytes = 64 * 1024;
  // Aligned as a record, so that the records after it are: a ready-queue entry tags a record's
  // address with its low three bits clear (4-byte pointers would leave a 12-byte header).
  struct alignas(alignof(HandleRecord)) BlockHeader {
    HandlePool* pool;
    // The file each record was scheduled from, for records that keep their place (debug mode,
    // inspector on): made the first time one of the block's records does, so that records,
    // most of which never keep one, are 8 bytes smaller.
    const char** files;
    std::uint32_t base_index;
  };
  static_assert(sizeof(BlockHeader) % alignof(HandleRecord) == 0 && alignof(HandleRecord) >= 8);
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
    return header_of(r)->base_index + static_cast<std::uint32_t>(position_in_block(r));
  }
  static HandlePool* pool_of(const HandleRecord* r) noexcept { return header_of(r)->pool; }
  static const char* file_of(const HandleRecord* r) noexcept {
    const char* const* files = header_of(r)->files;
    return files ? files[position_in_block(r)] : "";
  }
  void set_file(HandleRecord* r, const char* file);

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
  // Which record of its block `r` is: its index past the block's base, and its file's slot.
  static std::size_t position_in_block(const HandleRecord* r) noexcept {
    return static_cast<std::size_t>(r - records_of(const_cast<BlockHeader*>(header_of(r))));
  }
  static HandleRecord* records_of(BlockHeader* b) noexcept {
    return reinterpret_cast<HandleRecord*>(b + 1);
  }

  EventLoop* loop_;
  HandleRecord* free_ = nullptr;
  HandleRecord* fresh_ = nullptr;
  HandleRecord* fresh_end_ = nullptr;
  std::size_t live_ = 0;
  std::vector<BlockHeader*> blocks_;
  BlockSource source_{kBlockBytes, 4};
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

// A record of its own allocation, with an atomic count: made on another thread
// (call_soon_threadsafe, executor completions) or meant to outlive its loop. One reference, no
// callback yet.
inline HandleRecord* new_shared_record(const char* file = "", std::uint32_t line = 0) {
  auto* r = new SharedHandleRecord;
  r->ops = nullptr;
  r->file = file;
  r->when = 0;
  r->refs = 1;
  r->line = HandleRecord::clamp_line(line);
  r->flags = 0;
  r->shared = 1;
  return r;
}

// Where a record was scheduled, if it was kept (empty otherwise).
inline SourceLocation record_where(const HandleRecord* r) noexcept {
  if (r->line == 0) return SourceLocation{};
  const char* file =
      r->shared ? static_cast<const SharedHandleRecord*>(r)->file : HandlePool::file_of(r);
  return SourceLocation{file, "", r->line};
}
// Keeps where a pooled record was scheduled.
inline void keep_where(HandleRecord* r, const SourceLocation& where) {
  r->line = HandleRecord::clamp_line(where.line);
  if (r->line != 0) HandlePool::pool_of(r)->set_file(r, where.file);
}

// A ticket: the Handle of a callback kept in the ready queue without a record. It names the
// loop by a slot of a process-wide table (the ticket table in loop.cpp) and the entry by its
// sequence number in that loop's queue, whose numbering carries on from one loop to the next in
// the same slot, so a ticket outliving its loop names nothing. Layout: bit 0 set (a record
// pointer has it clear), bit 1 cancelled, then the slot, then the sequence number modulo 2^50
// (only a handle kept while some 10^15 later callbacks run could name a newer entry).
namespace ticket {
inline constexpr unsigned kSlotBits = 12;
inline constexpr std::uint32_t kSlots = 1u << kSlotBits;
inline constexpr std::uint32_t kNoSlot = ~0u;
inline constexpr unsigned kSeqShift = 2 + kSlotBits;
inline constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << (64 - kSeqShift)) - 1;
inline constexpr std::uint64_t kTag = 1, kCancelled = 2;
inline constexpr std::uint64_t make(std::uint32_t slot, std::uint64_t seq) noexcept {
  return kTag | (std::uint64_t{slot} << 2) | ((seq & kSeqMask) << kSeqShift);
}
inline constexpr std::uint32_t slot(std::uint64_t t) noexcept {
  return static_cast<std::uint32_t>(t >> 2) & (kSlots - 1);
}
inline constexpr std::uint64_t seq(std::uint64_t t) noexcept {
  return t >> kSeqShift;
}
// The loop whose queue the ticket's entry was in, if that loop still lives.
EventLoop* loop_of(std::uint64_t t) noexcept;
}  // namespace ticket

}  // namespace detail

// asyncio.Handle: a callback wrapper returned by call_soon(); cancel() keeps it from running.
class Handle {
 public:
  Handle() noexcept = default;
  Handle(const Handle& o) : bits_(o.bits_) {
    if (is_ticket())
      bits_ = o.share_ticket();
    else if (bits_)
      detail::retain_handle(record());
  }
  Handle(Handle&& o) noexcept : bits_(std::exchange(o.bits_, 0)) {}
  Handle& operator=(Handle o) noexcept {
    std::swap(bits_, o.bits_);
    return *this;
  }
  ~Handle() {
    if (bits_ && !is_ticket()) detail::release_handle(record());
  }

  // Cancels the callback: it will not run, and what it captured is released now (unless the
  // callback is running at this moment, in which case it is released when it returns).
  void cancel() noexcept;
  bool cancelled() const noexcept {
    return is_ticket() ? (bits_ & detail::ticket::kCancelled) != 0
                       : bits_ && record()->has(detail::kHandleCancelled);
  }
  explicit operator bool() const noexcept { return bits_ != 0; }

  // For debug reports and the inspector: the callable's type name ("<no callback>" once it ran or
  // was cancelled) and where it was scheduled. The place is kept in debug mode and while the
  // inspector is on, as asyncio keeps a handle's source traceback only in debug mode.
  const char* callback_name() const noexcept;
  SourceLocation where() const noexcept {
    return bits_ && !is_ticket() ? detail::record_where(record()) : SourceLocation{};
  }
  // The same handle: the same record, or the same ticket (held, or copied into a record).
  friend bool operator==(const Handle& a, const Handle& b) noexcept {
    return a.identity() == b.identity();
  }

  // Adopts one reference to `r` (the loop's own API).
  static Handle adopt(detail::HandleRecord* r) noexcept {
    Handle h;
    h.bits_ = reinterpret_cast<std::uintptr_t>(r);
    return h;
  }
  static Handle from_ticket(std::uint64_t t) noexcept {
    Handle h;
    h.bits_ = t;
    return h;
  }
  // The record, or null for an empty handle or a ticket.
  detail::HandleRecord* record() const noexcept {
    return is_ticket()
               ? nullptr
               : reinterpret_cast<detail::HandleRecord*>(static_cast<std::uintptr_t>(bits_));
  }

 protected:
  bool is_ticket() const noexcept { return (bits_ & detail::ticket::kTag) != 0; }
  std::uint64_t identity() const noexcept {
    if (is_ticket()) return bits_ & ~detail::ticket::kCancelled;
    const detail::HandleRecord* r = record();
    return r && r->has(detail::kHandleFromTicket) ? r->ticket : bits_;
  }
  // Turns this ticket into a record shared with a copy; returns the copy's reference.
  std::uint64_t share_ticket() const;

  // A HandleRecord* or a ticket. Mutable: copying a ticket turns the original into a record too.
  mutable std::uint64_t bits_ = 0;
};

// asyncio.TimerHandle: a Handle with a deadline in the loop's time().
class TimerHandle : public Handle {
 public:
  TimerHandle() noexcept = default;
  explicit TimerHandle(Handle h) noexcept : Handle(std::move(h)) {}
  double when() const noexcept { return bits_ ? record()->when : 0.0; }
};

}  // namespace eddy
