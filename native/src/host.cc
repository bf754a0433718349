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

constexpr int kPlaced = 0, kAlreadyPresent = 1, kRetry = 2;  // PlaceOutcome in backend.ts
constexpr size_t kPage = 4096;

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The bytes of a TypedArray or Buffer argument.
void typed_bytes(const Napi::Value& v, const char* op, uint8_t** data, size_t* len) {
  if (!v.IsTypedArray()) throw Refusal(op, "the source must be a Uint8Array or Buffer");
  napi_typedarray_type type;
  size_t count;
  void* ptr;
  napi_value ab;
  size_t byte_offset;
  napi_get_typedarray_info(v.Env(), v, &type, &count, &ptr, &ab, &byte_offset);
  size_t elem = type == napi_uint8_array || type == napi_int8_array || type == napi_uint8_clamped_array ? 1
                : type == napi_int16_array || type == napi_uint16_array                                  ? 2
                : type == napi_float64_array || type == napi_bigint64_array || type == napi_biguint64_array ? 8
                                                                                                       : 4;
  *data = static_cast<uint8_t*>(ptr);
  *len = count * elem;
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
                         InstanceMethod<&Host::Zero>("zero"),
                         InstanceMethod<&Host::Wake>("wake"),
                         InstanceMethod<&Host::Read>("read"),
                         InstanceMethod<&Host::CopyLoop>("copyLoop"),
                         InstanceMethod<&Host::StartVcpus>("startVcpus"),
                         InstanceMethod<&Host::StopVcpus>("stopVcpus"),
                         InstanceMethod<&Host::VcpuReports>("vcpuReports"),
                         InstanceMethod<&Host::Status>("status"),
                         InstanceMethod<&Host::Close>("close"),
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
    close(uffd_);
    uffd_ = -1;
    throw;
  }
  GUARD_END(env)
  return env.Undefined();
}

void Host::faults(const Fault* f, size_t n) {
  stats_.faults.fetch_add(n, std::memory_order_relaxed);
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(channel_->mu);
    channel_->faults.insert(channel_->faults.end(), f, f + n);
    if (!channel_->posted) post = channel_->posted = true;
  }
  if (post) fault_tsfn_.NonBlockingCall();
}

void Host::removed(uint64_t start, uint64_t end) {
  if (own_active_.load() && start >= own_start_.load() && end <= own_end_.load()) {
    stats_.own_removes.fetch_add(1);
    return;
  }
  unregister_removed(start, end);
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(channel_->mu);
    channel_->removed.emplace_back(start, end);
    if (!channel_->posted) post = channel_->posted = true;
  }
  if (post) fault_tsfn_.NonBlockingCall();
}

void Host::unregister_removed(uint64_t start, uint64_t end) {
  // The guest (someone other than discard()) removed the range: unregister it and drop
  // it, as Firecracker and CRIU do. Its pages are never requested; reads see zeros.
  stats_.guest_removes.fetch_add(1);
  size_t index, off;
  if (memory_->locate(start, &index, &off)) {
    Block& b = memory_->at(index);
    uffd_unregister(uffd_, start, end - start);
    memory_->add_removed(b, off, end - start);
  }
}

void Host::on_poll(uv_poll_t* handle, int status, int) {
  Host* self = static_cast<Host*>(handle->data);
  if (status < 0 || self == nullptr || self->closed_) return;
  self->drain_loop();
}

void Host::drain_loop() {
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  struct uffd_msg msgs[64];
  std::vector<Fault> faults;
  std::vector<std::pair<uint64_t, uint64_t>> removed;
  int64_t last = monotonic_ns();
  while (!closed_) {
    ssize_t got = read(uffd_, msgs, sizeof msgs);
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      // Spin-then-poll: keep reading for a while after the last message (this holds
      // the event loop), then return to it.
      if (got < 0 && errno == EAGAIN && spin_ns_ > 0 && monotonic_ns() - last < spin_ns_) continue;
      break;
    }
    int64_t now = monotonic_ns();
    last = now;
    faults.clear();
    removed.clear();
    size_t n = static_cast<size_t>(got) / sizeof(struct uffd_msg);
    for (size_t i = 0; i < n; i++) {
      const struct uffd_msg& m = msgs[i];
      if (m.event == UFFD_EVENT_PAGEFAULT) {
        faults.push_back({m.arg.pagefault.address, static_cast<int32_t>(m.arg.pagefault.feat.ptid), now});
      } else if (m.event == UFFD_EVENT_REMOVE) {
        unregister_removed(m.arg.remove.start, m.arg.remove.end);
        removed.emplace_back(m.arg.remove.start, m.arg.remove.end);
      }
    }
    stats_.faults.fetch_add(faults.size(), std::memory_order_relaxed);
    try {
      deliver_js(env, faults, removed, loop_on_faults_.Value(), loop_on_removed_, *async_);
    } catch (const Napi::Error& e) {
      // No JavaScript frame to throw into: report it as an uncaught exception.
      napi_fatal_exception(env_, e.Value());
      return;
    }
  }
}

