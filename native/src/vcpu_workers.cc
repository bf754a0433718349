#include "vcpu_workers.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "refusal.h"
#include "uffd.h"

namespace pc {

namespace {

constexpr size_t kPage = 4096;

// splitmix64: a small, good, seedable generator (the same seed gives the same walk).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
  double unit() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
};

uint64_t thread_faults() {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<uint64_t>(ru.ru_minflt + ru.ru_majflt);
}

}  // namespace

Pattern parse_pattern(const std::string& name) {
  if (name == "sequential-increment") return Pattern::SequentialIncrement;
  if (name == "random") return Pattern::Random;
  if (name == "hot-set") return Pattern::HotSet;
  if (name == "bootblock") return Pattern::Bootblock;
  if (name == "bootblock-random") return Pattern::BootblockRandom;
  // The read variants walk the same way but only read: guest memory stays what was placed.
  if (name == "read-sequential") return Pattern::SequentialIncrement;
  if (name == "read-random") return Pattern::Random;
  if (name == "read-hot-set") return Pattern::HotSet;
  if (name == "read-bootblock") return Pattern::Bootblock;
  if (name == "read-bootblock-random") return Pattern::BootblockRandom;
  throw Refusal("startVcpus", "unknown access pattern '" + name + "' (sequential-increment, random, hot-set, bootblock, bootblock-random, read-sequential, read-random, read-hot-set, read-bootblock or read-bootblock-random)");
}

PageRange bootblock_share(size_t pages, int vcpus, int index) {
  // 128-bit products: pages * 240 * vcpus must not wrap whatever the region's size.
  auto boundary = [&](int i) -> size_t {
    if (i == 0) return pages / 256;
    return static_cast<size_t>((static_cast<unsigned __int128>(pages) * 240u * static_cast<unsigned>(i)) /
                               (256u * static_cast<unsigned>(vcpus)));
  };
  size_t first = boundary(index);
  size_t end = boundary(index + 1);
  return PageRange{first, end > first ? end - first : 0};
}

namespace {
bool is_bootblock(Pattern p) { return p == Pattern::Bootblock || p == Pattern::BootblockRandom; }
}  // namespace

bool is_read_pattern(const std::string& name) {
  return name.rfind("read-", 0) == 0;
}

VcpuWorkers::~VcpuWorkers() {
  stop(-1);
}

std::vector<pid_t> VcpuWorkers::start(const VcpuConfig& config, std::function<void()> on_all_done) {
  if (active()) throw Refusal("startVcpus", "vCPU workers are already running: stop them first");
  size_t pages = config.length / kPage;
  if (config.vcpus < 1 || static_cast<size_t>(config.vcpus) > pages) {
    throw Refusal("startVcpus", std::to_string(config.vcpus) + " vCPUs cannot share " + std::to_string(pages) + " pages");
  }
  if (is_bootblock(config.pattern)) {
    for (int i = 0; i < config.vcpus; i++) {
      if (bootblock_share(pages, config.vcpus, i).count == 0) {
        throw Refusal("startVcpus", "the bootblock patterns give vCPU " + std::to_string(i) + " no page of [1/256, 240/256) of " +
                                        std::to_string(pages) + " pages split " + std::to_string(config.vcpus) + " ways: use a larger region or fewer vCPUs");
      }
    }
  }
  config_ = config;
  on_all_done_ = std::move(on_all_done);
  go_ = false;
  stop_ = false;
  finished_ = 0;
  last_reports_.clear();
  for (int i = 0; i < config.vcpus; i++) {
    Worker* w = new Worker();
    w->index = i;
    workers_.push_back(w);
  }
  for (Worker* w : workers_) threads_.emplace_back([this, w] { run(*w); });
  std::vector<pid_t> tids;
  for (Worker* w : workers_) {
    while (w->tid.load() == 0) std::this_thread::yield();
    tids.push_back(w->tid.load());
  }
  go_.store(true);
  return tids;
}

