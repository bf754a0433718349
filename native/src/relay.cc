#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <system_error>

#include "uffd.h"  // monotonic_ns, errno_name

namespace pc {

namespace {
constexpr size_t kControlBytes = 64;
constexpr size_t kHeader = 32;
// The most one read takes. A read returns what is there, so a small write is forwarded as
// soon as it arrives whatever this is; when the source writes faster than this thread is
// scheduled (two busy QEMUs on two cores), one read and one send carry all that piled up
// instead of sixteen of 64 KiB each: the relay thread's CPU per 500 MB migration went from
// 270-300 ms to 140-170 ms (BENCHMARKS.md, tap.qemu.total).
constexpr size_t kOneRead = 1024 * 1024;
constexpr int kWriteIndex = 0;
constexpr int kReadIndex = 1;
}  // namespace

// A short scheduler slice for the calling thread (EEVDF, Linux 6.12+: sched_runtime of a
// SCHED_OTHER thread, 0.1 ms): a forwarding thread woken by its socket gets an earlier
// deadline and runs before threads that used their whole 3 ms slice, instead of waiting
// behind them. Same nice, no privilege; older kernels ignore it, a refusal changes nothing.
static void ask_short_slice() {
  struct {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
  } attr = {};
  attr.size = sizeof attr;
  attr.policy = 0;  // SCHED_OTHER
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  attr.nice = errno == 0 ? nice : 0;
  attr.runtime = 100 * 1000;
  syscall(SYS_sched_setattr, 0, &attr, 0);
}

// --- the ring --------------------------------------------------------------------

TapRing::TapRing(uint8_t* base, size_t total_bytes)
    : control_(reinterpret_cast<int32_t*>(base)), data_(base + kControlBytes), size_(total_bytes - kControlBytes) {
  wake_at_ = size_ / 4 < 4 * 1024 * 1024 ? size_ / 4 : 4 * 1024 * 1024;
}

uint32_t TapRing::backlog() const {
  uint32_t w = static_cast<uint32_t>(__atomic_load_n(&control_[kWriteIndex], __ATOMIC_SEQ_CST));
  uint32_t r = static_cast<uint32_t>(__atomic_load_n(&control_[kReadIndex], __ATOMIC_SEQ_CST));
  return w - r;
}

void TapRing::copy_in(const uint8_t* bytes, size_t n, size_t at) {
  size_t first = n < size_ - at ? n : size_ - at;
  memcpy(data_ + at, bytes, first);
  if (first < n) memcpy(data_, bytes + first, n - first);
}

bool TapRing::put(uint32_t type, uint32_t id, uint32_t dir, double t, double value, const uint8_t* payload, size_t length, bool* wake) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t need = kHeader + ((length + 7) & ~static_cast<size_t>(7));
  uint32_t w = static_cast<uint32_t>(__atomic_load_n(&control_[kWriteIndex], __ATOMIC_SEQ_CST));
  uint32_t used = w - static_cast<uint32_t>(__atomic_load_n(&control_[kReadIndex], __ATOMIC_SEQ_CST));
  if (need > size_ - used) return false;
  // Little-endian, as the reader's DataView reads it (x86-64 and arm64 hosts).
  uint8_t header[kHeader];
  uint32_t len32 = static_cast<uint32_t>(length);
  memcpy(header + 0, &type, 4);
  memcpy(header + 4, &id, 4);
  memcpy(header + 8, &dir, 4);
  memcpy(header + 12, &len32, 4);
  memcpy(header + 16, &t, 8);
  memcpy(header + 24, &value, 8);
  size_t at = w & (size_ - 1);
  copy_in(header, kHeader, at);
  if (length > 0) copy_in(payload, length, (at + kHeader) & (size_ - 1));
  __atomic_store_n(&control_[kWriteIndex], static_cast<int32_t>(w + static_cast<uint32_t>(need)), __ATOMIC_SEQ_CST);
  *wake = type != kRingData || used + need >= wake_at_;
  return true;
}

// --- the relay -------------------------------------------------------------------

struct Relay::Pair {
  uint32_t id = 0;
  // [0] the client (source side), [1] upstream (destination side); closed by the last
  // direction thread to end (under pairs_mu_), -1 then.
  int fd[2] = {-1, -1};
  std::thread thread[2];
  std::atomic<uint64_t> bytes[2];
  std::atomic<bool> failed{false};
  std::atomic<int> running{2};
  // A direction no longer handed to the recorder (it fell behind); each touched by its own thread.
  bool dropped[2] = {false, false};
  Pair() {
    bytes[0] = 0;
    bytes[1] = 0;
  }
};

