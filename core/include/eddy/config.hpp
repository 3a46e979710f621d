// Compiler shims every Eddy header relies on: the coroutine namespace (libc++ 13 in Debian's
// Emscripten only has <experimental/coroutine>) and SourceLocation (clang 14 and Emscripten have
// no std::source_location, but all three compilers have the __builtin_ forms used here).
#pragma once

#include <cstdint>

#if __has_include(<coroutine>)
#include <coroutine>
#define EDDY_CORO_NS std
#elif __has_include(<experimental/coroutine>)
#include <experimental/coroutine>
#define EDDY_CORO_NS std::experimental
#define EDDY_CORO_EXPERIMENTAL 1
#else
#error "Eddy needs C++20 coroutines"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define EDDY_LIKELY(x) __builtin_expect(!!(x), 1)
#define EDDY_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EDDY_NOINLINE __attribute__((noinline))
#else
#define EDDY_LIKELY(x) (x)
#define EDDY_UNLIKELY(x) (x)
#define EDDY_NOINLINE
#endif

// Out of line in WebAssembly only, where code size costs more than a call: V8 compiles each
// function lazily, on the page's thread, the first time it runs.
#ifdef __EMSCRIPTEN__
#define EDDY_WASM_NOINLINE EDDY_NOINLINE
#else
#define EDDY_WASM_NOINLINE
#endif

namespace eddy {

namespace coro {
using EDDY_CORO_NS::coroutine_handle;
using EDDY_CORO_NS::noop_coroutine;
using EDDY_CORO_NS::suspend_always;
using EDDY_CORO_NS::suspend_never;
}  // namespace coro

// Where something was scheduled, created or awaited. Taken as a defaulted last parameter
// (`SourceLocation where = SourceLocation::current()`), so it costs the caller three constants.
struct SourceLocation {
  const char* file = "";
  const char* function = "";
  std::uint32_t line = 0;

  static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                          const char* function = __builtin_FUNCTION(),
                                          std::uint32_t line = __builtin_LINE()) noexcept {
    return SourceLocation{file, function, line};
  }
  constexpr bool known() const noexcept { return line != 0; }
};

}  // namespace eddy
