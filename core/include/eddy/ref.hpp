// Ref<T>: an intrusive, single-threaded reference to a loop-owned object (EventLoop, FutureBase,
// TaskBase). Loop objects belong to their loop's thread, as in asyncio, so the count is a plain
// integer: no atomic traffic on the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace eddy {

// Base for objects managed by Ref<T>. `destroy_self()` runs when the count reaches zero.
class RefCounted {
 public:
  RefCounted() = default;
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;

  void retain() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) destroy_self();
  }
  std::uint32_t ref_count() const noexcept { return refs_; }

 protected:
  virtual ~RefCounted() = default;
  virtual void destroy_self() noexcept { delete this; }

 private:
  std::uint32_t refs_ = 0;
};

template <class T>
class Ref {
 public:
  Ref() noexcept = default;
  Ref(std::nullptr_t) noexcept {}
  explicit Ref(T* p) noexcept : p_(p) {
    if (p_) p_->retain();
  }
  Ref(const Ref& o) noexcept : Ref(o.p_) {}
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <class U>
  Ref(const Ref<U>& o) noexcept : Ref(static_cast<T*>(o.get())) {}
  template <class U>
  Ref(Ref<U>&& o) noexcept : p_(static_cast<T*>(o.leak())) {}
  ~Ref() {
    if (p_) p_->release();
  }
  Ref& operator=(Ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }

  T* get() const noexcept { return p_; }
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  T* leak() noexcept { return std::exchange(p_, nullptr); }
  void reset() noexcept { Ref().swap_with(*this); }
  friend bool operator==(const Ref& a, const Ref& b) noexcept { return a.p_ == b.p_; }

 private:
  void swap_with(Ref& o) noexcept { std::swap(p_, o.p_); }
  T* p_ = nullptr;
};

// Adopts a freshly created object (count 0 -> 1).
template <class T, class... Args>
Ref<T> make_ref(Args&&... args) {
  return Ref<T>(new T(std::forward<Args>(args)...));
}

}  // namespace eddy
