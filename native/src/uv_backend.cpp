// The native backend: libuv waits for I/O with the core's timeout and wakes on
// call_soon_threadsafe (uv_async). libuv timers are millisecond-grained, so waits are rounded up;
// the core fires a timer only once loop.time() has reached its deadline, never early.
#include "uv_backend.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#include <cmath>
#include <cstdlib>

namespace eddy::native {

const std::error_category& resolver_category() noexcept {
  struct Category final : std::error_category {
    const char* name() const noexcept override { return "resolver"; }
    std::string message(int code) const override { return ::gai_strerror(code); }
  };
  static const Category category;
  return category;
}

void ignore_sigpipe() noexcept {
  static const bool done = [] {
    struct sigaction current;
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)done;
}

void ensure_stdio_open() noexcept {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int null_fd = ::open("/dev/null", O_RDWR);  // the lowest free number: this one
    if (null_fd >= 0 && null_fd != fd) {
      ::dup2(null_fd, fd);
      ::close(null_fd);
    }
  }
}

// A StreamReader's data, sock_recv's bytes and every other per-read buffer is allocated and
// freed once per read. With glibc's initial thresholds (blocks from 128 KiB get a mapping of their
// own; a free heap top over 128 KiB is given back) such blocks are trimmed off the heap when freed
// and faulted back in by the next reads: Streams echoes of 100 KiB to 1 MiB messages ran 12 to 24x
// slower than the raw libuv server, every page a fault. glibc raises both thresholds by itself
// once a program frees a block it had mapped ("dynamic mmap threshold", mallopt(3)): blocks below
// that size then come from the heap, and up to twice it stays free at the heap's top. The first
// loop frees one just under glibc's ceiling for this (4 MiB x sizeof(long)): blocks below 31 MiB
// come from the heap and up to 62 MiB it no longer uses stays there (at 8 MiB, 100 connections
// echoing 100 KiB each still made the heap shrink and regrow). A program that set its own
// thresholds (mallopt, the MALLOC_*_ variables, GLIBC_TUNABLES) keeps them: glibc then adjusts
// nothing. Other allocators see one allocation.
void keep_freed_read_buffers() noexcept {
#ifdef __GLIBC__
  static const bool done = [] {
    constexpr std::size_t kBlockBytes =
        (std::size_t{4} << 20) * sizeof(long) - (std::size_t{1} << 20);
    void* volatile block = std::malloc(kBlockBytes);  // volatile: the pair is not optimised away
    std::free(block);
    return true;
  }();
  (void)done;
#endif
}

[[gnu::noinline]] void UvBackend::wait(double timeout) {
  if (timeout > 0) {
    uv_update_time(&loop_);
    const double ms = std::ceil(timeout * 1000.0);
    // The wake-up timer stops the wait itself: if this thread is preempted for longer than the
    // timeout before uv_run starts, uv_run fires the timer before polling, and without uv_stop
    // it would then poll with no timer left, blocked until some I/O came.
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { uv_stop(t->loop); },
        ms > 1e12 ? std::uint64_t(1e12) : std::uint64_t(ms), 0);
  }
  uv_ref(reinterpret_cast<uv_handle_t*>(&async_));  // a blocking wait must end on wakeup()
  uv_run(&loop_, UV_RUN_ONCE);
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  uv_timer_stop(&timer_);
}

// The time-stamp counter, where the CPU says it is invariant (a constant rate in every power
// state, CPUID 0x80000007 EDX bit 8): ~10 ns to read where clock_gettime takes 25-55 ns under a
// hypervisor's clock.
std::uint64_t UvBackend::ticks() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  static const bool invariant = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)) != 0;
  }();
  return invariant ? __rdtsc() : 0;
#else
  return 0;
#endif
}

namespace {
// libuv's resolver codes as the C library's EAI_* values, which Python's socket.gaierror carries
// (and the virtual network's resolver uses).
int gai_code(int status) noexcept {
  switch (status) {
    case UV_EAI_ADDRFAMILY:
      return EAI_ADDRFAMILY;
    case UV_EAI_AGAIN:
      return EAI_AGAIN;
    case UV_EAI_BADFLAGS:
    case UV_EAI_BADHINTS:
      return EAI_BADFLAGS;
    case UV_EAI_CANCELED:
      return EAI_CANCELED;
    case UV_EAI_FAMILY:
      return EAI_FAMILY;
    case UV_EAI_MEMORY:
      return EAI_MEMORY;
    case UV_EAI_NODATA:
      return EAI_NODATA;
    case UV_EAI_NONAME:
      return EAI_NONAME;
    case UV_EAI_OVERFLOW:
      return EAI_OVERFLOW;
    case UV_EAI_SERVICE:
      return EAI_SERVICE;
    case UV_EAI_SOCKTYPE:
      return EAI_SOCKTYPE;
    default:
      return EAI_FAIL;  // UV_EAI_FAIL, UV_EAI_PROTOCOL
  }
}
}  // namespace

std::error_code uv_error(int status) noexcept {
  if (status <= UV_EAI_ADDRFAMILY && status >= UV_EAI_PROTOCOL)
    return {gai_code(status), resolver_category()};
  return {-status, std::generic_category()};
}

StreamEndpointPtr connect_tcp(uv_loop_t*, const SocketAddress&, const ConnectOptions&, StreamEndpoint::ConnectDone);
StreamListenerPtr bind_tcp(uv_loop_t*, const SocketAddress&, const ListenOptions&);
StreamEndpointPtr adopt_tcp(uv_loop_t*, int fd, const ConnectOptions&);
StreamEndpointPtr connect_unix(uv_loop_t*, const SocketAddress&, StreamEndpoint::ConnectDone);
StreamListenerPtr bind_unix(uv_loop_t*, const SocketAddress&, const ListenOptions&);
StreamEndpointPtr adopt_unix(uv_loop_t*, int fd);

StreamEndpointPtr UvBackend::connect_stream(const SocketAddress& remote, const ConnectOptions& options,
                                            StreamEndpoint::ConnectDone done) {
  if (remote.family == AddressFamily::unix_socket) return connect_unix(&loop_, remote, std::move(done));
  return connect_tcp(&loop_, remote, options, std::move(done));
}

StreamListenerPtr UvBackend::bind_stream(const SocketAddress& local, const ListenOptions& options) {
  if (local.family == AddressFamily::unix_socket) return bind_unix(&loop_, local, options);
  return bind_tcp(&loop_, local, options);
}

StreamEndpointPtr UvBackend::adopt_stream(int fd, const ConnectOptions& options) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len))
    throw std::system_error(errno, std::generic_category(), "not a socket");
  int type = 0;
  len = sizeof type;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  if (type != SOCK_STREAM) throw ValueError("A Stream Socket was expected, got a socket of another type");
  if (domain == AF_UNIX) return adopt_unix(&loop_, fd);
  return adopt_tcp(&loop_, fd, options);
}

}  // namespace eddy::native

namespace eddy::platform {
std::unique_ptr<Backend> new_default_backend() { return std::make_unique<native::UvBackend>(); }
}  // namespace eddy::platform
