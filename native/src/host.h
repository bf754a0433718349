// The JavaScript face of one userfaultfd backend: guest memory, the userfault fd, the
// fault reader and the vCPU workers, owned together so that close() (or the process
// exiting) tears them down in the only safe order: unregister, stop vCPUs, stop the
// reader, close fds, unmap.
#pragma once
#include <napi.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fault_reader.h"
#include "guest_memory.h"
#include "uffd.h"
#include "vcpu_workers.h"

namespace pc {

// Faults and removals waiting to be handed to JavaScript: appended by the reader thread,
// drained by one thread-safe-function call (at most one call is queued at a time, so a
// burst of faults arrives as one batch). Owned by the thread-safe function.
struct FaultChannel {
  std::mutex mu;
  std::vector<Fault> faults;
  std::vector<std::pair<uint64_t, uint64_t>> removed;  // [start, end) host addresses
  bool posted = false;
  Napi::FunctionReference on_removed;  // JavaScript thread only

  // Moves everything pending into `f` and `r` (JavaScript thread). Only the queued call
  // clears `posted`: after takeFaults() took the faults, that call finds nothing.
  void take(std::vector<Fault>& f, std::vector<std::pair<uint64_t, uint64_t>>& r, bool queued_call) {
    std::lock_guard<std::mutex> lock(mu);
    f.swap(faults);
    r.swap(removed);
    if (queued_call) posted = false;
  }
};

class Host;
struct DoneChannel {
  Host* host;
  Napi::ObjectReference keep_alive;  // the Host's JS object, while vCPUs run
};

void call_faults_js(Napi::Env env, Napi::Function callback, FaultChannel* ch, void* unused);
// Delivers faults (as a FaultBatch) and removed ranges to their listeners.
void deliver_js(Napi::Env env, const std::vector<Fault>& faults, const std::vector<std::pair<uint64_t, uint64_t>>& removed,
                const Napi::Function& on_faults, const Napi::FunctionReference& on_removed, napi_async_context async);
void call_done_js(Napi::Env env, Napi::Function callback, DoneChannel* ch, void* unused);

class Host : public Napi::ObjectWrap<Host>, private FaultSink {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Host(const Napi::CallbackInfo& info);
  ~Host() override;

  // Tears everything down without calling JavaScript. Idempotent.
  void close_all();
  Napi::Value reports_js(Napi::Env env);
  VcpuWorkers& vcpus() { return vcpus_; }

 private:
  void unregister_all();
  void stop_reader_and_close_uffd();
  Napi::Value HostAddress(const Napi::CallbackInfo& info);
  Napi::Value Listen(const Napi::CallbackInfo& info);
  Napi::Value Register(const Napi::CallbackInfo& info);
  Napi::Value Unregister(const Napi::CallbackInfo& info);
  Napi::Value Discard(const Napi::CallbackInfo& info);
  Napi::Value RemoveAsGuest(const Napi::CallbackInfo& info);
  Napi::Value SetHugePages(const Napi::CallbackInfo& info);
  Napi::Value Copy(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value StopListening(const Napi::CallbackInfo& info);
  Napi::Value TakeFaults(const Napi::CallbackInfo& info);
  Napi::Value Resize(const Napi::CallbackInfo& info);
  Napi::Value Zero(const Napi::CallbackInfo& info);
  Napi::Value Wake(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value CopyLoop(const Napi::CallbackInfo& info);
  Napi::Value PlaceRun(const Napi::CallbackInfo& info);
  Napi::Value StartVcpus(const Napi::CallbackInfo& info);
  Napi::Value StopVcpus(const Napi::CallbackInfo& info);
  Napi::Value VcpuReports(const Napi::CallbackInfo& info);
  Napi::Value Status(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  // FaultSink, on the reader thread.
  void faults(const Fault* f, size_t n) override;
  void removed(uint64_t start, uint64_t end) override;

  void require_open(const char* op);
  // Loop mode: the JavaScript thread reads the userfault fd itself (uv_poll), no thread.
  static void on_poll(uv_poll_t* handle, int status, int events);
  // Reads the userfault fd until it is empty and delivers each read. `from_js`: called
  // from a JavaScript frame (takeFaults), so the listener is called directly.
  size_t drain_loop(bool from_js = false);
  // A guest removal: unregister and record the range (either mode).
  void unregister_removed(uint64_t start, uint64_t end);
  // Places [off, off+len) of a checked block; returns a PlaceOutcome value.
  int place(Block& b, size_t off, const uint8_t* src, size_t len, bool zero, const char* op);
  // Places a run of host pages with as few ioctls as the kernel allows, one outcome per
  // host page into `outcomes`; stops after a page that needs a retry (EAGAIN, nothing
  // placed). Returns how many host pages have an outcome.
  size_t place_run(Block& b, size_t off, const uint8_t* src, size_t len, bool zero, uint8_t* outcomes, const char* op);
  // madvise(MADV_DONTNEED) of a checked range; `own` keeps the range registered.
  void drop(Block& b, size_t off, size_t len, bool own);

  std::unique_ptr<GuestMemory> memory_;
  bool closed_ = false;
  int uffd_ = -1;
  std::string uffd_how_;
  UffdApi api_;
  FaultReader reader_;
  VcpuWorkers vcpus_;
  Napi::TypedThreadSafeFunction<FaultChannel, void, call_faults_js> fault_tsfn_;
  FaultChannel* channel_ = nullptr;  // valid while fault_tsfn_ is held
  Napi::FunctionReference thread_on_faults_;  // the listener, for takeFaults in thread mode
  Napi::TypedThreadSafeFunction<DoneChannel, void, call_done_js> done_tsfn_;
  std::atomic<bool> done_tsfn_held_{false};
  napi_env env_;
  bool loop_mode_ = false;
  int64_t spin_ns_ = 0;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference loop_on_faults_, loop_on_removed_;
  std::unique_ptr<Napi::AsyncContext> async_;

  // The range of a discard() in progress: its REMOVE events are ours, not the guest's.
  std::atomic<bool> own_active_{false};
  std::atomic<uint64_t> own_start_{0}, own_end_{0};

  struct Stats {
    std::atomic<uint64_t> faults{0}, guest_removes{0}, own_removes{0}, already_present{0}, retries{0},
        dropped{0}, batches{0};
  } stats_;
};

}  // namespace pc
