// The fault reader thread: waits on the userfault fd and a quit eventfd, reads messages
// in batches and hands them to a sink with one CLOCK_MONOTONIC timestamp per read.
// Optionally spins on the non-blocking fd for a while after activity before it goes
// back to poll(2) (lower latency when it has a core to itself).
#pragma once
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pc {

struct Fault {
  uint64_t address;
  int32_t tid;
  int64_t time_ns;
};

class FaultSink {
 public:
  virtual ~FaultSink() = default;
  // Page faults from one read, oldest first. Called on the reader thread.
  virtual void faults(const Fault* f, size_t n) = 0;
  // UFFD_EVENT_REMOVE of [start, end). Called on the reader thread, after the read that
  // released the removing thread.
  virtual void removed(uint64_t start, uint64_t end) = 0;
};

struct ReaderOptions {
  int64_t spin_ns = 0;     // spin this long after the last message before poll(2)
  std::vector<int> cpus;   // pin the reader to these CPUs (empty: no pinning)
};

class FaultReader {
 public:
  FaultReader() = default;
  ~FaultReader() { stop(); }
  FaultReader(const FaultReader&) = delete;
  FaultReader& operator=(const FaultReader&) = delete;

  // Starts the thread on `uffd` (which must be O_NONBLOCK); returns once it runs.
  void start(int uffd, FaultSink* sink, const ReaderOptions& options);
  // Signals the quit eventfd, joins the thread and closes the eventfd. Idempotent.
  void stop();
  bool running() const { return thread_.joinable(); }
  pid_t tid() const { return tid_.load(); }
  int event_fd() const { return quit_fd_; }
  // Blocks until every read(2) begun so far has been handed to the sink; used to know
  // that the REMOVE events of a madvise(2) that has returned were classified.
  void wait_reads_processed();
  uint64_t messages() const { return messages_.load(); }
  uint64_t unknown_events() const { return unknown_.load(); }
  const std::string& failure() const { return failure_; }

 private:
  void run();
  void finish_read(uint64_t seq);

  int uffd_ = -1;
  int quit_fd_ = -1;
  FaultSink* sink_ = nullptr;
  ReaderOptions options_;
  std::thread thread_;
  std::atomic<bool> quit_{false};
  std::atomic<pid_t> tid_{0};
  std::atomic<uint64_t> reads_begun_{0};
  std::atomic<uint64_t> reads_done_{0};
  std::atomic<bool> waiting_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> unknown_{0};
  std::string failure_;  // why the thread stopped early, if it did (read once joined)
};

}  // namespace pc
