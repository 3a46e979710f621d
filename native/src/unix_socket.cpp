// Unix-domain stream sockets for the native backend (libuv pipes): connect, bind (removing a
// stale socket file first, as asyncio does), adopt. The path is removed again on close when
// the server asked for it (cleanup_socket).
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "uv_backend.hpp"
#include "uv_stream.hpp"

namespace eddy::native {

namespace {

// libuv 1.44 copies a path into sun_path cut to fit, so a long path would bind or reach
// another, shorter one. Python refuses it: OSError "AF_UNIX path too long".
void check_path_fits(std::string_view path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    throw std::system_error(std::make_error_code(std::errc::filename_too_long),
                            "AF_UNIX path too long");
}

// libuv's bind reports a missing directory as EACCES; the kernel (and Python) say ENOENT, or
// ENOTDIR where a part of the path is a file.
std::error_code bind_error(int rc, const std::string& path) {
  if (rc == UV_EACCES) {
    const std::size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path.substr(0, slash);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR))
      return std::error_code(errno, std::generic_category());
  }
  return uv_error(rc);
}

}  // namespace

StreamEndpointPtr connect_unix(uv_loop_t* loop, const SocketAddress& remote, StreamEndpoint::ConnectDone done) {
  check_path_fits(remote.host());
  auto* ep = new UvStreamEndpoint(loop, UvStreamEndpoint::Kind::unix_socket);
  StreamEndpointPtr owned(ep);
  ep->connect_unix(std::string(remote.host()), std::move(done));
  return owned;
}

void remove_stale_unix_socket(const std::string& path) {
  struct stat st;
  if (!path.empty() && path[0] != '\0' && ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
    ::unlink(path.c_str());
}

StreamListenerPtr bind_unix(uv_loop_t* loop, const SocketAddress& local, const ListenOptions& options) {
  const std::string path(local.host());
  check_path_fits(path);
  remove_stale_unix_socket(path);
  auto* l = new UvListener(loop, UvStreamEndpoint::Kind::unix_socket, options);
  StreamListenerPtr owned(l);
  if (int rc = uv_pipe_bind(l->pipe(), path.c_str()))
    throw std::system_error(bind_error(rc, path), "bind " + path);
  // libuv would remove the path it bound when the handle closes, whatever is there by then;
  // whether to remove it is cleanup_socket's call (with asyncio's inode check), so libuv's copy
  // of the name (strdup'ed with its default allocator) is dropped.
  std::free(const_cast<char*>(l->pipe()->pipe_fname));
  l->pipe()->pipe_fname = nullptr;
  struct stat st;
  if (options.unlink_on_close && ::stat(path.c_str(), &st) == 0)
    l->set_unlink_path(path, st.st_ino);
  return owned;
}

StreamEndpointPtr adopt_unix(uv_loop_t* loop, int fd) {
  auto* ep = new UvStreamEndpoint(loop, UvStreamEndpoint::Kind::unix_socket);
  StreamEndpointPtr owned(ep);
  if (int rc = uv_pipe_open(ep->pipe(), fd)) throw std::system_error(uv_error(rc), "uv_pipe_open");
  return owned;
}

}  // namespace eddy::native
