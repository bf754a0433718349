/**
 * SIMD scanners for large bitmaps: a bitmap's words live in their own WebAssembly
 * memory, and a tiny hand-assembled wasm module finds the next set / next clear bit,
 * skipping 64 bytes per branch with 128-bit loads. (A plain JS word loop reaches about
 * 0.4 of a C scanner; this is faster than C on sparse bitmaps and about 0.7 of it on
 * run-structured ones, where the time goes into the calls, one per run edge.)
 *
 * The module is written below as bytes, one instruction per line, so there is no build
 * step and no dependency. It is compiled once per process; each bitmap instantiates it
 * over its own memory.
 */

/** Scans of a bitmap's words: bit indexes over the whole storage, ignoring any size. */
export interface WasmWords {
  /** The storage: exactly the requested number of 32-bit words, a view over wasm memory. */
  readonly words: Int32Array;
  /**
   * First set bit at or after `from` (0 <= from < words.length * 32), or
   * words.length * 32 when there is none. `byteLength` must be words.byteLength.
   */
  readonly nextSet: (from: number, byteLength: number) => number;
  /** First clear bit at or after `from`, like nextSet. */
  readonly nextZero: (from: number, byteLength: number) => number;
}

/**
 * Words for a bitmap in a fresh WebAssembly memory, with its scanners; undefined when
 * this runtime cannot run the module (no WebAssembly or no SIMD, or a big-endian host,
 * where JS's Int32Array and wasm's little-endian loads would disagree) or cannot allocate
 * the memory, so callers fall back to plain JS. `nwords` must be even (whole 64-bit
 * words, as Bitmap.wordsFor gives).
 */
export function wasmWords(nwords: number): WasmWords | undefined {
  const module = compiledModule();
  if (module === undefined || wasm === undefined || !LITTLE_ENDIAN) return undefined;
  if (backoff > 0) {
    backoff--;
    return undefined;
  }
  const byteLength = nwords * 4;
  const pages = Math.ceil(byteLength / WASM_PAGE_BYTES);
  let exports: Record<string, unknown>;
  let memory: { readonly buffer: ArrayBuffer };
  try {
    // The memory never grows (its buffer would be detached), so its maximum is its size.
    memory = new wasm.Memory({ initial: pages, maximum: pages });
    exports = new wasm.Instance(module, { bitmap: { words: memory } }).exports;
  } catch {
    // Each wasm memory reserves ~10 GiB of address space, so about 13 000 can be alive at
    // once (fewer under a ulimit -v); past that, this bitmap scans in plain JS instead.
    backoff = ALLOCATION_BACKOFF;
    return undefined;
  }
  return {
    words: new Int32Array(memory.buffer, 0, nwords),
    nextSet: exports.nextSet as WasmWords['nextSet'],
    nextZero: exports.nextZero as WasmWords['nextZero'],
  };
}

const WASM_PAGE_BYTES = 65536;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * After a failed memory allocation, this many bitmaps go straight to plain JS before wasm
 * is tried again: each failure costs V8 a few full GCs (tens of ms).
 */
const ALLOCATION_BACKOFF = 1024;
let backoff = 0;

/** The part of the WebAssembly API used here (the project's lib settings do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (descriptor: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

let compiled: object | null | undefined; // null: tried and not supported

/** The compiled scanner module, compiled on first use; undefined when unsupported. */
function compiledModule(): object | undefined {
  if (compiled === undefined) {
    const bytes = moduleBytes();
    compiled = wasm !== undefined && wasm.validate(bytes) ? new wasm.Module(bytes) : null;
  }
  return compiled ?? undefined;
}

// ---- the module, byte by byte ----

const I32 = 0x7f;
const I64 = 0x7e;
const F64 = 0x7c;
const V128 = 0x7b;
const VOID = 0x40;

/** Unsigned LEB128 (pure). */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer (pure). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function utf8(s: string): number[] {
  return vector([...new TextEncoder().encode(s)].map((b) => [b]));
}

