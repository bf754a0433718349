// The vCPU workers' JavaScript face: start, the done notification, stop and reports.
#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "host.h"
#include "js_util.h"
#include "refusal.h"

namespace pc {

namespace {
constexpr size_t kPage = 4096;  // vCPU regions are whole target pages
}  // namespace

// --- vCPU workers ----------------------------------------------------------------

Napi::Value Host::StartVcpus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  require_open("startVcpus");
  if (!info[0].IsObject()) throw Refusal("startVcpus", "the vCPU configuration must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  VcpuConfig c;
  std::string pattern = o.Has("pattern") ? o.Get("pattern").ToString().Utf8Value() : "sequential-increment";
  c.pattern = parse_pattern(pattern);
  c.read_only = is_read_pattern(pattern);
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

}  // namespace pc