Relay::Relay(uint8_t* ring_base, size_t ring_total_bytes, RelayListener* listener)
    : ring_(ring_base, ring_total_bytes), listener_(listener), origin_ns_(monotonic_ns()) {
  forwarded_[0] = 0;
  forwarded_[1] = 0;
  flusher_ = std::thread(&Relay::flusher, this);
}

Relay::~Relay() {
  stop();
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    quit_ = true;
  }
  pending_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

double Relay::now() const { return static_cast<double>(monotonic_ns() - origin_ns_); }

size_t Relay::pending() const {
  std::lock_guard<std::mutex> lock(pending_mu_);
  return pending_.size();
}

void Relay::emit(RelayEvent e) {
  if (listener_ != nullptr) listener_->relay_event(std::move(e));
}

bool Relay::flush_locked(bool* wake) {
  while (!pending_.empty()) {
    const Pending& r = pending_.front();
    bool w = false;
    if (!ring_.put(r.type, r.id, r.dir, r.t, r.value, reinterpret_cast<const uint8_t*>(r.text.data()), r.text.size(), &w)) return false;
    *wake = *wake || w;
    pending_.pop_front();
  }
  return true;
}

void Relay::post(uint32_t type, uint32_t id, uint32_t dir, double value, const std::string& text) {
  double t = type == kRingFinish ? 0 : now();
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    pending_.push_back(Pending{type, id, dir, t, value, text});
    bool all = flush_locked(&wake);
    has_pending_.store(!all);
    // Control records must get through even when data no longer fits: the flusher retries.
    if (!all) pending_cv_.notify_one();
  }
  if (wake) emit(RelayEvent{RelayEvent::kWake});
}

void Relay::flusher() {
  std::unique_lock<std::mutex> lock(pending_mu_);
  while (!quit_) {
    if (pending_.empty()) {
      pending_cv_.wait(lock);
    } else {
      pending_cv_.wait_for(lock, std::chrono::milliseconds(2));
    }
    if (quit_) break;
    if (pending_.empty()) continue;
    bool wake = false;
    bool all = flush_locked(&wake);
    has_pending_.store(!all);
    if (wake) {
      lock.unlock();
      emit(RelayEvent{RelayEvent::kWake});
      lock.lock();
    }
  }
}

int Relay::attach(uint32_t id, int client_fd, int upstream_fd) {
  if (stopping_.load()) return ECANCELED;
  int fds[2] = {fcntl(client_fd, F_DUPFD_CLOEXEC, 0), -1};
  if (fds[0] < 0) return errno;
  fds[1] = fcntl(upstream_fd, F_DUPFD_CLOEXEC, 0);
  if (fds[1] < 0) {
    int err = errno;
    close(fds[0]);
    return err;
  }
  for (int fd : fds) {
    // Blocking: a direction thread sleeps in read() or in a write the peer does not take yet
    // (that is the backpressure: nothing is read from its source meanwhile).
    int flags = fcntl(fd, F_GETFL);
    int one = 1;
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      int err = errno;
      close(fds[0]);
      close(fds[1]);
      return err;
    }
  }
  std::lock_guard<std::mutex> lock(pairs_mu_);
  reap_locked();
  auto owned = std::make_unique<Pair>();
  Pair* p = owned.get();
  p->id = id;
  p->fd[0] = fds[0];
  p->fd[1] = fds[1];
  pairs_.push_back(std::move(owned));
  int started = 0;
  try {
    for (; started < 2; started++) p->thread[started] = std::thread(&Relay::forward, this, p, started);
  } catch (const std::system_error&) {
    // The thread that did start ends on the shutdown and closes the fds (it is the last).
    p->running.fetch_sub(2 - started);
    p->failed.store(true);
    if (started == 0) {
      close(p->fd[0]);
      close(p->fd[1]);
      p->fd[0] = p->fd[1] = -1;
      pairs_.pop_back();
    } else {
      shutdown(p->fd[0], SHUT_RDWR);
      shutdown(p->fd[1], SHUT_RDWR);
    }
    return EAGAIN;
  }
  return 0;
}

void Relay::reap_locked() {
  // Pairs whose fds are closed have threads that are done (or returning): join and drop them.
  for (size_t i = 0; i < pairs_.size();) {
    Pair* p = pairs_[i].get();
    if (p->fd[0] < 0 && p->fd[1] < 0) {
      for (auto& th : p->thread) {
        if (th.joinable()) th.join();
      }
      pairs_.erase(pairs_.begin() + static_cast<long>(i));
    } else {
      i++;
    }
  }
}