void deliver_js(Napi::Env env, const std::vector<Fault>& faults, const std::vector<std::pair<uint64_t, uint64_t>>& removed,
                const Napi::Function& on_faults, const Napi::FunctionReference& on_removed, napi_async_context async) {
  if (!faults.empty()) {
    // One ArrayBuffer for the three columns: [addresses f64 | timesNs f64 | tids i32].
    size_t n = faults.size();
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, n * 20);
    Napi::Float64Array addresses = Napi::Float64Array::New(env, n, ab, 0);
    Napi::Float64Array times = Napi::Float64Array::New(env, n, ab, n * 8);
    Napi::Int32Array tids = Napi::Int32Array::New(env, n, ab, n * 16);
    double* a = addresses.Data();
    double* s = times.Data();
    int32_t* t = tids.Data();
    for (size_t i = 0; i < n; i++) {
      a[i] = static_cast<double>(faults[i].address);
      t[i] = faults[i].tid;
      s[i] = static_cast<double>(faults[i].time_ns);
    }
    Napi::Object batch = Napi::Object::New(env);
    batch.Set("count", Napi::Number::New(env, static_cast<double>(n)));
    batch.Set("addresses", addresses);
    batch.Set("tids", tids);
    batch.Set("timesNs", times);
    if (async) on_faults.MakeCallback(env.Global(), {batch}, async);
    else on_faults.Call({batch});
  }
  if (!removed.empty() && !on_removed.IsEmpty()) {
    Napi::Array list = Napi::Array::New(env, removed.size());
    for (size_t i = 0; i < removed.size(); i++) {
      Napi::Object r = Napi::Object::New(env);
      r.Set("address", Napi::Number::New(env, static_cast<double>(removed[i].first)));
      r.Set("length", Napi::Number::New(env, static_cast<double>(removed[i].second - removed[i].first)));
      list.Set(static_cast<uint32_t>(i), r);
    }
    if (async) on_removed.Value().MakeCallback(env.Global(), {list}, async);
    else on_removed.Call({list});
  }
}

