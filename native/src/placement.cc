// Placement: UFFDIO_COPY / UFFDIO_ZEROPAGE / UFFDIO_WAKE of checked ranges, with EEXIST
// (already placed: wake, report), EAGAIN (retry later) and removed ranges (dropped).
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

constexpr int kPlaced = 0, kAlreadyPresent = 1, kRetry = 2;  // PlaceOutcome in backend.ts
constexpr size_t kTargetPage = 4096;

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

size_t Host::place_run(Block& b, size_t off, const uint8_t* src, size_t len, bool zero, uint8_t* outcomes, const char* op) {
  uintptr_t dst = b.base + off;
  size_t step = b.kernel_page, pages = len / step;  // kernel_page == host page (PlaceRun checks)
  if (!b.registered.load(std::memory_order_relaxed)) {
    if (zero) memset(reinterpret_cast<void*>(dst), 0, len);
    else memcpy(reinterpret_cast<void*>(dst), src, len);
    memset(outcomes, kPlaced, pages);
    return pages;
  }
  bool zeropage = zero && !b.layout.hugetlbfs;
  if (zero && !zeropage) src = static_cast<const uint8_t*>(zero_source(len));
  size_t pos = 0;
  while (pos < len) {
    size_t done = 0;
    int err = zeropage ? uffd_zeropage(uffd_, dst + pos, len - pos, &done)
                       : uffd_copy(uffd_, dst + pos, src + pos, len - pos, &done);
    // The kernel placed [pos, pos + done) before it stopped (or all of it).
    if (err == 0) done = len - pos;
    memset(outcomes + pos / step, kPlaced, done / step);
    pos += done;
    if (err == 0) break;
    if (err == EAGAIN) {
      if (done) continue;  // stopped part way (an EEXIST or a removed page next): find out which
      stats_.retries.fetch_add(1, std::memory_order_relaxed);
      outcomes[pos / step] = kRetry;
      return pos / step + 1;
    }
    if (err == EEXIST) {
      // Already there (an urgent page placed first, a racing placement): wake whoever waits.
      stats_.already_present.fetch_add(1, std::memory_order_relaxed);
      uffd_wake(uffd_, dst + pos, step);
      outcomes[pos / step] = kAlreadyPresent;
      pos += step;
      continue;
    }
    if (err == ENOENT && memory_->is_removed(b, off + pos, step)) {
      // The guest removed this page: dropped, as place() does (nothing placed).
      stats_.dropped.fetch_add(1, std::memory_order_relaxed);
      outcomes[pos / step] = kAlreadyPresent;
      pos += step;
      continue;
    }
    throw Refusal(op, std::string(zeropage ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY") + " of block '" + b.layout.name + "' at " +
                          hex(off + pos) + " failed", errno_name(err));
  }
  return pages;
}

// The source bytes [data_off, data_off + len) of the typed array `value`, refused when they
// are not all inside it (placeRun, copy and write take their page data this way).
static uint8_t* source_bytes(const Napi::Value& value, double data_off, double len, const char* op) {
  uint8_t* data;
  size_t data_len;
  typed_bytes(value, op, &data, &data_len);
  if (!(data_off >= 0) || data_off != static_cast<double>(static_cast<size_t>(data_off)) || data_off > data_len ||
      len > data_len - data_off) {
    throw Refusal(op, "source range " + std::to_string(data_off) + "+" + std::to_string(len) + " is outside the " +
                          std::to_string(data_len) + "-byte source");
  }
  return data + static_cast<size_t>(data_off);
}

// placeRun(block, offset, data | null, dataOffset, length, outcomes): a run of host pages
// in one UFFDIO_COPY (data) or UFFDIO_ZEROPAGE (null), split only where the kernel stops.
Napi::Value Host::PlaceRun(const Napi::CallbackInfo& info) {
  size_t handled = 0;
  GUARD_BEGIN
  require_open("placeRun");
  Block& b = memory_->block(number_arg(info, 0), "placeRun");
  double off = number_arg(info, 1), data_off = number_arg(info, 3), len = number_arg(info, 4);
  memory_->check_pages(b, off, len, "placeRun");
  if (b.kernel_page != b.layout.page_size) {
    // Outcomes are per host page; a transparent-huge-page block places in 4 KiB steps.
    throw Refusal("placeRun", "block '" + b.layout.name + "': runs are placed only where the host page is the kernel's page (" +
                                  std::to_string(b.layout.page_size) + "-byte host pages, " + std::to_string(b.kernel_page) + "-byte steps)");
  }
  bool zero = info[2].IsNull() || info[2].IsUndefined();
  uint8_t* data = zero ? nullptr : source_bytes(info[2], data_off, len, "placeRun");
  uint8_t* outcomes;
  size_t outcomes_len;
  typed_bytes(info[5], "placeRun", &outcomes, &outcomes_len);
  size_t pages = static_cast<size_t>(len) / b.kernel_page;
  if (outcomes_len < pages) {
    throw Refusal("placeRun", "the outcomes array holds " + std::to_string(outcomes_len) + " entries for " + std::to_string(pages) + " host pages");
  }
  handled = place_run(b, static_cast<size_t>(off), data, static_cast<size_t>(len), zero, outcomes, "placeRun");
  GUARD_END(info.Env())
  return Napi::Number::New(info.Env(), static_cast<double>(handled));
}

Napi::Value Host::Copy(const Napi::CallbackInfo& info) {
  int outcome = 0;
  GUARD_BEGIN
  require_open("copy");
  Block& b = memory_->block(number_arg(info, 0), "copy");
  double off = number_arg(info, 1), data_off = number_arg(info, 3), len = number_arg(info, 4);
  memory_->check_pages(b, off, len, "copy");
  uint8_t* data = source_bytes(info[2], data_off, len, "copy");
  outcome = place(b, static_cast<size_t>(off), data, static_cast<size_t>(len), false, "copy");
  GUARD_END(info.Env())
  return Napi::Number::New(info.Env(), outcome);
}

// Plain write of whole target pages (precopy, before the block is registered): no
// atomicity and nothing to wake. Refused on a registered block, where every insert must be
// a placement (reference section 1).
Napi::Value Host::Write(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  require_open("write");
  Block& b = memory_->block(number_arg(info, 0), "write");
  double off = number_arg(info, 1), data_off = number_arg(info, 3), len = number_arg(info, 4);
  memory_->check_bytes(b, off, len, "write");
  if (static_cast<size_t>(off) % kTargetPage != 0 || static_cast<size_t>(len) % kTargetPage != 0) {
    throw Refusal("write", "block '" + b.layout.name + "': range " + hex(static_cast<size_t>(off)) + "+" +
                               hex(static_cast<size_t>(len)) + " is not whole target pages");
  }
  if (b.registered.load()) {
    throw Refusal("write", "block '" + b.layout.name + "' is registered: pages must be placed atomically, not written");
  }
  uint8_t* data = source_bytes(info[2], data_off, len, "write");
  std::memcpy(reinterpret_cast<void*>(b.base + static_cast<size_t>(off)), data, static_cast<size_t>(len));
  GUARD_END(info.Env())
  return info.Env().Undefined();
}

// The VMM resized the block: the mapping already spans max_length, so only the used
// length changes; a shrink drops the tail's memory.
Napi::Value Host::Resize(const Napi::CallbackInfo& info) {
  GUARD_BEGIN
  require_open("resize");
  Block& b = memory_->block(number_arg(info, 0), "resize");
  double lend = number_arg(info, 1);
  size_t ps = b.layout.page_size;
  if (!(lend > 0) || lend != static_cast<double>(static_cast<size_t>(lend)) || static_cast<size_t>(lend) % ps != 0 ||
      static_cast<size_t>(lend) > b.layout.max_length) {
    throw Refusal("resize", "block '" + b.layout.name + "': length " + std::to_string(lend) + " is not a multiple of " +
                                std::to_string(ps) + " within the mapped " + std::to_string(b.layout.max_length));
  }
  size_t len = static_cast<size_t>(lend);
  if (len < b.layout.length) madvise(reinterpret_cast<void*>(b.base + len), b.layout.length - len, MADV_DONTNEED);
  b.layout.length = len;
  GUARD_END(info.Env())
  return info.Env().Undefined();
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

}  // namespace pc
