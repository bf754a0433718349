// Guest RAM: one anonymous mapping per RAM block (hugetlbfs or transparent huge pages
// for 2 MiB blocks), each between PROT_NONE guard pages, and the range checks that
// every operation coming from JavaScript passes before it touches memory or an ioctl.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pc {

struct BlockLayout {
  std::string name;
  size_t length = 0;       // used length, bytes
  size_t max_length = 0;   // mapped length (>= length)
  size_t page_size = 4096; // host page size
  bool hugetlbfs = false;
};

struct Block {
  BlockLayout layout;
  uintptr_t base = 0;          // first byte of guest memory
  uintptr_t reservation = 0;   // the whole mapping, guards included
  size_t reservation_len = 0;
  // Kernel page unit for placement steps: the host page for hugetlbfs, else 4 KiB.
  size_t kernel_page = 4096;
  std::atomic<bool> registered{false};
  bool huge_pages_enabled = false;
  // Byte ranges [start, end) (offsets) the guest removed while registered: unregistered
  // and dropped (EVENT_REMOVE, handled like Firecracker and CRIU). Guarded by mu.
  std::vector<std::pair<size_t, size_t>> removed;
};

// What the kernel allows for huge pages, with a reason when it does not.
struct HugePageSupport {
  bool thp_ok = false;
  std::string thp_mode;     // "always", "madvise" or "never" (the bracketed word)
  std::string thp_reason;
  bool hugetlb_ok = false;
  long hugetlb_total = 0, hugetlb_free = 0, hugetlb_page_kb = 0;
  std::string hugetlb_reason;
};
HugePageSupport huge_page_support();

class GuestMemory {
 public:
  // Maps every block; throws Refusal (naming the block and the kernel's reason) when a
  // layout is unusable or the kernel refuses a mapping. Nothing stays mapped on failure.
  explicit GuestMemory(std::vector<BlockLayout> layouts);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  size_t count() const { return blocks_.size(); }
  // Throws Refusal when `index` names no block (or the memory was released).
  Block& block(double index, const char* op);
  Block& at(size_t i) { return *blocks_[i]; }

  // Checks [offset, offset+length) lies within the block's used length, is aligned to
  // the host page and is a whole number of host pages (>0). Throws Refusal otherwise.
  void check_pages(const Block& b, double offset, double length, const char* op) const;
  // Checks [offset, offset+length) lies within the used length (any alignment).
  void check_bytes(const Block& b, double offset, double length, const char* op) const;

  // True when [off, off+len) lies wholly inside ranges the guest removed.
  bool is_removed(Block& b, size_t off, size_t len);
  void add_removed(Block& b, size_t off, size_t len);
  void clear_removed(Block& b);
  // Takes [off, off+len) out of the removed ranges (it was registered again).
  void forget_removed(Block& b, size_t off, size_t len);

  // Block index and offset of a host address, or false when it is in no block.
  bool locate(uintptr_t addr, size_t* index, size_t* offset) const;

  // Unmaps every block; afterwards every block() call refuses. Idempotent.
  void release();
  bool released() const { return released_; }

  std::mutex mu;  // guards Block::removed and registration changes across threads

 private:
  void map_block(Block& b);
  std::vector<Block*> blocks_;
  bool released_ = false;
};

// A read-only mapping of zeros (never written: reading it maps the shared zero page),
// the source of zero placements where UFFDIO_ZEROPAGE is unsupported (hugetlbfs).
const void* zero_source(size_t len);

}  // namespace pc
