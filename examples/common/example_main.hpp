// How the examples start and end, the same way in each: output line by line (also into a file
// or a pipe), the coroutine's return code, an error's message with status 1 instead of an
// uncaught exception, and Ctrl-C (eddy::KeyboardInterrupt, which eddy::run raises as asyncio.run
// does) as a quiet exit with 130, what a shell expects of an interrupted program.
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "eddy/eddy.hpp"

namespace examples {

template <class Body>
int run_example(Body&& body) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return body();
  } catch (const eddy::KeyboardInterrupt&) {
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

// A number from the command line: ValueError naming `what` unless it is one in 0..max.
inline long parse_number(const std::string& text, long max, const char* what) {
  std::size_t used = 0;
  long value = -1;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || value < 0 || value > max)
    throw eddy::ValueError(std::string("not a ") + what + " (0-" + std::to_string(max) + "): '" +
                           text + "'");
  return value;
}
inline std::uint16_t parse_port(const std::string& text) {
  return static_cast<std::uint16_t>(parse_number(text, 65535, "port number"));
}

}  // namespace examples
