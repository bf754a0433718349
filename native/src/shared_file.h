// A file mapped MAP_SHARED into a Buffer: what is written to the Buffer is in the page
// cache at once, so it survives the process being killed (not a power loss: msync for that).
#pragma once
#include <napi.h>

namespace pc {

// mapSharedFile(path, bytes): Buffer over the whole file, created/resized to `bytes`.
Napi::Value MapSharedFile(const Napi::CallbackInfo& info);
// syncSharedFile(buf[, offset, length]): msync(MS_SYNC) of the buffer (or a part of it).
Napi::Value SyncSharedFile(const Napi::CallbackInfo& info);
Napi::Value ReleaseSharedFile(const Napi::CallbackInfo& info);

}  // namespace pc
