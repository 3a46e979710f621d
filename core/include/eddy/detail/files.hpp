// Reading the files that sendfile sends: the platform's file descriptors (the kernel's natively,
// Emscripten's file system in WebAssembly). Defined by native/ or wasm/; the core's Backend reads
// through them by default, so every backend's sendfile fallback can.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

namespace eddy::platform {
// Up to buffer.size() bytes of `file` from `offset` (pread), 0 at the end of the file; errors in
// `error` with their errno (ESPIPE for a pipe, which has no offsets).
std::size_t read_file_at(int file, std::uint64_t offset, std::span<char> buffer,
                         std::error_code& error);
// Up to buffer.size() bytes from the file position (read), for pipes.
std::size_t read_file(int file, std::span<char> buffer, std::error_code& error);
// Sets the file position (what sendfile leaves behind it: just after the bytes sent).
void seek_file(int file, std::uint64_t offset) noexcept;
// Whether `fd` is an open descriptor of the platform's own (a file, not a virtual socket), and
// whether it is a regular file (or a directory): what no pipe transport takes.
bool is_open_file(int fd) noexcept;
bool is_regular_file(int fd) noexcept;
}  // namespace eddy::platform
