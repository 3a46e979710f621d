// Eddy's logger (asyncio logs to the "asyncio" logger): one process-wide sink, stderr by default.
// Tests and applications replace the sink to capture reports such as slow callbacks.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace eddy {

enum class LogLevel { debug, info, warning, error };

using LogSink = std::function<void(LogLevel, std::string_view message)>;

// Replaces the sink and returns the previous one; an empty sink restores stderr. Thread-safe.
LogSink set_log_sink(LogSink sink);
void log(LogLevel level, std::string_view message);
const char* to_string(LogLevel level) noexcept;

}  // namespace eddy