/** The whole module: imports memory bitmap.words, exports nextSet and nextZero (pure). */
export function moduleBytes(): Uint8Array {
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d], // magic "\0asm"
    ...[0x01, 0x00, 0x00, 0x00], // version 1
    ...section(1, vector([[0x60, 2, I32, I32, 1, F64]])), // type 0: (from i32, byteLength i32) -> f64
    ...section(2, vector([[...utf8('bitmap'), ...utf8('words'), 0x02, 0x00, 0x00]])), // import memory, min 0 pages
    ...section(3, vector([[0], [0]])), // two functions of type 0
    ...section(7, vector([[...utf8('nextSet'), 0x00, 0], [...utf8('nextZero'), 0x00, 1]])), // export functions 0, 1
    ...section(10, vector([scanBody('set'), scanBody('zero')])),
  ]);
}

/** Bytes scanned per SIMD iteration: four 128-bit loads. */
const BLOCK = 64;

/**
 * One scanner's code. 'set' looks for a 1 bit; 'zero' looks for a 0 bit by scanning the
 * complement. Locals: 0 from, 1 byteLength (params); 2 i (byte offset of the current
 * 64-bit word); 3 w (the current word, complemented for 'zero'); 4 empty (a v128 of the
 * byte that holds nothing we look for: 0x00 for 'set', 0xff for 'zero').
 */
