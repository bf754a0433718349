// The TapRelay class (relay_binding.cc): JavaScript's handle on the native tap relay.
#pragma once
#include <napi.h>

namespace pc {

Napi::Function TapRelayClass(Napi::Env env);

}  // namespace pc
