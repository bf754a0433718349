// postcopy_native: the userfaultfd backend's native half (see src/io/native.ts).
#include <napi.h>
#include <sched.h>
#include <unistd.h>

#include "host.h"
#include "js_util.h"
#include "probe.h"
#include "relay_binding.h"
#include "shared_file.h"
#include "socket_options.h"
#include "uffd.h"

namespace pc {
namespace {

// probe(layouts): the section-10 report; never throws for a refusal.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<BlockLayout> layouts;
  GUARD_BEGIN
  if (info.Length() > 0 && !info[0].IsUndefined()) layouts = parse_layouts(info[0], "probe");
  GUARD_END(env)
  SupportReport r = probe_host(layouts);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", r.ok);
  Napi::Array checks = Napi::Array::New(env, r.checks.size());
  for (size_t i = 0; i < r.checks.size(); i++) {
    Napi::Object c = Napi::Object::New(env);
    c.Set("name", r.checks[i].name);
    c.Set("ok", r.checks[i].ok);
    c.Set("detail", r.checks[i].detail);
    checks.Set(static_cast<uint32_t>(i), c);
  }
  o.Set("checks", checks);
  if (!r.ok) o.Set("reason", r.reason);
  return o;
}

// now(): CLOCK_MONOTONIC ns, the clock of fault timestamps.
Napi::Value Now(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(monotonic_ns()));
}

Napi::Value Gettid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), gettid()); }

// pinThread(cpus): sched_setaffinity of the calling (JavaScript) thread.
Napi::Value PinThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  if (!info[0].IsArray()) throw Refusal("pinThread", "cpus must be an array");
  Napi::Array a = info[0].As<Napi::Array>();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < a.Length(); i++) CPU_SET(a.Get(i).As<Napi::Number>().Int32Value(), &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) throw Refusal("pinThread", "sched_setaffinity failed", errno_name(errno));
  GUARD_END(env)
  return env.Undefined();
}

Napi::Value ThreadAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (CPU_ISSET(c, &set)) out.Set(n++, Napi::Number::New(env, c));
  }
  return out;
}

// setTcpNotSentLowat(fd, bytes): returns the value the kernel holds afterwards.
Napi::Value SetTcpNotSentLowat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  double fd = number_arg(info, 0);
  double bytes = number_arg(info, 1);
  if (!(fd >= 0 && fd <= 2147483647.0 && fd == static_cast<double>(static_cast<int>(fd)))) throw Refusal("setTcpNotSentLowat", "the fd must be a non-negative integer");
  if (!(bytes >= 1 && bytes <= 2147483647.0 && bytes == static_cast<double>(static_cast<int>(bytes)))) {
    throw Refusal("setTcpNotSentLowat", "the byte count must be a positive 32-bit integer");
  }
  int err = set_tcp_notsent_lowat(static_cast<int>(fd), static_cast<int>(bytes));
  if (err != 0) throw Refusal("setTcpNotSentLowat", "setsockopt(TCP_NOTSENT_LOWAT) failed", errno_name(err));
  int now = 0;
  err = get_tcp_notsent_lowat(static_cast<int>(fd), &now);
  if (err != 0) throw Refusal("setTcpNotSentLowat", "getsockopt(TCP_NOTSENT_LOWAT) failed", errno_name(err));
  return Napi::Number::New(env, now);
  GUARD_END(env)
}

Napi::Value HugePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HugePageSupport s = huge_page_support();
  Napi::Object o = Napi::Object::New(env);
  Napi::Object thp = Napi::Object::New(env);
  thp.Set("ok", s.thp_ok);
  thp.Set("mode", s.thp_mode);
  thp.Set("reason", s.thp_reason);
  Napi::Object tlb = Napi::Object::New(env);
  tlb.Set("ok", s.hugetlb_ok);
  tlb.Set("total", static_cast<double>(s.hugetlb_total));
  tlb.Set("free", static_cast<double>(s.hugetlb_free));
  tlb.Set("pageKb", static_cast<double>(s.hugetlb_page_kb));
  tlb.Set("reason", s.hugetlb_reason);
  o.Set("thp", thp);
  o.Set("hugetlbfs", tlb);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New<Probe>(env, "probe"));
  exports.Set("now", Napi::Function::New<Now>(env, "now"));
  exports.Set("gettid", Napi::Function::New<Gettid>(env, "gettid"));
  exports.Set("pinThread", Napi::Function::New<PinThread>(env, "pinThread"));
  exports.Set("threadAffinity", Napi::Function::New<ThreadAffinity>(env, "threadAffinity"));
  exports.Set("hugePageSupport", Napi::Function::New<HugePages>(env, "hugePageSupport"));
  exports.Set("mapSharedFile", Napi::Function::New<MapSharedFile>(env, "mapSharedFile"));
  exports.Set("syncSharedFile", Napi::Function::New<SyncSharedFile>(env, "syncSharedFile"));
  exports.Set("setTcpNotSentLowat", Napi::Function::New<SetTcpNotSentLowat>(env, "setTcpNotSentLowat"));
  exports.Set("releaseSharedFile", Napi::Function::New<ReleaseSharedFile>(env, "releaseSharedFile"));
  exports.Set("UffdHost", Host::Init(env));
  exports.Set("TapRelay", TapRelayClass(env));
  return exports;
}

}  // namespace
}  // namespace pc

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return pc::Init(env, exports); }

NODE_API_MODULE(postcopy_native, InitAddon)
