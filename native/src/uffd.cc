#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace pc {

UffdOpen open_userfaultfd() {
  UffdOpen r;
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd >= 0) {
    r.fd = fd;
    r.how = "userfaultfd(2)";
    return r;
  }
  r.err = errno;
  r.refusal = "userfaultfd(2): " + errno_name(r.err);
  if (r.err == EPERM) r.refusal += " (vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE)";
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    r.err = errno;
    r.refusal += "; /dev/userfaultfd: " + errno_name(r.err);
    return r;
  }
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
  int saved = errno;
  close(dev);
  if (fd < 0) {
    r.err = saved;
    r.refusal += "; /dev/userfaultfd USERFAULTFD_IOC_NEW: " + errno_name(saved);
    return r;
  }
  r.fd = fd;
  r.how = "/dev/userfaultfd";
  return r;
}

int uffd_api(int fd, uint64_t features, UffdApi* out) {
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(fd, UFFDIO_API, &api) != 0) return errno;
  out->features = api.features;
  out->ioctls = api.ioctls;
  return 0;
}

int uffd_register_missing(int fd, uintptr_t start, size_t len, uint64_t* ioctls) {
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = start;
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) return errno;
  if (ioctls) *ioctls = reg.ioctls;
  return 0;
}

int uffd_unregister(int fd, uintptr_t start, size_t len) {
  struct uffdio_range range = {start, len};
  return ioctl(fd, UFFDIO_UNREGISTER, &range) == 0 ? 0 : errno;
}

int uffd_wake(int fd, uintptr_t start, size_t len) {
  struct uffdio_range range = {start, len};
  return ioctl(fd, UFFDIO_WAKE, &range) == 0 ? 0 : errno;
}

int uffd_copy(int fd, uintptr_t dst, const void* src, size_t len, size_t* done) {
  struct uffdio_copy c;
  c.dst = dst;
  c.src = reinterpret_cast<uintptr_t>(src);
  c.len = len;
  c.mode = 0;
  c.copy = 0;
  int rc = ioctl(fd, UFFDIO_COPY, &c);
  int err = rc == 0 ? 0 : errno;
  *done = c.copy > 0 ? static_cast<size_t>(c.copy) : 0;
  return err;
}

int uffd_zeropage(int fd, uintptr_t dst, size_t len, size_t* done) {
  struct uffdio_zeropage z;
  z.range.start = dst;
  z.range.len = len;
  z.mode = 0;
  z.zeropage = 0;
  int rc = ioctl(fd, UFFDIO_ZEROPAGE, &z);
  int err = rc == 0 ? 0 : errno;
  *done = z.zeropage > 0 ? static_cast<size_t>(z.zeropage) : 0;
  return err;
}

std::string feature_names(uint64_t f) {
  static const struct {
    uint64_t bit;
    const char* name;
  } names[] = {
      {UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP"},
      {UFFD_FEATURE_EVENT_FORK, "EVENT_FORK"},
      {UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP"},
      {UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE"},
      {UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS"},
      {UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM"},
      {UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP"},
      {UFFD_FEATURE_SIGBUS, "SIGBUS"},
      {UFFD_FEATURE_THREAD_ID, "THREAD_ID"},
      {UFFD_FEATURE_MINOR_HUGETLBFS, "MINOR_HUGETLBFS"},
      {UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM"},
      {UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS"},
      {UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM"},
      // Newer than some kernel headers: by number.
      {1ULL << 13, "WP_UNPOPULATED"},
      {1ULL << 14, "POISON"},
      {1ULL << 15, "WP_ASYNC"},
      {1ULL << 16, "MOVE"},
  };
  std::string out;
  uint64_t known = 0;
  for (const auto& n : names) {
    known |= n.bit;
    if (f & n.bit) {
      if (!out.empty()) out += ' ';
      out += n.name;
    }
  }
  if (f & ~known) {
    char buf[32];
    snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(f & ~known));
    if (!out.empty()) out += ' ';
    out += buf;
  }
  return out.empty() ? "none" : out;
}

std::string errno_name(int err) {
  const char* n = strerrorname_np(err);
  return n ? std::string(n) : std::to_string(err);
}

int64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace pc