void Relay::fail(Pair* p, uint32_t side, const std::string& what) {
  if (!p->failed.exchange(true) && !stopping_.load()) {
    std::string message = std::string(side == 0 ? "source side: " : "destination side: ") + what;
    post(kRingError, p->id, side, 0, message);
    RelayEvent e{RelayEvent::kError};
    e.id = p->id;
    e.dir = side;
    e.message = message;
    emit(std::move(e));
  }
  // Both sockets end (as a destroyed Node socket pair did); the other thread wakes up.
  shutdown(p->fd[0], SHUT_RDWR);
  shutdown(p->fd[1], SHUT_RDWR);
}

void Relay::data(Pair* p, int dir, const uint8_t* bytes, size_t n, double t, uint64_t from) {
  if (p->dropped[dir]) return;
  bool wake = false;
  if (!has_pending_.load() && ring_.put(kRingData, p->id, static_cast<uint32_t>(dir), t, 0, bytes, n, &wake)) {
    if (wake) emit(RelayEvent{RelayEvent::kWake});
    return;
  }
  // The recorder is a ring behind: this direction is forwarded from here on but not recorded.
  p->dropped[dir] = true;
  std::string reason = "the recorder fell " + std::to_string(ring_.backlog()) + " bytes behind (its ring holds " + std::to_string(ring_.size()) +
                       "): bytes from here on were forwarded but not decoded";
  post(kRingGap, p->id, static_cast<uint32_t>(dir), static_cast<double>(from), reason);
  RelayEvent e{RelayEvent::kGap};
  e.id = p->id;
  e.dir = static_cast<uint32_t>(dir);
  e.message = reason;
  e.bytes[0] = static_cast<double>(from);
  emit(std::move(e));
}

void Relay::forward(Pair* p, int dir) {
  ask_short_slice();
  std::vector<uint8_t> buf(kOneRead);
  const int from = p->fd[dir];
  const int to = p->fd[1 - dir];
  for (;;) {
    ssize_t n = read(from, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(p, static_cast<uint32_t>(dir), "read " + errno_name(errno));
      break;
    }
    double t = now();
    if (n == 0) {
      if (!stopping_.load() && !p->failed.load()) {
        post(kRingClose, p->id, static_cast<uint32_t>(dir), static_cast<double>(p->bytes[dir].load()), std::string());
        RelayEvent e{RelayEvent::kEnd};
        e.id = p->id;
        e.dir = static_cast<uint32_t>(dir);
        emit(std::move(e));
      }
      // Half-close: the other side sees the end, and may still answer.
      shutdown(to, SHUT_WR);
      break;
    }
    size_t off = 0;
    bool ok = true;
    while (off < static_cast<size_t>(n)) {
      ssize_t w = send(to, buf.data() + off, static_cast<size_t>(n) - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(p, static_cast<uint32_t>(1 - dir), "write " + errno_name(errno));
        ok = false;
        break;
      }
      off += static_cast<size_t>(w);
    }
    if (!ok) break;
    uint64_t before = p->bytes[dir].fetch_add(static_cast<uint64_t>(n));
    forwarded_[dir].fetch_add(static_cast<uint64_t>(n));
    data(p, dir, buf.data(), static_cast<size_t>(n), t, before);
  }
  finish_direction(p);
}

void Relay::finish_direction(Pair* p) {
  if (p->running.fetch_sub(1) != 1) return;
  RelayEvent e{RelayEvent::kClosed};
  e.id = p->id;
  e.bytes[0] = static_cast<double>(p->bytes[0].load());
  e.bytes[1] = static_cast<double>(p->bytes[1].load());
  {
    std::lock_guard<std::mutex> lock(pairs_mu_);
    close(p->fd[0]);
    close(p->fd[1]);
    p->fd[0] = p->fd[1] = -1;
  }
  if (!stopping_.load()) emit(std::move(e));
}

void Relay::stop() {
  stopping_.store(true);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(pairs_mu_);
    for (auto& p : pairs_) {
      if (p->fd[0] >= 0) shutdown(p->fd[0], SHUT_RDWR);
      if (p->fd[1] >= 0) shutdown(p->fd[1], SHUT_RDWR);
      for (auto& th : p->thread) {
        if (th.joinable()) threads.push_back(std::move(th));
      }
    }
  }
  for (auto& th : threads) th.join();
  std::lock_guard<std::mutex> lock(pairs_mu_);
  pairs_.clear();
}

}  // namespace pc
