// Whether an exception_ptr holds an exception of a given type, found by rethrowing it: for the few
// places that must tell a cancellation, a KeyboardInterrupt or a GeneratorExit from the rest.
#pragma once

#include <exception>

namespace eddy::detail {

template <class E>
bool exception_is(const std::exception_ptr& e) noexcept {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace eddy::detail
