// Zero-copy sendfile on the native backend: sendfile(2) from a file to a non-blocking socket. The
// fallback's file reads are in posix_files.cpp.
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

}  // namespace eddy::native