void call_faults_js(Napi::Env env, Napi::Function callback, FaultChannel* ch, void*) {
  if (env == nullptr || ch == nullptr) return;
  std::vector<Fault> faults;
  std::vector<std::pair<uint64_t, uint64_t>> removed;
  {
    std::lock_guard<std::mutex> lock(ch->mu);
    faults.swap(ch->faults);
    removed.swap(ch->removed);
    ch->posted = false;
  }
  try {
    deliver_js(env, faults, removed, callback, ch->on_removed, nullptr);
  } catch (const Napi::Error& e) {
    // A listener that throws: surface it as an uncaught exception, as for any callback.
    e.ThrowAsJavaScriptException();
  }
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

// --- placement -------------------------------------------------------------------

int Host::place(Block& b, size_t off, const uint8_t* src, size_t len, bool zero, const char* op) {
  uintptr_t dst = b.base + off;
  if (!b.registered.load(std::memory_order_relaxed)) {
    // Not registered (before LISTEN, or after cleanup): nothing can wait on these pages,
    // so a plain write is as good as an atomic placement.
    if (zero) memset(reinterpret_cast<void*>(dst), 0, len);
    else memcpy(reinterpret_cast<void*>(dst), src, len);
    return kPlaced;
  }
  bool zeropage = zero && !b.layout.hugetlbfs;
  if (zero && !zeropage) src = static_cast<const uint8_t*>(zero_source(len));
  size_t step = b.kernel_page, pos = 0;
  bool placed = false;
  while (pos < len) {
    size_t done = 0;
    int err = zeropage ? uffd_zeropage(uffd_, dst + pos, len - pos, &done)
                       : uffd_copy(uffd_, dst + pos, src + pos, len - pos, &done);
    if (err == 0) {
      placed = true;
      break;
    }
    if (done) placed = true;
    pos += done;
    if (err == EAGAIN) {
      if (done) continue;  // the kernel stopped part way: go on from there
      stats_.retries.fetch_add(1, std::memory_order_relaxed);
      return kRetry;
    }
    if (err == EEXIST) {
      // Already there (placed before, or by a racing placement): wake whoever waits.
      stats_.already_present.fetch_add(1, std::memory_order_relaxed);
      uffd_wake(uffd_, dst + pos, step);
      pos += step;
      continue;
    }
    if (err == ENOENT && memory_->is_removed(b, off + pos, step)) {
      // The guest removed this range: it is unregistered and dropped, not filled.
      stats_.dropped.fetch_add(1, std::memory_order_relaxed);
      pos += step;
      continue;
    }
    throw Refusal(op, std::string(zeropage ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY") + " of block '" + b.layout.name + "' at " +
                          hex(off + pos) + " failed", errno_name(err));
  }
  return placed ? kPlaced : kAlreadyPresent;
}

Napi::Value Host::Copy(const Napi::CallbackInfo& info) {
  int outcome = 0;
  GUARD_BEGIN
  require_open("copy");
  Block& b = memory_->block(number_arg(info, 0), "copy");
  double off = number_arg(info, 1), data_off = number_arg(info, 3), len = number_arg(info, 4);
  memory_->check_pages(b, off, len, "copy");
  uint8_t* data;
  size_t data_len;
  typed_bytes(info[2], "copy", &data, &data_len);
  if (!(data_off >= 0) || data_off != static_cast<double>(static_cast<size_t>(data_off)) || data_off > data_len ||
      len > data_len - data_off) {
    throw Refusal("copy", "source range " + std::to_string(data_off) + "+" + std::to_string(len) + " is outside the " +
                              std::to_string(data_len) + "-byte source");
  }
  outcome = place(b, static_cast<size_t>(off), data + static_cast<size_t>(data_off), static_cast<size_t>(len), false, "copy");
  GUARD_END(info.Env())
  return Napi::Number::New(info.Env(), outcome);
}

Napi::Value Host::Zero(const Napi::CallbackInfo& info) {
  int outcome = 0;
  GUARD_BEGIN
  require_open("zero");
  Block& b = memory_->block(number_arg(info, 0), "zero");
  double off = number_arg(info, 1), len = number_arg(info, 2);
  memory_->check_pages(b, off, len, "zero");
  outcome = place(b, static_cast<size_t>(off), nullptr, static_cast<size_t>(len), true, "zero");
  GUARD_END(info.Env())
  return Napi::Number::New(info.Env(), outcome);
}

Napi::Value Host::Wake(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  require_open("wake");
  Block& b = memory_->block(number_arg(info, 0), "wake");
  double off = number_arg(info, 1), len = number_arg(info, 2);
  memory_->check_pages(b, off, len, "wake");
  if (b.registered.load()) {
    int err = uffd_wake(uffd_, b.base + static_cast<size_t>(off), static_cast<size_t>(len));
    if (err) throw Refusal("wake", "UFFDIO_WAKE of block '" + b.layout.name + "' failed", errno_name(err));
  }
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

Napi::Value Host::CopyLoop(const Napi::CallbackInfo& info) {
  int64_t elapsed = 0;
  double placed = 0;
  GUARD_BEGIN
  require_open("copyLoop");
  Block& b = memory_->block(number_arg(info, 0), "copyLoop");
  double off = number_arg(info, 1), count = number_arg(info, 2);
  size_t ps = b.layout.page_size;
  memory_->check_pages(b, off, count * static_cast<double>(ps), "copyLoop");
  uint8_t* data;
  size_t data_len;
  typed_bytes(info[3], "copyLoop", &data, &data_len);
  if (data_len < ps) throw Refusal("copyLoop", "the source must hold one host page");
  int64_t t0 = monotonic_ns();
  for (size_t i = 0; i < static_cast<size_t>(count); i++) {
    if (place(b, static_cast<size_t>(off) + i * ps, data, ps, false, "copyLoop") == kPlaced) placed++;
  }
  elapsed = monotonic_ns() - t0;
  GUARD_END(info.Env())
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("ns", Napi::Number::New(info.Env(), static_cast<double>(elapsed)));
  r.Set("placed", Napi::Number::New(info.Env(), placed));
  return r;
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

// --- vCPU workers ----------------------------------------------------------------

Napi::Value Host::StartVcpus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  require_open("startVcpus");
  if (!info[0].IsObject()) throw Refusal("startVcpus", "the vCPU configuration must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  VcpuConfig c;
  c.pattern = parse_pattern(o.Has("pattern") ? o.Get("pattern").ToString().Utf8Value() : "sequential-increment");
  c.vcpus = static_cast<int>(number_or(o, "vcpus", 1));
  c.seed = static_cast<uint64_t>(number_or(o, "seed", 1));
  Block& b = memory_->block(number_or(o, "block", 0), "startVcpus");
  double off = number_or(o, "offset", 0), len = number_or(o, "length", static_cast<double>(b.layout.length) - off);
  memory_->check_bytes(b, off, len, "startVcpus");
  if (static_cast<size_t>(off) % kPage || static_cast<size_t>(len) % kPage || len == 0) {
    throw Refusal("startVcpus", "the vCPU region must be a non-empty run of whole 4 KiB pages");
  }
  c.base = reinterpret_cast<uint8_t*>(b.base + static_cast<size_t>(off));
  c.length = static_cast<size_t>(len);
  c.passes = static_cast<uint32_t>(number_or(o, "passes", 1));
  c.iterations = static_cast<uint64_t>(number_or(o, "iterations", 0));
  c.duration_ms = number_or(o, "durationMs", 0);
  c.hot_pages = static_cast<uint32_t>(number_or(o, "hotSetPages", 64));
  c.hot_fraction = number_or(o, "hotFraction", 0.9);
  c.cpus = int_list(o, "cpus");
  c.latency_samples = static_cast<uint32_t>(number_or(o, "latencySamples", 0));

  std::function<void()> on_done;
  if (info.Length() > 1 && info[1].IsFunction()) {
    DoneChannel* ch = new DoneChannel{this, Napi::Persistent(Value())};
    done_tsfn_ = Napi::TypedThreadSafeFunction<DoneChannel, void, call_done_js>::New(
        env, info[1].As<Napi::Function>(), "vcpus-done", 0, 1, ch, [](Napi::Env, void*, DoneChannel* c) { delete c; });
    done_tsfn_held_ = true;
    on_done = [this] {
      if (done_tsfn_held_.exchange(false)) {
        done_tsfn_.NonBlockingCall();
        done_tsfn_.Release();
      }
    };
  }
  std::vector<pid_t> tids;
  try {
    tids = vcpus_.start(c, on_done);
  } catch (...) {
    if (done_tsfn_held_.exchange(false)) done_tsfn_.Release();
    throw;
  }
  Napi::Array out = Napi::Array::New(env, tids.size());
  for (size_t i = 0; i < tids.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, tids[i]));
  return out;
  GUARD_END(env)
}

void call_done_js(Napi::Env env, Napi::Function callback, DoneChannel* ch, void*) {
  if (env == nullptr || ch == nullptr) return;
  ch->host->vcpus().join_if_finished();
  Napi::Value reports = ch->host->reports_js(env);
  ch->keep_alive.Reset();
  try {
    callback.Call({reports});
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  }
}

Napi::Value Host::reports_js(Napi::Env env) {
  std::vector<VcpuReport> reports = vcpus_.reports();
  Napi::Array out = Napi::Array::New(env, reports.size());
  for (size_t i = 0; i < reports.size(); i++) {
    const VcpuReport& r = reports[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", r.index);
    o.Set("tid", r.tid);
    o.Set("finished", r.finished);
    o.Set("accesses", static_cast<double>(r.accesses));
    o.Set("faults", static_cast<double>(r.faults));
    o.Set("elapsedNs", static_cast<double>(r.elapsed_ns));
    o.Set("blockedAt", static_cast<double>(r.blocked_at));
    Napi::Float64Array lat = Napi::Float64Array::New(env, r.latencies_ns.size());
    if (!r.latencies_ns.empty()) memcpy(lat.Data(), r.latencies_ns.data(), r.latencies_ns.size() * sizeof(double));
    o.Set("latenciesNs", lat);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value Host::StopVcpus(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  double timeout = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 1000;
  if (!vcpus_.stop(static_cast<int64_t>(timeout))) {
    throw Refusal("stopVcpus", "vCPUs still blocked on missing pages after " + std::to_string(static_cast<int64_t>(timeout)) +
                                   " ms: " + vcpus_.blocked_description() +
                                   "; place their pages (or unregister the block) and stop again");
  }
  return reports_js(info.Env());
  GUARD_END(info.Env())
}

Napi::Value Host::VcpuReports(const Napi::CallbackInfo& info) { return reports_js(info.Env()); }

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
  // 1. Unregister: waiting vCPUs are woken and their faults resolve (zero pages), so
  //    nothing can block any more.
  if (uffd_ >= 0) {
    for (size_t i = 0; i < memory_->count(); i++) {
      Block& b = memory_->at(i);
      if (b.registered.exchange(false)) uffd_unregister(uffd_, b.base, b.layout.length);
    }
  }
  // 2. vCPUs stop after their current access and are joined.
  vcpus_.stop(-1);
  if (done_tsfn_held_.exchange(false)) done_tsfn_.Release();
  // 3. The reader: quit eventfd, join, close the eventfd.
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
  }
  // 4. The userfault fd, then the memory.
  if (uffd_ >= 0) {
    close(uffd_);
    uffd_ = -1;
  }
  memory_->release();
}

}  // namespace pc
