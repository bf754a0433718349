// The JavaScript face of relay.h: `new TapRelay(ringView, onEvents)` (see src/native/tapRelay.ts).
// Events from the relay's threads are queued and handed to `onEvents` in batches on the
// JavaScript thread through one thread-safe function.
#include "relay_binding.h"

#include <napi.h>

#include <memory>
#include <mutex>
#include <vector>

#include "js_util.h"
#include "relay.h"
#include "uffd.h"

namespace pc {
namespace {

struct EventChannel : RelayListener {
  std::mutex mu;
  std::vector<RelayEvent> events;
  bool posted = false;
  bool wake_queued = false;
  Napi::ThreadSafeFunction tsfn;

  void relay_event(RelayEvent e) override {
    bool post = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (e.kind == RelayEvent::kWake) {
        if (wake_queued) return;
        wake_queued = true;
      }
      events.push_back(std::move(e));
      if (!posted) post = posted = true;
    }
    if (post) tsfn.NonBlockingCall(this, [](Napi::Env env, Napi::Function js, EventChannel* ch) { ch->deliver(env, js); });
  }

  void deliver(Napi::Env env, Napi::Function js) {
    if (static_cast<napi_env>(env) == nullptr || js.IsEmpty()) return;  // the function is being finalized
    std::vector<RelayEvent> batch;
    {
      std::lock_guard<std::mutex> lock(mu);
      batch.swap(events);
      posted = false;
      wake_queued = false;
    }
    Napi::Array out = Napi::Array::New(env, batch.size());
    for (size_t i = 0; i < batch.size(); i++) {
      const RelayEvent& e = batch[i];
      Napi::Object o = Napi::Object::New(env);
      switch (e.kind) {
        case RelayEvent::kEnd:
          o.Set("type", "end");
          o.Set("id", e.id);
          o.Set("dir", e.dir);
          break;
        case RelayEvent::kError:
          o.Set("type", "error");
          o.Set("id", e.id);
          o.Set("side", e.dir);
          o.Set("message", e.message);
          break;
        case RelayEvent::kClosed:
          o.Set("type", "closed");
          o.Set("id", e.id);
          o.Set("toDestination", e.bytes[0]);
          o.Set("toSource", e.bytes[1]);
          break;
        case RelayEvent::kWake:
          o.Set("type", "wake");
          break;
        case RelayEvent::kGap:
          o.Set("type", "gap");
          o.Set("id", e.id);
          o.Set("dir", e.dir);
          o.Set("from", e.bytes[0]);
          o.Set("reason", e.message);
          break;
      }
      out.Set(static_cast<uint32_t>(i), o);
    }
    js.Call({out});
  }
};

class TapRelay : public Napi::ObjectWrap<TapRelay> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "TapRelay",
                       {
                           InstanceMethod<&TapRelay::Now>("now"),
                           InstanceMethod<&TapRelay::Post>("post"),
                           InstanceMethod<&TapRelay::Attach>("attach"),
                           InstanceMethod<&TapRelay::Forwarded>("forwarded"),
                           InstanceMethod<&TapRelay::Pending>("pending"),
                           InstanceMethod<&TapRelay::Stop>("stop"),
                           InstanceMethod<&TapRelay::Close>("close"),
                       });
  }

  TapRelay(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TapRelay>(info) {
    Napi::Env env = info.Env();
    GUARD_BEGIN
    if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[1].IsFunction()) {
      throw Refusal("TapRelay", "new TapRelay(ring: Uint8Array over the ring's SharedArrayBuffer, onEvents: function)");
    }
    Napi::Uint8Array view = info[0].As<Napi::Uint8Array>();
    size_t total = view.ByteLength();
    size_t ring = total > 64 ? total - 64 : 0;
    if (view.ByteOffset() != 0 || ring < 65536 || (ring & (ring - 1)) != 0) {
      throw Refusal("TapRelay", "the ring view must cover a whole ring buffer: 64 control bytes and a power of two of at least 64 KiB");
    }
    // The SharedArrayBuffer stays alive while the relay's threads write into it.
    ring_ref_ = Napi::Persistent(view);
    channel_ = new EventChannel();
    // The channel is the function's context: freed when the function is finalized (after close()).
    channel_->tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "tap-relay", 0, 1, channel_,
                                                   [](Napi::Env, EventChannel* ch) { delete ch; });
    // Like a socket that is not ref'ed: the tap's server keeps the process alive, not this.
    channel_->tsfn.Unref(env);
    relay_ = std::make_unique<Relay>(view.Data(), total, channel_);
    GUARD_END(env)
  }

  ~TapRelay() override { shut(); }

 private:
  void shut() {
    relay_.reset();  // stops every connection and joins every thread: no event after this
    if (channel_ != nullptr) {
      channel_->tsfn.Release();
      channel_ = nullptr;
    }
    ring_ref_.Reset();
  }

  Relay& relay(const char* op) {
    if (!relay_) throw Refusal(op, "the relay is closed");
    return *relay_;
  }

  Napi::Value Now(const Napi::CallbackInfo& info) {
    GUARD_BEGIN
    return Napi::Number::New(info.Env(), relay("now").now());
    GUARD_END(info.Env())
  }

  // post(type, id, dir, value, text | null)
  Napi::Value Post(const Napi::CallbackInfo& info) {
    GUARD_BEGIN
    uint32_t type = static_cast<uint32_t>(number_arg(info, 0));
    uint32_t id = static_cast<uint32_t>(number_arg(info, 1));
    uint32_t dir = static_cast<uint32_t>(number_arg(info, 2));
    double value = number_arg(info, 3);
    std::string text = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : std::string();
    if (type < kRingOpen || type > kRingFinish || type == kRingData) throw Refusal("post", "a control record type (OPEN, GAP, CLOSE, ERROR, FINISH)");
    relay("post").post(type, id, dir, value, text);
    GUARD_END(info.Env())
    return info.Env().Undefined();
  }

  // attach(id, clientFd, upstreamFd)
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    GUARD_BEGIN
    uint32_t id = static_cast<uint32_t>(number_arg(info, 0));
    int client = static_cast<int>(number_arg(info, 1));
    int upstream = static_cast<int>(number_arg(info, 2));
    if (client < 0 || upstream < 0) throw Refusal("attach", "both sockets need a file descriptor", "EBADF");
    int err = relay("attach").attach(id, client, upstream);
    if (err != 0) throw Refusal("attach", "the relay could not take the connection", errno_name(err));
    GUARD_END(info.Env())
    return info.Env().Undefined();
  }

  Napi::Value Forwarded(const Napi::CallbackInfo& info) {
    Napi::Array a = Napi::Array::New(info.Env(), 2);
    a.Set(0u, Napi::Number::New(info.Env(), relay_ ? relay_->forwarded(0) : last_[0]));
    a.Set(1u, Napi::Number::New(info.Env(), relay_ ? relay_->forwarded(1) : last_[1]));
    return a;
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), relay_ ? static_cast<double>(relay_->pending()) : 0); }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (relay_) relay_->stop();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (relay_) {
      last_[0] = relay_->forwarded(0);
      last_[1] = relay_->forwarded(1);
    }
    shut();
    return info.Env().Undefined();
  }

  std::unique_ptr<Relay> relay_;
  EventChannel* channel_ = nullptr;
  Napi::Reference<Napi::Uint8Array> ring_ref_;
  double last_[2] = {0, 0};
};

}  // namespace

Napi::Function TapRelayClass(Napi::Env env) { return TapRelay::Init(env); }

}  // namespace pc
