// asyncio's exceptions as C++ types. Python's OSError is std::system_error with the errno;
// CancelledError deliberately does not derive from std::exception, as asyncio made it a
// BaseException so that `catch (const std::exception&)` cannot swallow a cancellation.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>

namespace eddy {

// Root of the exceptions that must not be caught by a generic std::exception handler.
class BaseException {
 public:
  explicit BaseException(std::string message) : message_(std::move(message)) {}
  virtual ~BaseException() = default;
  const std::string& message() const noexcept { return message_; }
  virtual const char* what() const noexcept { return message_.c_str(); }

 private:
  std::string message_;
};

// asyncio.CancelledError: carries the message given to cancel(msg).
class CancelledError : public BaseException {
 public:
  explicit CancelledError(std::string message = {}) : BaseException(std::move(message)) {}
};

// Python's KeyboardInterrupt: what Runner::run and eddy::run raise when Ctrl-C (SIGINT) cancelled
// their main task. A BaseException, so that `catch (const std::exception&)` lets it through.
class KeyboardInterrupt : public BaseException {
 public:
  KeyboardInterrupt() : BaseException("KeyboardInterrupt") {}
};

// Python's RuntimeError (closed loop, loop already running, ...).
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Python's ValueError (NaN delays, futures of another loop, invalid limits, ...).
class ValueError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Python's TypeError.
class TypeError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// asyncio.InvalidStateError: an operation on a Future in the wrong state.
class InvalidStateError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// asyncio.TimeoutError (the builtin TimeoutError, an OSError with ETIMEDOUT since 3.11). Its
// what() is the message alone, as Python's str() of it: no ": Connection timed out" appended.
class TimeoutError : public std::system_error {
 public:
  explicit TimeoutError(const std::string& message = "timed out")
      : std::system_error(std::make_error_code(std::errc::timed_out), message), message_(message) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// Python's OSError raised without an errno ("Multiple exceptions: ...", "could not bind on any
// address out of [...]"): a std::system_error whose code() is 0 (errno None), so that
// `catch (const std::system_error&)` takes it as `except OSError` does, and whose what() is the
// message alone.
class OSError : public std::system_error {
 public:
  explicit OSError(const std::string& message)
      : std::system_error(std::error_code(), message), message_(message) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// A call the current target cannot do (the browser has no subprocesses, ...). Names the call
// and the target; the loop's capability table lists the same facts up front.
class NotSupportedError : public RuntimeError {
 public:
  NotSupportedError(std::string method, std::string target, std::string why = {})
      : RuntimeError(method + " is not supported on " + target + (why.empty() ? "" : ": " + why)),
        method_(std::move(method)),
        target_(std::move(target)) {}
  const std::string& method() const noexcept { return method_; }
  const std::string& target() const noexcept { return target_; }

 private:
  std::string method_;
  std::string target_;
};

// asyncio.SendfileNotAvailableError.
class SendfileNotAvailableError : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

// What an exception says, for a message: "" for none, "CancelledError(message)" for a
// cancellation, else its what() ("unknown exception" for a type Eddy cannot name).
std::string exception_text(const std::exception_ptr& error);

}  // namespace eddy