function scanBody(kind: 'set' | 'zero'): number[] {
  const zero = kind === 'zero';
  /** Loads the 64-bit word at i, complemented for 'zero': set bits are what we look for. */
  const loadWord = [
    0x20, 2, // local.get i
    0x29, 3, 0, // i64.load align=8 offset=0
    ...(zero ? [0x42, 0x7f, 0x85] : []), // (zero) i64.const -1; i64.xor
  ];
  /** Pushes i32 1 when the 64 bytes at i hold anything we look for. */
  const blockHasAny = [
    0x20, 2, 0xfd, 0x00, 4, 0, // local.get i; v128.load offset=0
    0x20, 2, 0xfd, 0x00, 4, 16, // local.get i; v128.load offset=16
    0xfd, zero ? 0x4e : 0x50, // v128.and (zero) / v128.or (set)
    0x20, 2, 0xfd, 0x00, 4, 32, // local.get i; v128.load offset=32
    0x20, 2, 0xfd, 0x00, 4, 48, // local.get i; v128.load offset=48
    0xfd, zero ? 0x4e : 0x50, // v128.and / v128.or
    0xfd, zero ? 0x4e : 0x50, // v128.and / v128.or
    ...(zero ? [0xfd, 0x4d] : []), // (zero) v128.not: a 1 now marks a clear bit
    0xfd, 0x53, // v128.any_true
  ];
  /** Pushes i64: bit k set when byte i+k (k < 64) holds nothing we look for. */
  const emptyBytesMask: number[] = [];
  for (let k = 0; k < BLOCK / 16; k++) {
    emptyBytesMask.push(
      0x20, 2, 0xfd, 0x00, 4, 16 * k, // local.get i; v128.load offset=16k
      0x20, 4, // local.get empty
      0xfd, 0x23, // i8x16.eq
      0xfd, 0x64, // i8x16.bitmask: 16 bits, one per byte
      0xad, // i64.extend_i32_u
    );
    if (k > 0) emptyBytesMask.push(0x42, ...sleb(16 * k), 0x86, 0x84); // i64.const 16k; i64.shl; i64.or
  }
  const code = [
    // empty = splat(0x00 or 0xff)
    0x41, ...sleb(zero ? -1 : 0), // i32.const 0 / -1
    0xfd, 0x0f, // i8x16.splat
    0x21, 4, // local.set empty
    // i = (from >>> 6) << 3: the byte offset of the 64-bit word holding bit `from`
    0x20, 0, // local.get from
    0x41, 6, // i32.const 6
    0x76, // i32.shr_u
    0x41, 3, // i32.const 3
    0x74, // i32.shl
    0x21, 2, // local.set i
    // w = word(i) & (-1 << from): bits below `from` do not count (i64.shl takes the count mod 64)
    ...loadWord,
    0x42, 0x7f, // i64.const -1
    0x20, 0, // local.get from
    0xad, // i64.extend_i32_u
    0x86, // i64.shl
    0x83, // i64.and
    0x22, 3, // local.tee w
    0x50, // i64.eqz
    0x04, VOID, // if: nothing in the first word, so scan on
    0x20, 2, 0x41, 8, 0x6a, 0x21, 2, // i += 8 (local.get i; i32.const 8; i32.add; local.set i)
    0x02, VOID, // block $tail
    0x02, VOID, // block $found
    0x03, VOID, // loop $skip: 64 bytes per branch
    0x20, 2, // local.get i
    0x41, ...sleb(BLOCK), // i32.const 64
    0x6a, // i32.add
    0x20, 1, // local.get byteLength
    0x4b, // i32.gt_u
    0x0d, 2, // br_if $tail: less than a block left
    ...blockHasAny,
    0x0d, 1, // br_if $found
    0x20, 2, 0x41, ...sleb(BLOCK), 0x6a, 0x21, 2, // i += 64
    0x0c, 0, // br $skip
    0x0b, // end loop $skip
    0x0b, // end block $found
    // found: the first byte in [i, i+64) holding something; no further branches
    ...emptyBytesMask,
    0x42, 0x7f, // i64.const -1
    0x85, // i64.xor: bit k set when byte i+k holds something
    0x7a, // i64.ctz
    0xa7, // i32.wrap_i64
    0x20, 2, 0x6a, 0x21, 2, // i += that byte's offset (local.get i; i32.add; local.set i)
    0x20, 2, // local.get i
    0xad, // i64.extend_i32_u
    0x42, 3, // i64.const 3
    0x86, // i64.shl: the byte's first bit index
    0x20, 2, // local.get i
    0x2d, 0, 0, // i32.load8_u align=1 offset=0
    ...(zero ? [0x41, 0x7f, 0x73] : []), // (zero) i32.const -1; i32.xor
    0x68, // i32.ctz
    0xad, // i64.extend_i32_u
    0x7c, // i64.add
    0xba, // f64.convert_i64_u
    0x0f, // return
    0x0b, // end block $tail
    // tail: under 64 bytes left, a 64-bit word at a time
    0x03, VOID, // loop $word
    0x20, 2, // local.get i
    0x20, 1, // local.get byteLength
    0x4f, // i32.ge_u
    0x04, VOID, // if: past the end, nothing found
    0x20, 1, // local.get byteLength
    0xad, // i64.extend_i32_u
    0x42, 3, // i64.const 3
    0x86, // i64.shl
    0xba, // f64.convert_i64_u
    0x0f, // return byteLength * 8
    0x0b, // end if
    ...loadWord,
    0x22, 3, // local.tee w
    0x50, // i64.eqz
    0x04, VOID, // if: nothing in this word
    0x20, 2, 0x41, 8, 0x6a, 0x21, 2, // i += 8
    0x0c, 1, // br $word
    0x0b, // end if
    0x0b, // end loop $word (falls through: w holds something)
    0x0b, // end if (first word)
    // the bit: i * 8 + ctz(w)
    0x20, 2, // local.get i
    0xad, // i64.extend_i32_u
    0x42, 3, // i64.const 3
    0x86, // i64.shl
    0x20, 3, // local.get w
    0x7a, // i64.ctz
    0x7c, // i64.add
    0xba, // f64.convert_i64_u
    0x0b, // end function
  ];
  const locals = vector([
    [1, I32], // i
    [1, I64], // w
    [1, V128], // empty
  ]);
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}
