#include "host.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "js_util.h"
#include "refusal.h"

namespace pc {

namespace {

constexpr size_t kPage = 4096;

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Napi::Function Host::Init(Napi::Env env) {
  return DefineClass(env, "UffdHost",
                     {
                         InstanceMethod<&Host::HostAddress>("hostAddress"),
                         InstanceMethod<&Host::Listen>("listen"),
                         InstanceMethod<&Host::Register>("register"),
                         InstanceMethod<&Host::Unregister>("unregister"),
                         InstanceMethod<&Host::Discard>("discard"),
                         InstanceMethod<&Host::RemoveAsGuest>("removeAsGuest"),
                         InstanceMethod<&Host::SetHugePages>("setHugePages"),
                         InstanceMethod<&Host::Copy>("copy"),
                         InstanceMethod<&Host::Write>("write"),
                         InstanceMethod<&Host::Resize>("resize"),
                         InstanceMethod<&Host::Zero>("zero"),
                         InstanceMethod<&Host::Wake>("wake"),
                         InstanceMethod<&Host::Read>("read"),
                         InstanceMethod<&Host::CopyLoop>("copyLoop"),
                         InstanceMethod<&Host::PlaceRun>("placeRun"),
                         InstanceMethod<&Host::StartVcpus>("startVcpus"),
                         InstanceMethod<&Host::StopVcpus>("stopVcpus"),
                         InstanceMethod<&Host::VcpuReports>("vcpuReports"),
                         InstanceMethod<&Host::Status>("status"),
                         InstanceMethod<&Host::Close>("close"),
                         InstanceMethod<&Host::StopListening>("stopListening"),
                         InstanceMethod<&Host::TakeFaults>("takeFaults"),
                     });
}

namespace {
// At environment teardown (process exit, worker exit) a Host that was never closed is
// torn down here, before the threads it owns could call into a dead environment.
void cleanup_hook(void* self) { static_cast<Host*>(self)->close_all(); }
}  // namespace

Host::Host(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Host>(info), env_(info.Env()) {
  GUARD_BEGIN
  memory_ = std::make_unique<GuestMemory>(parse_layouts(info[0], "new UffdHost"));
  napi_add_env_cleanup_hook(env_, cleanup_hook, this);
  GUARD_END(info.Env())
}

Host::~Host() {
  close_all();
  if (memory_) napi_remove_env_cleanup_hook(env_, cleanup_hook, this);
}

void Host::require_open(const char* op) {
  if (closed_) throw Refusal(op, "the backend is closed");
}

// --- listening -------------------------------------------------------------------

Napi::Value Host::Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  require_open("listen");
  if (uffd_ >= 0) throw Refusal("listen", "already listening: the userfault fd is open");
  if (!info[0].IsFunction()) throw Refusal("listen", "the fault listener must be a function");
  ReaderOptions options;
  bool loop_mode = false;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    options.spin_ns = static_cast<int64_t>(number_or(o, "spinUs", 0) * 1000);
    options.cpus = int_list(o, "cpus");
    if (o.Has("mode") && !o.Get("mode").IsUndefined()) {
      std::string mode = o.Get("mode").ToString().Utf8Value();
      if (mode != "thread" && mode != "loop") throw Refusal("listen", "reader mode must be 'thread' or 'loop', not '" + mode + "'");
      loop_mode = mode == "loop";
    }
  }

