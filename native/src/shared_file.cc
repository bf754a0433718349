#include "shared_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "js_util.h"
#include "uffd.h"

#include <mutex>
#include <unordered_map>

namespace pc {

namespace {
// Live mappings by address: releaseSharedFile unmaps at once, the GC finalizer only what is
// still here, so no range is ever unmapped twice.
std::mutex g_maps_mu;
std::unordered_map<uintptr_t, size_t> g_maps;

bool forget_mapping(uintptr_t p, size_t* len) {
  std::lock_guard<std::mutex> lock(g_maps_mu);
  auto it = g_maps.find(p);
  if (it == g_maps.end()) return false;
  *len = it->second;
  g_maps.erase(it);
  return true;
}
}  // namespace

Napi::Value MapSharedFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  if (info.Length() < 1 || !info[0].IsString()) throw Refusal("mapSharedFile", "the path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  double bytes = number_arg(info, 1);
  if (!(bytes >= 1) || bytes > 9007199254740991.0 || bytes != static_cast<double>(static_cast<size_t>(bytes))) {
    throw Refusal("mapSharedFile", path + ": the size must be a positive integer number of bytes");
  }
  size_t len = static_cast<size_t>(bytes);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Refusal("mapSharedFile", path + ": cannot open", errno_name(errno));
  if (ftruncate(fd, static_cast<off_t>(len)) != 0) {
    int err = errno;
    close(fd);
    throw Refusal("mapSharedFile", path + ": cannot resize to " + std::to_string(len) + " bytes", errno_name(err));
  }
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);  // the mapping keeps the file
  if (m == MAP_FAILED) throw Refusal("mapSharedFile", path + ": cannot map " + std::to_string(len) + " bytes", errno_name(err));
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps[reinterpret_cast<uintptr_t>(m)] = len;
  }
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(m), len, [](Napi::Env, uint8_t* p) {
    size_t n;
    if (forget_mapping(reinterpret_cast<uintptr_t>(p), &n)) munmap(p, n);
  });
  GUARD_END(env)
}

Napi::Value SyncSharedFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Refusal("syncSharedFile", "the argument must be a Buffer from mapSharedFile");
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  size_t off = info.Length() > 1 ? static_cast<size_t>(number_arg(info, 1)) : 0;
  size_t len = info.Length() > 2 ? static_cast<size_t>(number_arg(info, 2)) : buf.Length() - (off < buf.Length() ? off : buf.Length());
  if (off > buf.Length() || len > buf.Length() - off) throw Refusal("syncSharedFile", "range outside the buffer");
  if (len == 0) return env.Undefined();
  uintptr_t start = reinterpret_cast<uintptr_t>(buf.Data()) + off;
  uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t aligned = start & ~(page - 1);
  if (msync(reinterpret_cast<void*>(aligned), len + (start - aligned), MS_SYNC) != 0) {
    throw Refusal("syncSharedFile", "msync failed (is the buffer from mapSharedFile?)", errno_name(errno));
  }
  return env.Undefined();
  GUARD_END(env)
}

// Unmaps a buffer from mapSharedFile now (its writes are already in the page cache). The
// buffer must not be touched afterwards; the journal drops every view of it first.
Napi::Value ReleaseSharedFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GUARD_BEGIN
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Refusal("releaseSharedFile", "the argument must be a Buffer from mapSharedFile");
  uint8_t* p = info[0].As<Napi::Buffer<uint8_t>>().Data();
  size_t n;
  if (forget_mapping(reinterpret_cast<uintptr_t>(p), &n)) munmap(p, n);
  return env.Undefined();
  GUARD_END(env)
}

}  // namespace pc
