// Argument helpers shared by the JavaScript bindings: numbers, lists, layouts, and the
// conversion of a Refusal into a JavaScript Error with `operation` and `errno`.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "guest_memory.h"
#include "refusal.h"

#define GUARD_BEGIN try {
#define GUARD_END(env)                  \
  }                                     \
  catch (const ::pc::Refusal& r) {      \
    ::pc::throw_refusal((env), r);      \
  }

namespace pc {

[[noreturn]] inline void throw_refusal(Napi::Env env, const Refusal& r) {
  Napi::Error e = Napi::Error::New(env, r.operation + ": " + r.what());
  e.Set("operation", Napi::String::New(env, r.operation));
  e.Set("errno", Napi::String::New(env, r.errno_name));
  e.Set("reason", Napi::String::New(env, r.what()));
  throw e;
}

// The i-th argument as a number; refuses anything else (no coercion from strings).
inline double number_arg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    throw Refusal("argument", "argument " + std::to_string(i) + " must be a number");
  }
  return info[i].As<Napi::Number>().DoubleValue();
}

inline double number_or(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key)) return fallback;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Refusal("argument", std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline std::vector<int> int_list(const Napi::Object& o, const char* key) {
  std::vector<int> out;
  if (!o.Has(key) || o.Get(key).IsUndefined()) return out;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Refusal("argument", std::string("option '") + key + "' must be an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw Refusal("argument", std::string("option '") + key + "' must be an array of numbers");
    out.push_back(e.As<Napi::Number>().Int32Value());
  }
  return out;
}

// BlockLayout[] as in src/io/backend.ts.
inline std::vector<BlockLayout> parse_layouts(const Napi::Value& v, const char* op) {
  if (!v.IsArray()) throw Refusal(op, "the block layout must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<BlockLayout> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Refusal(op, "block " + std::to_string(i) + " is not an object");
    Napi::Object o = e.As<Napi::Object>();
    BlockLayout L;
    L.name = o.Has("name") ? o.Get("name").ToString().Utf8Value() : "block" + std::to_string(i);
    double length = number_or(o, "length", -1), max = number_or(o, "maxLength", length),
           ps = number_or(o, "hostPageSize", 4096);
    if (!(length >= 0) || !(max >= 0) || !(ps > 0) || length > 9007199254740991.0 || max > 9007199254740991.0) {
      throw Refusal(op, "block '" + L.name + "' needs a non-negative length and a positive hostPageSize");
    }
    L.length = static_cast<size_t>(length);
    L.max_length = static_cast<size_t>(max);
    L.page_size = static_cast<size_t>(ps);
    L.hugetlbfs = o.Has("hugetlbfs") && o.Get("hugetlbfs").ToBoolean().Value();
    out.push_back(std::move(L));
  }
  return out;
}

}  // namespace pc
