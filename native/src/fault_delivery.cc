// Fault delivery: from the reader thread through a thread-safe function (mode 'thread'),
// or read by the JavaScript thread itself from the event loop (mode 'loop'); and the
// handling of ranges the guest removed.
#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "host.h"
#include "js_util.h"
#include "refusal.h"

namespace pc {

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

size_t Host::drain_loop(bool from_js) {
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  size_t delivered = 0;
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
      if (!from_js && got < 0 && errno == EAGAIN && spin_ns_ > 0 && monotonic_ns() - last < spin_ns_) continue;
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
    delivered += faults.size();
    if (from_js) {
      // A JavaScript frame is below: a listener's exception propagates to it.
      deliver_js(env, faults, removed, loop_on_faults_.Value(), loop_on_removed_, nullptr);
      continue;
    }
    try {
      deliver_js(env, faults, removed, loop_on_faults_.Value(), loop_on_removed_, *async_);
    } catch (const Napi::Error& e) {
      // No JavaScript frame to throw into: report it as an uncaught exception.
      napi_fatal_exception(env_, e.Value());
      return delivered;
    }
  }
  return delivered;
}

// takeFaults(): the faults read so far but not yet handed over, delivered now to the
// listener, synchronously. A JavaScript thread busy with a long run of stream input calls
// it between pages, so a fault is decided (requested, or found received) within a page's
// time of its read instead of after the whole run, as QEMU's own fault thread would.
// Order is kept: this and the queued thread-safe call both take the oldest faults first.
Napi::Value Host::TakeFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_ || uffd_ < 0) return Napi::Number::New(env, 0);
  if (loop_mode_) return Napi::Number::New(env, static_cast<double>(drain_loop(true)));
  if (channel_ == nullptr) return Napi::Number::New(env, 0);
  std::vector<Fault> faults;
  std::vector<std::pair<uint64_t, uint64_t>> removed;
  channel_->take(faults, removed, false);
  deliver_js(env, faults, removed, thread_on_faults_.Value(), channel_->on_removed, nullptr);
  return Napi::Number::New(env, static_cast<double>(faults.size()));
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
  ch->take(faults, removed, true);
  try {
    deliver_js(env, faults, removed, callback, ch->on_removed, nullptr);
  } catch (const Napi::Error& e) {
    // A listener that throws: surface it as an uncaught exception, as for any callback.
    e.ThrowAsJavaScriptException();
  }
}

}  // namespace pc
