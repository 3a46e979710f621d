// The platform's file access for sendfile (eddy/detail/files.hpp): POSIX reads at an offset,
// plain reads for pipes, and the file position. The WebAssembly library compiles this file too:
// Emscripten's file system answers the same calls.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "eddy/detail/files.hpp"

namespace eddy::platform {

std::size_t read_file_at(int file, std::uint64_t offset, std::span<char> buffer,
                         std::error_code& error) {
  const ssize_t n = ::pread(file, buffer.data(), buffer.size(), static_cast<off_t>(offset));
  if (n < 0) {
    error = {errno, std::generic_category()};
    return 0;
  }
  return static_cast<std::size_t>(n);
}

std::size_t read_file(int file, std::span<char> buffer, std::error_code& error) {
  const ssize_t n = ::read(file, buffer.data(), buffer.size());
  if (n < 0) {
    error = {errno, std::generic_category()};
    return 0;
  }
  return static_cast<std::size_t>(n);
}

void seek_file(int file, std::uint64_t offset) noexcept {
  ::lseek(file, static_cast<off_t>(offset), SEEK_SET);
}

bool is_open_file(int fd) noexcept {
  return fd >= 0 && ::fcntl(fd, F_GETFD) != -1;
}

bool is_regular_file(int fd) noexcept {
  struct stat st;
  return fd >= 0 && ::fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

}  // namespace eddy::platform
