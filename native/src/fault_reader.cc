#include "fault_reader.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>

#include "refusal.h"
#include "uffd.h"

namespace pc {

namespace {
constexpr size_t kBatch = 64;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

void FaultReader::start(int uffd, FaultSink* sink, const ReaderOptions& options) {
  if (running()) throw Refusal("listen", "the fault reader is already running");
  quit_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (quit_fd_ < 0) throw Refusal("listen", "cannot create the quit eventfd", errno_name(errno));
  uffd_ = uffd;
  sink_ = sink;
  options_ = options;
  quit_ = false;
  failure_.clear();
  thread_ = std::thread([this] { run(); });
  while (tid_.load() == 0) std::this_thread::yield();
}

void FaultReader::stop() {
  if (!thread_.joinable()) return;
  quit_ = true;
  uint64_t one = 1;
  ssize_t w = write(quit_fd_, &one, sizeof one);
  (void)w;
  thread_.join();
  close(quit_fd_);
  quit_fd_ = -1;
  tid_ = 0;
}

void FaultReader::finish_read(uint64_t seq) {
  reads_done_.store(seq);
  if (waiting_.load()) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
}

void FaultReader::wait_reads_processed() {
  if (!running()) return;
  uint64_t target = reads_begun_.load();
  waiting_.store(true);
  std::unique_lock<std::mutex> lock(mu_);
  while (reads_done_.load() < target) {
    cv_.wait_for(lock, std::chrono::milliseconds(10));
  }
  waiting_.store(false);
}

void FaultReader::run() {
  tid_.store(static_cast<pid_t>(gettid()));
  pthread_setname_np(pthread_self(), "uffd-reader");
  if (!options_.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : options_.cpus) CPU_SET(c, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  struct uffd_msg msgs[kBatch];
  Fault faults[kBatch];
  int64_t last_activity = 0;
  while (!quit_.load(std::memory_order_relaxed)) {
    uint64_t seq = reads_begun_.fetch_add(1) + 1;
    ssize_t got = read(uffd_, msgs, sizeof msgs);
    if (got < 0) {
      int err = errno;
      finish_read(seq);
      if (err == EINTR) continue;
      if (err != EAGAIN) {
        failure_ = "read(userfault fd) failed: " + errno_name(err);
        break;
      }
      if (options_.spin_ns > 0 && monotonic_ns() - last_activity < options_.spin_ns) {
        cpu_relax();
        continue;
      }
      struct pollfd fds[2] = {{uffd_, POLLIN, 0}, {quit_fd_, POLLIN, 0}};
      int rc = poll(fds, 2, -1);
      if (rc < 0 && errno != EINTR) {
        failure_ = "poll failed: " + errno_name(errno);
        break;
      }
      if (rc > 0 && (fds[1].revents & POLLIN)) break;
      if (rc > 0 && (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL))) {
        failure_ = "the userfault fd reported an error condition";
        break;
      }
      continue;
    }
    int64_t now = monotonic_ns();
    last_activity = now;
    size_t n = static_cast<size_t>(got) / sizeof(struct uffd_msg);
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
      const struct uffd_msg& m = msgs[i];
      if (m.event == UFFD_EVENT_PAGEFAULT) {
        faults[nf++] = {m.arg.pagefault.address, static_cast<int32_t>(m.arg.pagefault.feat.ptid), now};
      } else if (m.event == UFFD_EVENT_REMOVE) {
        // Deliver the faults read before it first: order is preserved.
        if (nf) sink_->faults(faults, nf);
        nf = 0;
        sink_->removed(m.arg.remove.start, m.arg.remove.end);
      } else {
        unknown_.fetch_add(1);
      }
    }
    if (nf) sink_->faults(faults, nf);
    messages_.fetch_add(n);
    finish_read(seq);
  }
  // Let a waiter go: nothing more will be read.
  finish_read(reads_begun_.load());
}

}  // namespace pc