void VcpuWorkers::run(Worker& w) {
  w.tid.store(static_cast<pid_t>(gettid()));
  char name[16];
  snprintf(name, sizeof name, "vcpu-%d", w.index);
  pthread_setname_np(pthread_self(), name);
  const VcpuConfig& c = config_;
  if (!c.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(c.cpus[static_cast<size_t>(w.index) % c.cpus.size()], &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  while (!go_.load()) std::this_thread::yield();

  // This vCPU's share: consecutive 4 KiB pages, the last vCPU taking the remainder (the
  // bootblock patterns: its part of [1/256, 240/256) of the region, as the guest's halves).
  size_t pages = c.length / kPage;
  size_t per = pages / static_cast<size_t>(c.vcpus);
  size_t first = per * static_cast<size_t>(w.index);
  size_t count = w.index == c.vcpus - 1 ? pages - first : per;
  if (is_bootblock(c.pattern)) {
    PageRange r = bootblock_share(pages, c.vcpus, w.index);
    first = r.first;
    count = r.count;
  }
  uint8_t* share = c.base + first * kPage;
  w.latencies_ns.reserve(c.latency_samples);

  uint64_t faults0 = thread_faults();
  int64_t t_start = monotonic_ns();
  int64_t deadline = c.duration_ms > 0 ? t_start + static_cast<int64_t>(c.duration_ms * 1e6) : 0;

  // One access: increment the first byte of a page, as the bootblock guest does (or, for
  // the read-* patterns, read it: a read of a missing page faults the same way).
  volatile uint8_t sink = 0;
  auto access = [&](volatile uint8_t* p) {
    if (c.read_only) sink = static_cast<uint8_t>(sink + *p);
    else *p = static_cast<uint8_t>(*p + 1);
  };
  auto touch = [&](size_t page) {
    volatile uint8_t* p = share + page * kPage;
    w.current.store(reinterpret_cast<uint64_t>(p), std::memory_order_relaxed);
    if (w.latencies_ns.size() < c.latency_samples) {
      int64_t t0 = monotonic_ns();
      access(p);
      w.latencies_ns.push_back(static_cast<double>(monotonic_ns() - t0));
    } else {
      access(p);
    }
    w.accesses++;
  };
  auto should_stop = [&](uint64_t i) {
    if (stop_.load(std::memory_order_relaxed)) return true;
    if (deadline) return (i & 255) == 0 && monotonic_ns() >= deadline;
    return false;
  };

  Rng rng{c.seed ^ (0x632be59bd9b4e019ULL * static_cast<uint64_t>(w.index + 1))};
  uint64_t limit = c.iterations ? c.iterations : count;
  switch (c.pattern) {
    case Pattern::SequentialIncrement:
      for (uint32_t pass = 0; pass < c.passes && !stop_.load(std::memory_order_relaxed); pass++) {
        for (size_t page = 0; page < count; page++) {
          if (stop_.load(std::memory_order_relaxed)) break;
          touch(page);
        }
      }
      break;
    case Pattern::Bootblock: {
      // `passes` passes, or with a duration passes until it is over (the guest loops forever;
      // the last pass may be cut short, as a guest stopped mid-walk).
      uint64_t i = 0;
      bool over = false;
      for (uint32_t pass = 0; !over && (deadline ? true : pass < c.passes); pass++) {
        for (size_t page = 0; page < count; page++, i++) {
          if (should_stop(i)) {
            over = true;
            break;
          }
          touch(page);
        }
      }
      break;
    }
    case Pattern::Random:
      for (uint64_t i = 0; deadline ? true : i < limit; i++) {
        if (should_stop(i)) break;
        touch(rng.below(count));
      }
      break;
    case Pattern::HotSet: {
      std::vector<size_t> hot;
      size_t n = c.hot_pages ? c.hot_pages : 1;
      if (n > count) n = count;
      for (size_t k = 0; k < n; k++) hot.push_back(rng.below(count));
      for (uint64_t i = 0; deadline ? true : i < limit; i++) {
        if (should_stop(i)) break;
        touch(rng.unit() < c.hot_fraction ? hot[rng.below(hot.size())] : rng.below(count));
      }
      break;
    }
    case Pattern::BootblockRandom: {
      uint32_t x = static_cast<uint32_t>(w.index + 1);
      for (uint64_t i = 0; deadline ? true : i < limit; i++) {
        if (should_stop(i)) break;
        x = bootblock_lcg_next(x);
        touch((x >> 8) % count);
      }
      break;
    }
  }
  w.elapsed_ns = monotonic_ns() - t_start;
  w.faults = thread_faults() - faults0;
  w.current.store(0);
  w.finished.store(true);
  bool last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last = ++finished_ == c.vcpus;
    cv_.notify_all();
  }
  if (last && on_all_done_) on_all_done_();
}

bool VcpuWorkers::stop(int64_t timeout_ms) {
  if (!active()) return true;
  stop_.store(true);
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto all = [&] { return finished_.load() == config_.vcpus; };
    if (timeout_ms < 0) {
      cv_.wait(lock, all);
    } else if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), all)) {
      return false;
    }
  }
  join_all();
  return true;
}

bool VcpuWorkers::join_if_finished() {
  if (!active()) return true;
  if (finished_.load() != config_.vcpus) return false;
  join_all();
  return true;
}

void VcpuWorkers::join_all() {
  for (auto& t : threads_) t.join();
  threads_.clear();
  last_reports_ = reports();
  for (Worker* w : workers_) delete w;
  workers_.clear();
  on_all_done_ = nullptr;
}

std::vector<VcpuReport> VcpuWorkers::reports() const {
  if (workers_.empty()) return last_reports_;
  std::vector<VcpuReport> out;
  for (const Worker* w : workers_) {
    VcpuReport r;
    r.index = w->index;
    r.tid = w->tid.load();
    r.finished = w->finished.load();
    if (r.finished) {
      r.accesses = w->accesses;
      r.faults = w->faults;
      r.elapsed_ns = w->elapsed_ns;
      r.latencies_ns = w->latencies_ns;
    } else {
      r.blocked_at = w->current.load();
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string VcpuWorkers::blocked_description() const {
  std::string out;
  for (const Worker* w : workers_) {
    if (w->finished.load()) continue;
    char buf[96];
    snprintf(buf, sizeof buf, "vCPU %d (tid %d) at 0x%llx", w->index, static_cast<int>(w->tid.load()),
             static_cast<unsigned long long>(w->current.load()));
    if (!out.empty()) out += ", ";
    out += buf;
  }
  return out;
}

}  // namespace pc
