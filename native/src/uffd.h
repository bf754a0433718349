// The userfault fd: opening it, the API handshake, and the ioctls that register ranges
// and place pages. Thin wrappers that return errno instead of throwing, so callers
// decide what a kernel refusal means (EEXIST = already placed, EAGAIN = retry).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pc {

// How the fd was obtained, for the probe report.
struct UffdOpen {
  int fd = -1;
  int err = 0;            // errno of the last failed attempt when fd < 0
  std::string how;        // "userfaultfd(2)" or "/dev/userfaultfd"
  std::string refusal;    // why the syscall (and the device) were refused, if they were
};

// Opens a userfault fd (O_CLOEXEC | O_NONBLOCK): the syscall first, then
// /dev/userfaultfd (USERFAULTFD_IOC_NEW), which root may use when
// vm.unprivileged_userfaultfd forbids the syscall.
UffdOpen open_userfaultfd();

struct UffdApi {
  uint64_t features = 0;  // what the kernel granted (or offers, when asked for 0)
  uint64_t ioctls = 0;    // bit (1 << _UFFDIO_x) for every ioctl the fd accepts
};

// UFFDIO_API. One handshake per fd: asking for features 0 reports what is offered.
int uffd_api(int fd, uint64_t features, UffdApi* out);

// UFFDIO_REGISTER in MISSING mode; `ioctls` receives the range ioctls offered.
int uffd_register_missing(int fd, uintptr_t start, size_t len, uint64_t* ioctls);
int uffd_unregister(int fd, uintptr_t start, size_t len);
int uffd_wake(int fd, uintptr_t start, size_t len);

// UFFDIO_COPY / UFFDIO_ZEROPAGE of [start, start+len). On return `done` holds the bytes
// placed before the kernel stopped (it may stop part way with EAGAIN).
int uffd_copy(int fd, uintptr_t dst, const void* src, size_t len, size_t* done);
int uffd_zeropage(int fd, uintptr_t dst, size_t len, size_t* done);

// Names of the feature bits set in `features`, e.g. "THREAD_ID EVENT_REMOVE".
std::string feature_names(uint64_t features);
// "EEXIST", "EAGAIN", ... or the number.
std::string errno_name(int err);

// CLOCK_MONOTONIC in nanoseconds: the clock of fault timestamps and of now().
int64_t monotonic_ns();

}  // namespace pc
