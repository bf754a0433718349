#include "probe.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fstream>

#include "uffd.h"

namespace pc {

namespace {

void add(SupportReport& r, const std::string& name, bool ok, const std::string& detail) {
  r.checks.push_back({name, ok, detail});
  if (!ok && r.ok) {
    r.ok = false;
    r.reason = name + ": " + detail;
  }
}

long vm_locked_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, 6, "VmLck:") == 0) return std::stol(line.substr(6));
  }
  return 0;
}

std::string ioctl_names(uint64_t ioctls) {
  static const struct {
    int bit;
    const char* name;
  } names[] = {{_UFFDIO_REGISTER, "REGISTER"}, {_UFFDIO_UNREGISTER, "UNREGISTER"}, {_UFFDIO_WAKE, "WAKE"},
               {_UFFDIO_COPY, "COPY"},         {_UFFDIO_ZEROPAGE, "ZEROPAGE"},     {_UFFDIO_WRITEPROTECT, "WRITEPROTECT"},
               {_UFFDIO_CONTINUE, "CONTINUE"}, {_UFFDIO_API, "API"}};
  std::string out;
  for (const auto& n : names) {
    if (ioctls & (1ULL << n.bit)) {
      if (!out.empty()) out += ' ';
      out += n.name;
    }
  }
  return out.empty() ? "none" : out;
}

// Checks that need no fd: block geometry and backing.
void check_blocks(SupportReport& r, const std::vector<BlockLayout>& layouts, bool* any_hugetlbfs) {
  std::string bad;
  size_t anon = 0, huge = 0;
  for (const auto& b : layouts) {
    size_t ps = b.page_size;
    bool pow2 = ps >= 4096 && (ps & (ps - 1)) == 0;
    size_t max = b.max_length < b.length ? b.length : b.max_length;
    if (!pow2 || b.length % ps != 0 || max % ps != 0) {
      if (bad.empty()) bad = "block '" + b.name + "' length " + std::to_string(b.length) + " is not a multiple of its page size " + std::to_string(ps);
    }
    if (b.hugetlbfs) huge++; else anon++;
  }
  *any_hugetlbfs = huge > 0;
  add(r, "block-page-multiples", bad.empty(),
      bad.empty() ? "every one of " + std::to_string(layouts.size()) + " block lengths is a multiple of its page size" : bad);
  add(r, "file-backed-blocks", true,
      "no file-backed blocks: " + std::to_string(anon) + " anonymous, " + std::to_string(huge) + " hugetlbfs (MAP_HUGETLB)");
}

}  // namespace

SupportReport probe_host(const std::vector<BlockLayout>& layouts) {
  SupportReport r;

  // Userfaultfd and mlock do not mix: unlock first (QEMU does the same).
  long locked = vm_locked_kb();
  if (locked > 0) {
    int rc = munlockall();
    add(r, "mlock", rc == 0,
        rc == 0 ? "unlocked " + std::to_string(locked) + " kB of locked memory" : "munlockall failed: " + errno_name(errno));
  } else {
    add(r, "mlock", true, "no locked memory");
  }

  UffdOpen o = open_userfaultfd();
  if (o.fd < 0) {
    add(r, "userfaultfd-open", false, o.refusal);
    bool h;
    check_blocks(r, layouts, &h);
    return r;
  }
  add(r, "userfaultfd-open", true, "opened with " + o.how + (o.refusal.empty() ? "" : " (" + o.refusal + ")"));

  UffdApi api;
  int err = uffd_api(o.fd, 0, &api);
  if (err != 0) {
    add(r, "api-handshake", false, "UFFDIO_API failed: " + errno_name(err));
    close(o.fd);
    return r;
  }
  add(r, "api-handshake", true, "features offered: " + feature_names(api.features));
  const uint64_t need = (1ULL << _UFFDIO_REGISTER) | (1ULL << _UFFDIO_UNREGISTER);
  add(r, "register-ioctls", (api.ioctls & need) == need, "fd ioctls: " + ioctl_names(api.ioctls));

  bool any_hugetlbfs = false;
  check_blocks(r, layouts, &any_hugetlbfs);

  // A test page must register and offer the placement ioctls.
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    add(r, "test-page", false, "cannot map a test page: " + errno_name(errno));
  } else {
    uint64_t ioctls = 0;
    err = uffd_register_missing(o.fd, reinterpret_cast<uintptr_t>(page), 4096, &ioctls);
    if (err != 0) {
      add(r, "test-page", false, "UFFDIO_REGISTER of a test page failed: " + errno_name(err));
    } else {
      const uint64_t place = (1ULL << _UFFDIO_WAKE) | (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE);
      add(r, "test-page", (ioctls & place) == place, "test page registered; range ioctls: " + ioctl_names(ioctls));
      uffd_unregister(o.fd, reinterpret_cast<uintptr_t>(page), 4096);
    }
    munmap(page, 4096);
  }

  bool hugetlbfs_feature = (api.features & UFFD_FEATURE_MISSING_HUGETLBFS) != 0;
  add(r, "huge-page-feature", !any_hugetlbfs || hugetlbfs_feature,
      !any_hugetlbfs ? std::string("no hugetlbfs blocks (MISSING_HUGETLBFS ") + (hugetlbfs_feature ? "offered)" : "not offered)")
      : hugetlbfs_feature ? "MISSING_HUGETLBFS offered for the hugetlbfs blocks"
                          : "hugetlbfs blocks need MISSING_HUGETLBFS, which this kernel does not offer");
  add(r, "thread-id", true,
      (api.features & UFFD_FEATURE_THREAD_ID) ? "THREAD_ID offered: faults name their thread (blocktime per vCPU)"
                                               : "THREAD_ID not offered: faults cannot be mapped to vCPUs");
  add(r, "event-remove", true,
      (api.features & UFFD_FEATURE_EVENT_REMOVE) ? "EVENT_REMOVE offered: ranges the guest removes are unregistered and dropped"
                                                  : "EVENT_REMOVE not offered: removed ranges are not reported");
  close(o.fd);
  return r;
}

}  // namespace pc