  // Ask what is offered on a throwaway fd (one handshake per fd), then open the real one
  // asking for what we need: THREAD_ID for blocktime, EVENT_REMOVE to learn of removed
  // ranges, MISSING_HUGETLBFS when there are hugetlbfs blocks.
  UffdOpen probe_fd = open_userfaultfd();
  if (probe_fd.fd < 0) throw Refusal("listen", "cannot open a userfault fd: " + probe_fd.refusal);
  UffdApi offered;
  int err = uffd_api(probe_fd.fd, 0, &offered);
  close(probe_fd.fd);
  if (err) throw Refusal("listen", "UFFDIO_API handshake failed", errno_name(err));
  bool any_hugetlbfs = false;
  for (size_t i = 0; i < memory_->count(); i++) any_hugetlbfs |= memory_->at(i).layout.hugetlbfs;
  if (any_hugetlbfs && !(offered.features & UFFD_FEATURE_MISSING_HUGETLBFS)) {
    throw Refusal("listen", "hugetlbfs blocks need MISSING_HUGETLBFS, which this kernel does not offer");
  }
  uint64_t wanted = (UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EVENT_REMOVE |
                     (any_hugetlbfs ? UFFD_FEATURE_MISSING_HUGETLBFS : 0)) & offered.features;
  UffdOpen o = open_userfaultfd();
  if (o.fd < 0) throw Refusal("listen", "cannot open a userfault fd: " + o.refusal);
  err = uffd_api(o.fd, wanted, &api_);
  if (err) {
    close(o.fd);
    throw Refusal("listen", "UFFDIO_API handshake asking for " + feature_names(wanted) + " failed", errno_name(err));
  }
  api_.features = wanted;  // the kernel answers with everything it supports; keep what we asked for
  uffd_ = o.fd;
  uffd_how_ = o.how;

  if (loop_mode) {
    // The JavaScript thread's own event loop watches the fd: one wake-up per fault burst
    // and no thread hop. The poll handle keeps the process alive, like a socket.
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    if (!loop || uv_poll_init(loop, poll_, uffd_) != 0 || uv_poll_start(poll_, UV_READABLE, &Host::on_poll) != 0) {
      delete poll_;
      poll_ = nullptr;
      close(uffd_);
      uffd_ = -1;
      throw Refusal("listen", "cannot watch the userfault fd from the event loop");
    }
    loop_mode_ = true;
    spin_ns_ = options.spin_ns;
    loop_on_faults_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (info.Length() > 1 && info[1].IsFunction()) loop_on_removed_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(env, "uffd-faults");
    return env.Undefined();
  }
  channel_ = new FaultChannel();
  thread_on_faults_ = Napi::Persistent(info[0].As<Napi::Function>());
  if (info.Length() > 1 && info[1].IsFunction()) channel_->on_removed = Napi::Persistent(info[1].As<Napi::Function>());
  fault_tsfn_ = Napi::TypedThreadSafeFunction<FaultChannel, void, call_faults_js>::New(
      env, info[0].As<Napi::Function>(), "uffd-faults", 0, 1, channel_,
      [](Napi::Env, void*, FaultChannel* ch) { delete ch; });
  // Like a listening socket, a listening backend keeps the process alive until close():
  // faults and removal notices may still arrive.
  try {
    reader_.start(uffd_, this, options);
  } catch (...) {
    fault_tsfn_.Release();
    channel_ = nullptr;
    thread_on_faults_.Reset();
    close(uffd_);
    uffd_ = -1;
    throw;
  }
  GUARD_END(env)
  return env.Undefined();
}

// --- registration ----------------------------------------------------------------

Napi::Value Host::Register(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "register");
  if (uffd_ < 0) throw Refusal("register", "listen() first: it opens the userfault fd and starts the fault reader");
  uint64_t ioctls = 0;
  int err = uffd_register_missing(uffd_, b.base, b.layout.length, &ioctls);
  if (err) throw Refusal("register", "UFFDIO_REGISTER of block '" + b.layout.name + "' failed", errno_name(err));
  uint64_t need = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_WAKE) | (b.layout.hugetlbfs ? 0 : (1ULL << _UFFDIO_ZEROPAGE));
  if ((ioctls & need) != need) {
    uffd_unregister(uffd_, b.base, b.layout.length);
    throw Refusal("register", "block '" + b.layout.name + "' registered without the placement ioctls it needs");
  }
  memory_->clear_removed(b);
  b.registered.store(true);
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

Napi::Value Host::Unregister(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "unregister");
  if (b.registered.load()) {
    int err = uffd_unregister(uffd_, b.base, b.layout.length);
    if (err) throw Refusal("unregister", "UFFDIO_UNREGISTER of block '" + b.layout.name + "' failed", errno_name(err));
    b.registered.store(false);
    memory_->clear_removed(b);
  }
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

// --- discard and huge pages ------------------------------------------------------

