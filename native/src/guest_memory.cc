#include "guest_memory.h"

#include <errno.h>
#include <linux/mman.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "refusal.h"
#include "uffd.h"

namespace pc {

namespace {

constexpr size_t kTargetPage = 4096;
constexpr size_t kTwoMiB = 2u << 20;
constexpr size_t kOneGiB = 1u << 30;
constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

std::string hex(size_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%zx", v);
  return buf;
}

std::string read_first_line(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

long meminfo_value(const std::string& key) {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':') {
      return std::stol(line.substr(key.size() + 1));
    }
  }
  return -1;
}

bool is_index(double v) { return v >= 0 && v <= kMaxSafe && std::floor(v) == v; }

}  // namespace

HugePageSupport huge_page_support() {
  HugePageSupport s;
  std::string enabled = read_first_line("/sys/kernel/mm/transparent_hugepage/enabled");
  size_t l = enabled.find('['), r = enabled.find(']');
  if (enabled.empty()) {
    s.thp_reason = "transparent huge pages are not built into this kernel (no /sys/kernel/mm/transparent_hugepage/enabled)";
  } else if (l == std::string::npos || r == std::string::npos || r < l) {
    s.thp_reason = "cannot parse /sys/kernel/mm/transparent_hugepage/enabled: " + enabled;
  } else {
    s.thp_mode = enabled.substr(l + 1, r - l - 1);
    s.thp_ok = s.thp_mode != "never";
    if (!s.thp_ok) s.thp_reason = "transparent huge pages are 'never' in /sys/kernel/mm/transparent_hugepage/enabled";
  }
  s.hugetlb_total = meminfo_value("HugePages_Total");
  s.hugetlb_free = meminfo_value("HugePages_Free");
  s.hugetlb_page_kb = meminfo_value("Hugepagesize");
  if (s.hugetlb_total < 0) {
    s.hugetlb_reason = "hugetlbfs is not built into this kernel (no HugePages_Total in /proc/meminfo)";
  } else if (s.hugetlb_free <= 0) {
    s.hugetlb_reason = "no free hugetlbfs pages (HugePages_Total=" + std::to_string(s.hugetlb_total) +
                       ", HugePages_Free=" + std::to_string(s.hugetlb_free) +
                       "); reserve some with: echo N > /proc/sys/vm/nr_hugepages";
  } else {
    s.hugetlb_ok = true;
  }
  return s;
}

GuestMemory::GuestMemory(std::vector<BlockLayout> layouts) {
  try {
    for (auto& layout : layouts) {
      Block* b = new Block();
      b->layout = std::move(layout);
      blocks_.push_back(b);
      map_block(*b);
    }
  } catch (...) {
    release();
    throw;
  }
}

GuestMemory::~GuestMemory() { release(); }

void GuestMemory::map_block(Block& b) {
  BlockLayout& L = b.layout;
  const std::string who = "RAM block '" + L.name + "'";
  size_t ps = L.page_size;
  if (ps < kTargetPage || (ps & (ps - 1)) != 0 || ps > kOneGiB) {
    throw Refusal("map", who + ": host page size " + std::to_string(ps) + " is not a power of two between 4 KiB and 1 GiB");
  }
  if (L.max_length < L.length) L.max_length = L.length;
  if (L.length == 0 || L.length % ps != 0 || L.max_length % ps != 0) {
    throw Refusal("map", who + ": length " + std::to_string(L.length) + " (max " + std::to_string(L.max_length) +
                             ") is not a non-zero multiple of its host page size " + std::to_string(ps));
  }
  if (L.hugetlbfs && ps == kTargetPage) {
    throw Refusal("map", who + ": a hugetlbfs block needs a huge host page size, not 4 KiB");
  }
  if (!L.hugetlbfs && ps != kTargetPage && ps != kTwoMiB) {
    throw Refusal("map", who + ": only 4 KiB and 2 MiB (transparent huge page) blocks can be anonymous; " +
                             std::to_string(ps) + "-byte pages need hugetlbfs");
  }
  if (!L.hugetlbfs && ps == kTwoMiB) {
    HugePageSupport s = huge_page_support();
    if (!s.thp_ok) throw Refusal("map", who + ": 2 MiB pages without hugetlbfs need transparent huge pages, but " + s.thp_reason);
  }

  // Reserve the block plus one alignment unit and a guard page on each side, PROT_NONE;
  // the block itself is then made accessible (or replaced by a hugetlbfs mapping) at an
  // address aligned to its host page. What stays PROT_NONE traps any stray access.
  size_t align = ps;
  size_t total = L.max_length + 2 * align + 2 * kTargetPage;
  void* r = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) throw Refusal("map", who + ": cannot reserve " + std::to_string(total) + " bytes of address space", errno_name(errno));
  b.reservation = reinterpret_cast<uintptr_t>(r);
  b.reservation_len = total;
  uintptr_t base = (b.reservation + kTargetPage + align - 1) & ~(uintptr_t)(align - 1);

  if (L.hugetlbfs) {
    int size_flag = ps == kTwoMiB ? MAP_HUGE_2MB : ps == kOneGiB ? MAP_HUGE_1GB : 0;
    if (size_flag == 0) throw Refusal("map", who + ": hugetlbfs page size must be 2 MiB or 1 GiB");
    void* m = mmap(reinterpret_cast<void*>(base), L.max_length, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB | size_flag, -1, 0);
    if (m == MAP_FAILED) {
      int err = errno;
      HugePageSupport s = huge_page_support();
      std::string why = err == ENOMEM && !s.hugetlb_reason.empty() ? s.hugetlb_reason
                        : err == ENOMEM ? "not enough free hugetlbfs pages (HugePages_Free=" + std::to_string(s.hugetlb_free) + ")"
                                        : std::string("the kernel refused the hugetlbfs mapping");
      throw Refusal("map", who + ": cannot map " + std::to_string(L.max_length) + " bytes of " + std::to_string(ps >> 10) +
                               " KiB hugetlbfs pages: " + why, errno_name(err));
    }
    b.kernel_page = ps;
  } else {
    if (mprotect(reinterpret_cast<void*>(base), L.max_length, PROT_READ | PROT_WRITE) != 0) {
      throw Refusal("map", who + ": cannot make guest memory accessible", errno_name(errno));
    }
    // 2 MiB anonymous blocks ask for transparent huge pages; 4 KiB blocks are left to
    // the system default until setHugePages says otherwise.
    if (ps == kTwoMiB) {
      if (madvise(reinterpret_cast<void*>(base), L.max_length, MADV_HUGEPAGE) != 0) {
        throw Refusal("map", who + ": madvise(MADV_HUGEPAGE) refused", errno_name(errno));
      }
      b.huge_pages_enabled = true;
    }
    b.kernel_page = kTargetPage;
  }
  b.base = base;
}

