// File access for sendfile on the native backend: sendfile(2) from a file to a non-blocking
// socket, pread for the fallback path, and leaving the file position after what was sent.
#include <sys/sendfile.h>
#include <unistd.h>

#include <cerrno>

#include "uv_backend.hpp"

namespace eddy::native {

std::size_t UvBackend::sendfile_chunk(int sock, int file, std::uint64_t offset, std::size_t count,
                                      std::error_code& error) {
  off_t off = static_cast<off_t>(offset);
  const ssize_t n = ::sendfile(sock, file, &off, count);
  if (n < 0) {
    error = {errno, std::generic_category()};
    return 0;
  }
  return static_cast<std::size_t>(n);
}

std::size_t UvBackend::read_file(int file, std::uint64_t offset, std::span<char> buffer, std::error_code& error) {
  ssize_t n = ::pread(file, buffer.data(), buffer.size(), static_cast<off_t>(offset));
  if (n < 0 && errno == ESPIPE) n = ::read(file, buffer.data(), buffer.size());  // a pipe: read on
  if (n < 0) {
    error = {errno, std::generic_category()};
    return 0;
  }
  return static_cast<std::size_t>(n);
}

void UvBackend::seek_file(int file, std::uint64_t offset) noexcept { ::lseek(file, static_cast<off_t>(offset), SEEK_SET); }

}  // namespace eddy::native