void Host::drop(Block& b, size_t off, size_t len, bool own) {
  const char* op = own ? "discard" : "removeAsGuest";
  uint64_t start = b.base + off;
  if (loop_mode_ && b.registered.load()) {
    // In loop mode this thread is the one that must read the REMOVE event a madvise of a
    // registered range waits for: it would wait for itself. So a discard takes the range
    // out of the userfault fd around the madvise instead (no event), and the guest's
    // removals can only come from other threads.
    if (!own) throw Refusal(op, "removeAsGuest from the JavaScript thread needs the reader thread (mode 'thread')");
    int err = uffd_unregister(uffd_, start, len);
    if (err) throw Refusal(op, "UFFDIO_UNREGISTER before the discard failed", errno_name(err));
    int rc = madvise(reinterpret_cast<void*>(start), len, MADV_DONTNEED);
    int merr = rc ? errno : 0;
    err = uffd_register_missing(uffd_, start, len, nullptr);
    memory_->forget_removed(b, off, len);
    if (merr) throw Refusal(op, "madvise(MADV_DONTNEED) of block '" + b.layout.name + "' failed", errno_name(merr));
    if (err) throw Refusal(op, "UFFDIO_REGISTER after the discard failed", errno_name(err));
    return;
  }
  if (own) {
    own_start_.store(start);
    own_end_.store(start + len);
    own_active_.store(true);
  }
  int rc = madvise(reinterpret_cast<void*>(start), len, MADV_DONTNEED);
  int err = rc ? errno : 0;
  // madvise on a registered range returns once the reader has read its REMOVE events;
  // wait until they are classified too, so the range is settled when we return.
  reader_.wait_reads_processed();
  if (own) own_active_.store(false);
  if (err) throw Refusal(op, "madvise(MADV_DONTNEED) of block '" + b.layout.name + "' " + hex(off) + "+" + hex(len) + " failed", errno_name(err));
}

Napi::Value Host::Discard(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "discard");
  double off = number_arg(info, 1), len = number_arg(info, 2);
  memory_->check_pages(b, off, len, "discard");
  drop(b, static_cast<size_t>(off), static_cast<size_t>(len), true);
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

Napi::Value Host::RemoveAsGuest(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "removeAsGuest");
  double off = number_arg(info, 1), len = number_arg(info, 2);
  memory_->check_pages(b, off, len, "removeAsGuest");
  drop(b, static_cast<size_t>(off), static_cast<size_t>(len), false);
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

Napi::Value Host::SetHugePages(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "setHugePages");
  bool enable = info[1].ToBoolean().Value();
  // hugetlbfs pages are huge by construction; only THP can be turned off and on.
  if (!b.layout.hugetlbfs) {
    if (madvise(reinterpret_cast<void*>(b.base), b.layout.max_length, enable ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
      throw Refusal("setHugePages", std::string("madvise(") + (enable ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE") + ") of block '" +
                                        b.layout.name + "' failed", errno_name(errno));
    }
    b.huge_pages_enabled = enable;
  }
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

// --- reading ---------------------------------------------------------------------

Napi::Value Host::Read(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "read");
  double offd = number_arg(info, 1), lend = number_arg(info, 2);
  memory_->check_bytes(b, offd, lend, "read");
  size_t off = static_cast<size_t>(offd), len = static_cast<size_t>(lend);
  if (len == 0) return Napi::Buffer<uint8_t>::New(info.Env(), 0);
  if (b.registered.load()) {
    // A missing page in a registered range would block this (the JavaScript) thread
    // until placed: check residency with mincore(2) and refuse instead.
    size_t first = off & ~(kPage - 1), end = (off + len + kPage - 1) & ~(kPage - 1);
    std::vector<unsigned char> vec((end - first) / kPage);
    if (mincore(reinterpret_cast<void*>(b.base + first), end - first, vec.data()) != 0) {
      throw Refusal("read", "mincore of block '" + b.layout.name + "' failed", errno_name(errno));
    }
    for (size_t i = 0; i < vec.size(); i++) {
      size_t page_off = first + i * kPage;
      if (!(vec[i] & 1) && !memory_->is_removed(b, page_off, kPage)) {
        throw Refusal("read", "block '" + b.layout.name + "': page at offset " + hex(page_off) +
                                  " is missing and the block is registered; reading it would block until it is placed "
                                  "(place it, or unregister the block first)");
      }
    }
  }
  return Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t*>(b.base + off), len);
  GUARD_END(info.Env())
}