Block& GuestMemory::block(double index, const char* op) {
  if (released_) throw Refusal(op, "the backend is closed: guest memory was released");
  if (!is_index(index) || index >= static_cast<double>(blocks_.size())) {
    throw Refusal(op, "block index " + std::to_string(index) + " names no RAM block (there are " + std::to_string(blocks_.size()) + ")");
  }
  return *blocks_[static_cast<size_t>(index)];
}

void GuestMemory::check_pages(const Block& b, double offset, double length, const char* op) const {
  const BlockLayout& L = b.layout;
  if (!is_index(offset) || !is_index(length)) {
    throw Refusal(op, "block '" + L.name + "': offset " + std::to_string(offset) + " and length " + std::to_string(length) +
                          " must be non-negative integers");
  }
  size_t off = static_cast<size_t>(offset), len = static_cast<size_t>(length);
  if (len == 0 || off % L.page_size != 0 || len % L.page_size != 0) {
    throw Refusal(op, "block '" + L.name + "': range " + hex(off) + "+" + hex(len) + " is not a non-empty run of whole " +
                          std::to_string(L.page_size) + "-byte host pages");
  }
  if (off > L.length || len > L.length - off) {
    throw Refusal(op, "block '" + L.name + "': range " + hex(off) + "+" + hex(len) + " is outside the block's " + hex(L.length) +
                          " bytes of guest memory");
  }
}

void GuestMemory::check_bytes(const Block& b, double offset, double length, const char* op) const {
  const BlockLayout& L = b.layout;
  if (!is_index(offset) || !is_index(length)) {
    throw Refusal(op, "block '" + L.name + "': offset and length must be non-negative integers");
  }
  size_t off = static_cast<size_t>(offset), len = static_cast<size_t>(length);
  if (off > L.length || len > L.length - off) {
    throw Refusal(op, "block '" + L.name + "': range " + hex(off) + "+" + hex(len) + " is outside the block's " + hex(L.length) +
                          " bytes of guest memory");
  }
}

bool GuestMemory::is_removed(Block& b, size_t off, size_t len) {
  std::lock_guard<std::mutex> lock(mu);
  size_t end = off + len;
  // Ranges may be adjacent pieces: walk forward covering [off, end).
  bool progressed = true;
  while (off < end && progressed) {
    progressed = false;
    for (const auto& r : b.removed) {
      if (r.first <= off && off < r.second) {
        off = r.second;
        progressed = true;
      }
    }
  }
  return off >= end;
}

void GuestMemory::add_removed(Block& b, size_t off, size_t len) {
  std::lock_guard<std::mutex> lock(mu);
  b.removed.emplace_back(off, off + len);
}

void GuestMemory::clear_removed(Block& b) {
  std::lock_guard<std::mutex> lock(mu);
  b.removed.clear();
}

void GuestMemory::forget_removed(Block& b, size_t off, size_t len) {
  std::lock_guard<std::mutex> lock(mu);
  size_t end = off + len;
  std::vector<std::pair<size_t, size_t>> kept;
  for (const auto& r : b.removed) {
    if (r.second <= off || r.first >= end) {
      kept.push_back(r);
      continue;
    }
    if (r.first < off) kept.emplace_back(r.first, off);
    if (r.second > end) kept.emplace_back(end, r.second);
  }
  b.removed.swap(kept);
}

bool GuestMemory::locate(uintptr_t addr, size_t* index, size_t* offset) const {
  for (size_t i = 0; i < blocks_.size(); i++) {
    const Block& b = *blocks_[i];
    if (addr >= b.base && addr < b.base + b.layout.max_length) {
      *index = i;
      *offset = addr - b.base;
      return true;
    }
  }
  return false;
}

void GuestMemory::release() {
  if (released_) return;
  released_ = true;
  for (Block* b : blocks_) {
    if (b->reservation) munmap(reinterpret_cast<void*>(b->reservation), b->reservation_len);
    delete b;
  }
  blocks_.clear();
}

const void* zero_source(size_t len) {
  static std::once_flag once;
  static void* zeros = nullptr;
  std::call_once(once, [] {
    void* m = mmap(nullptr, kOneGiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    zeros = m == MAP_FAILED ? nullptr : m;
  });
  if (!zeros || len > kOneGiB) throw Refusal("zero", "no zero source of " + std::to_string(len) + " bytes");
  return zeros;
}

}  // namespace pc
