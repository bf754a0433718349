// `postcopy tap`'s forwarding, native: each accepted connection pair gets two threads, one per
// direction, that read what is there up to 1 MiB (blocking), write all of it to the other
// socket, and only then copy the read into the tap's shared-memory ring (the record layout of
// src/io/qemu/tapRing.ts; the recorder worker reads it unchanged). No event loop between a
// read and its write, no allocation per read, and nothing buffered beyond one read.
// Plain C++, no N-API: failures are errno values, what JavaScript must hear goes through a
// RelayListener (relay_binding.cc turns it into calls on the JavaScript thread).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pc {

// Record types, as RecordType in tapRing.ts.
enum RingRecordType : uint32_t { kRingOpen = 1, kRingData = 2, kRingGap = 3, kRingClose = 4, kRingError = 5, kRingFinish = 6 };

// The producer side of the ring (RingWriter in tapRing.ts), safe to call from several
// threads: puts are serialized by a mutex, the reader relies only on the atomic positions.
class TapRing {
 public:
  // `base` points at the whole SharedArrayBuffer: 64 control bytes, then a power-of-two ring.
  TapRing(uint8_t* base, size_t total_bytes);
  // Appends a record; false when it does not fit. `wake` is set when the reader should be
  // woken (any record but data, or a ring filling past a quarter / 4 MiB).
  bool put(uint32_t type, uint32_t id, uint32_t dir, double t, double value, const uint8_t* payload, size_t length, bool* wake);
  // Bytes written and not yet consumed.
  uint32_t backlog() const;
  size_t size() const { return size_; }

 private:
  void copy_in(const uint8_t* bytes, size_t n, size_t at);
  int32_t* control_;
  uint8_t* data_;
  size_t size_;
  size_t wake_at_;
  std::mutex mu_;
};

// What the relay tells its owner; called on relay threads (keep it quick).
struct RelayEvent {
  enum Kind { kEnd, kError, kClosed, kWake, kGap };
  explicit RelayEvent(Kind k) : kind(k) {}
  Kind kind;
  uint32_t id = 0;
  // kEnd: the direction that ended (0: source → destination); kError: the side that failed;
  // kGap: the direction no longer recorded (`message`: why, bytes[0]: from which byte).
  uint32_t dir = 0;
  std::string message;
  // kClosed: bytes forwarded each way.
  double bytes[2] = {0, 0};
};

class RelayListener {
 public:
  virtual ~RelayListener() = default;
  virtual void relay_event(RelayEvent e) = 0;
};

class Relay {
 public:
  Relay(uint8_t* ring_base, size_t ring_total_bytes, RelayListener* listener);
  ~Relay();

  // CLOCK_MONOTONIC ns since the relay started: the time of every record.
  double now() const;
  // A record of the owner's (OPEN, ERROR, FINISH...), stamped now (FINISH: 0). Records that
  // do not fit wait, in order, for room; data records wait behind them (refused meanwhile).
  void post(uint32_t type, uint32_t id, uint32_t dir, double value, const std::string& text);
  // Starts forwarding between two connected TCP sockets (dup'ed: the caller may close its
  // own fds right after). Returns 0 or the errno of the refusal.
  int attach(uint32_t id, int client_fd, int upstream_fd);
  // Ends every connection (shutdown + join: no record is written after this returns).
  void stop();
  // Bytes forwarded, each direction, every connection.
  double forwarded(int dir) const { return static_cast<double>(forwarded_[dir].load()); }
  // Control records still waiting for room in the ring.
  size_t pending() const;

 private:
  struct Pair;
  struct Pending {
    uint32_t type, id, dir;
    double t, value;
    std::string text;
  };
  void forward(Pair* p, int dir);
  void finish_direction(Pair* p);
  void fail(Pair* p, uint32_t side, const std::string& what);
  void data(Pair* p, int dir, const uint8_t* bytes, size_t n, double t, uint64_t from);
  // Writes waiting records; true when none is left. Caller holds pending_mu_.
  bool flush_locked(bool* wake);
  void flusher();
  void emit(RelayEvent e);
  void reap_locked();

  TapRing ring_;
  RelayListener* listener_;
  int64_t origin_ns_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> forwarded_[2];

  mutable std::mutex pending_mu_;
  std::deque<Pending> pending_;
  std::atomic<bool> has_pending_{false};
  std::condition_variable pending_cv_;
  bool quit_ = false;
  std::thread flusher_;

  std::mutex pairs_mu_;
  std::vector<std::unique_ptr<Pair>> pairs_;
};

}  // namespace pc
