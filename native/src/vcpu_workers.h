// vCPU workers: native threads that play the guest. Each runs an access pattern over its
// share of one RAM block and, when a page is missing in a registered range, really
// blocks in the kernel until the page is placed. Their thread ids are what THREAD_ID
// reports in fault messages, so the engine maps tid -> vCPU index for blocktime.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pc {

// Bootblock and BootblockRandom play guest/bootblock.S and guest/bootblock-random.S: each
// vCPU works on its part of [1/256, 240/256) of the region (bootblock_share), one byte per
// page, sequentially or at the pages of the guest's LCG (bootblock_lcg_next).
enum class Pattern { SequentialIncrement, Random, HotSet, Bootblock, BootblockRandom };

struct VcpuConfig {
  Pattern pattern = Pattern::SequentialIncrement;
  int vcpus = 1;
  uint64_t seed = 1;
  uint8_t* base = nullptr;   // first byte of the region (a RAM block)
  size_t length = 0;         // bytes; split into equal 4 KiB-page shares, one per vCPU
  uint32_t passes = 1;       // sequential-increment / bootblock: passes over the share
  uint64_t iterations = 0;   // random / hot-set / bootblock-random: accesses per vCPU (0: one per page of the share)
  double duration_ms = 0;    // random / hot-set / bootblock(-random): stop after this long instead (0: use passes / iterations)
  uint32_t hot_pages = 64;   // hot-set: size of each vCPU's hot set
  double hot_fraction = 0.9; // hot-set: share of accesses that go to the hot set
  std::vector<int> cpus;     // vCPU i is pinned to cpus[i % cpus.size()] (empty: not pinned)
  uint32_t latency_samples = 0; // record the first N access latencies (ns) per vCPU
  bool read_only = false;       // read-*: the same walks, reading the page instead of incrementing a byte
};

struct VcpuReport {
  int index = 0;
  pid_t tid = 0;
  uint64_t accesses = 0;       // pages touched (with repeats)
  uint64_t faults = 0;         // page faults the thread took (getrusage minflt+majflt)
  int64_t elapsed_ns = 0;
  bool finished = false;
  uint64_t blocked_at = 0;     // address of the access in progress when not finished
  std::vector<double> latencies_ns;
};

Pattern parse_pattern(const std::string& name);  // throws Refusal on an unknown name

// vCPU `index`'s pages under the bootblock patterns, out of a region of `pages` 4 KiB pages
// split among `vcpus`: boundaries b_0 = floor(pages / 256) and b_i = floor(pages * 240 * i /
// (256 * vcpus)) for i >= 1; vCPU i takes [b_i, b_(i+1)). For 256 MiB and 2 vCPUs that is the
// guest's [1 MiB, 120 MiB) and [120 MiB, 240 MiB). `count` may be 0 on a tiny region.
struct PageRange {
  size_t first = 0;
  size_t count = 0;
};
PageRange bootblock_share(size_t pages, int vcpus, int index);

// One step of the random guest's LCG: x = x * 1103515245 + 12345 (mod 2^32); the page is
// (x >> 8) mod count. vCPU i starts at x = i + 1 (the guest's seeds 1 and 2).
inline uint32_t bootblock_lcg_next(uint32_t x) { return x * 1103515245u + 12345u; }
bool is_read_pattern(const std::string& name);   // read-sequential, read-random, read-hot-set, read-bootblock(-random)

class VcpuWorkers {
 public:
  ~VcpuWorkers();
  // Starts the threads; returns their tids (index = vCPU index) once all have started.
  // `on_all_done` runs on the last thread to finish its pattern.
  std::vector<pid_t> start(const VcpuConfig& config, std::function<void()> on_all_done);
  // Asks every thread to stop after its current access and waits up to `timeout_ms` for
  // them. True when all finished (they are then joined); false when some are still
  // blocked on a missing page (they stay running: place the page or unregister, retry).
  bool stop(int64_t timeout_ms);
  // Joins threads that have all finished by themselves; false if some still run.
  bool join_if_finished();
  bool active() const { return !threads_.empty(); }
  std::vector<VcpuReport> reports() const;
  // "vCPU 0 (tid 123) at 0x7f..." for each unfinished vCPU.
  std::string blocked_description() const;

 private:
  struct Worker {
    int index = 0;
    std::atomic<pid_t> tid{0};
    std::atomic<uint64_t> current{0};
    std::atomic<bool> finished{false};
    uint64_t accesses = 0;
    uint64_t faults = 0;
    int64_t elapsed_ns = 0;
    std::vector<double> latencies_ns;
  };
  void run(Worker& w);
  void join_all();

  VcpuConfig config_;
  std::vector<Worker*> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> go_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int> finished_{0};
  std::function<void()> on_all_done_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<VcpuReport> last_reports_;
};

}  // namespace pc