Napi::Value Host::HostAddress(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  Block& b = memory_->block(number_arg(info, 0), "hostAddress");
  return Napi::Number::New(info.Env(), static_cast<double>(b.base));
  GUARD_END(info.Env())
}

// --- status and teardown ---------------------------------------------------------

Napi::Value Host::Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("closed", closed_);
  o.Set("fd", uffd_);
  o.Set("openedWith", uffd_how_);
  o.Set("eventFd", reader_.event_fd());
  o.Set("readerRunning", reader_.running());
  o.Set("mode", loop_mode_ ? "loop" : "thread");
  o.Set("readerTid", reader_.tid());
  o.Set("readerFailure", reader_.running() ? std::string() : reader_.failure());
  o.Set("features", uffd_ >= 0 ? feature_names(api_.features) : std::string());
  o.Set("vcpusActive", vcpus_.active());
  Napi::Array registered = Napi::Array::New(env);
  Napi::Array removed = Napi::Array::New(env);
  if (!closed_) {
    for (size_t i = 0; i < memory_->count(); i++) {
      Block& b = memory_->at(i);
      registered.Set(static_cast<uint32_t>(i), b.registered.load());
      Napi::Array ranges = Napi::Array::New(env);
      std::lock_guard<std::mutex> lock(memory_->mu);
      for (size_t k = 0; k < b.removed.size(); k++) {
        Napi::Array r = Napi::Array::New(env, 2);
        r.Set(0u, static_cast<double>(b.removed[k].first));
        r.Set(1u, static_cast<double>(b.removed[k].second - b.removed[k].first));
        ranges.Set(static_cast<uint32_t>(k), r);
      }
      removed.Set(static_cast<uint32_t>(i), ranges);
    }
  }
  o.Set("registered", registered);
  o.Set("removed", removed);
  Napi::Object s = Napi::Object::New(env);
  s.Set("faults", static_cast<double>(stats_.faults.load()));
  s.Set("guestRemoves", static_cast<double>(stats_.guest_removes.load()));
  s.Set("ownRemoves", static_cast<double>(stats_.own_removes.load()));
  s.Set("alreadyPresent", static_cast<double>(stats_.already_present.load()));
  s.Set("retries", static_cast<double>(stats_.retries.load()));
  s.Set("dropped", static_cast<double>(stats_.dropped.load()));
  s.Set("unknownEvents", static_cast<double>(reader_.unknown_events()));
  o.Set("stats", s);
  return o;
}

Napi::Value Host::Close(const Napi::CallbackInfo& info) {
  close_all();
  return info.Env().Undefined();
}

void Host::close_all() {
  if (closed_ || !memory_) return;
  closed_ = true;
  // Unregister first: waiting vCPUs are woken and their faults resolve (zero pages), so
  // nothing can block any more; then the vCPUs stop after their current access and are
  // joined; then the reader and the userfault fd go; then the memory.
  unregister_all();
  vcpus_.stop(-1);
  if (done_tsfn_held_.exchange(false)) done_tsfn_.Release();
  stop_reader_and_close_uffd();
  memory_->release();
}

void Host::unregister_all() {
  if (uffd_ < 0) return;
  for (size_t i = 0; i < memory_->count(); i++) {
    Block& b = memory_->at(i);
    if (b.registered.exchange(false)) uffd_unregister(uffd_, b.base, b.layout.length);
  }
}

void Host::stop_reader_and_close_uffd() {
  // The reader: quit eventfd, join, close the eventfd.
  reader_.stop();
  if (poll_) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
    loop_on_faults_.Reset();
    loop_on_removed_.Reset();
    async_.reset();
  }
  if (channel_) {
    fault_tsfn_.Release();
    channel_ = nullptr;
    thread_on_faults_.Reset();
  }
  if (uffd_ >= 0) {
    close(uffd_);
    uffd_ = -1;
  }
}

// The end of postcopy (reference section 6): every block unregistered, the fault reader
// stopped and joined, the userfault fd closed. Guest memory and the vCPUs carry on: the
// guest keeps running on the destination.
Napi::Value Host::StopListening(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  if (!closed_ && memory_) {
    unregister_all();
    stop_reader_and_close_uffd();
  }
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

}  // namespace pc
