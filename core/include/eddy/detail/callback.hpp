// Type erasure for loop callbacks without a heap allocation for small callables. A callable of
// up to kInlineCallbackSize bytes lives inside the handle record; larger ones are boxed. The
// name of the callable's type is kept for debug reports and the inspector.
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

namespace eddy::detail {

inline constexpr std::size_t kInlineCallbackSize = 16;

// Readable name of a type, from the compiler's pretty function signature (no RTTI needed).
template <class T>
constexpr const char* raw_type_signature() {
  return __PRETTY_FUNCTION__;
}
// The type's name from its signature, as a person would write the scope: "T = main()::<lambda()>"
// -> "main::<lambda()>". Enclosing functions lose their parameter lists (for a lambda in a
// coroutine, gcc writes the frame's mangled name there) and anonymous namespaces are dropped;
// clang's "(lambda at file:line:col)" is kept as it is.
std::string type_name_from_signature(const char* pretty);
template <class T>
const char* callable_name() {
  static const std::string name = type_name_from_signature(raw_type_signature<T>());
  return name.c_str();
}

// Aligned to 8 so that a ready-queue entry can carry a pointer to it with tag bits.
struct alignas(8) CallbackOps {
  void (*invoke)(void* storage);
  void (*destroy)(void* storage) noexcept;  // null: nothing to destroy (a trivial inline callable)
  const char* (*name)(const void* storage);
};

template <class F>
inline constexpr bool fits_inline = sizeof(F) <= kInlineCallbackSize &&
                                    alignof(F) <= alignof(std::max_align_t) &&
                                    std::is_nothrow_move_constructible_v<F>;

// A callable the loop may keep in its ready queue itself, with no handle record (see
// detail::ReadyEntry): eight bytes or less, copied and dropped as plain bytes.
inline constexpr std::size_t kReadyPayloadSize = 8;
template <class F>
inline constexpr bool fits_ready_entry =
    sizeof(F) <= kReadyPayloadSize && alignof(F) <= 8 &&
    std::is_trivially_copyable_v<F>&& std::is_trivially_destructible_v<F>&& fits_inline<F>;

template <class F>
struct CallbackOpsFor {
  static F& get(void* s) noexcept {
    if constexpr (fits_inline<F>)
      return *std::launder(reinterpret_cast<F*>(s));
    else
      return **reinterpret_cast<F**>(s);
  }
  static void invoke(void* s) { get(s)(); }
  static void destroy(void* s) noexcept {
    if constexpr (fits_inline<F>)
      get(s).~F();
    else
      delete *reinterpret_cast<F**>(s);
  }
  static const char* name(const void* s) {
    if constexpr (requires(const F& f) { f.callback_name(); })
      return get(const_cast<void*>(s)).callback_name();
    else
      return callable_name<F>();
  }
  static constexpr auto destroy_or_null() {
    if constexpr (fits_inline<F> && std::is_trivially_destructible_v<F>)
      return static_cast<void (*)(void*) noexcept>(nullptr);
    else
      return &destroy;
  }
  static constexpr CallbackOps ops{&invoke, destroy_or_null(), &name};

  template <class G>
  static void construct(void* s, G&& g) {
    if constexpr (fits_inline<F>)
      ::new (s) F(std::forward<G>(g));
    else
      *reinterpret_cast<F**>(s) = new F(std::forward<G>(g));
  }
};

// A move-only `void()` callable with heap storage; for cross-thread queues and executor jobs.
class UniqueFunction {
 public:
  UniqueFunction() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, UniqueFunction>>>
  UniqueFunction(F&& f) : impl_(new Impl<std::decay_t<F>>(std::forward<F>(f))) {}
  UniqueFunction(UniqueFunction&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)) {}
  UniqueFunction& operator=(UniqueFunction&& o) noexcept {
    std::swap(impl_, o.impl_);
    return *this;
  }
  ~UniqueFunction() { delete impl_; }
  void operator()() { impl_->call(); }
  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call() = 0;
  };
  template <class F>
  struct Impl final : Base {
    template <class G>
    explicit Impl(G&& g) : f(std::forward<G>(g)) {}
    void call() override { f(); }
    F f;
  };
  Base* impl_ = nullptr;
};

}  // namespace eddy::detail
