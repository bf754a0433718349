/**
 * Parser and streaming reader for QEMU 7.2 log-backend traces (the `-D` file):
 *
 *     <tid>@<sec>.<usec>:<event_name> <formatted args>
 *     <event_name> <formatted args>              (without -msg timestamp=on)
 *
 * Lines are dispatched without a regular expression: the name is cut at the first ':'
 * after '@' and the first ' ', then looked up in the compiled catalogue
 * (qemuTraceEvents.ts). The arguments are matched against the event's printf format;
 * numbers are parsed in place, strings sliced.
 *
 * `readTrace` streams a `.log` or gzip-compressed `.log.gz` file (detected by its magic
 * bytes) in file order with bounded memory: one chunk plus one partial line (capped at
 * MAX_LINE_CHARS) whatever the size of the file.
 */
import { createReadStream } from 'node:fs';
import { fileKind } from '../../regularFile.js';
import { open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { NotARegularFileError, NotATraceError } from '../../errors.js';
import { NO_TIME, QEMU_TRACE_EVENTS, isTraceEventName, type TraceEvent, type TraceEventName } from '../../engine/qemuTraceEvents.js';

// ---------------------------------------------------------------------------
// Format compilation

const LIT = 0;
const DEC = 1;
const HEX = 2;
const PTR = 3;
const STR = 4;

/** An event's format compiled to a list of steps: literals and conversions. */
interface CompiledEvent {
  readonly name: TraceEventName;
  readonly fields: readonly string[];
  readonly ops: Uint8Array;
  /** The literal text of each LIT step ('' for conversions). */
  readonly lits: readonly string[];
}

/** Pure: compiles a printf format into steps. Length modifiers (l, ll, z, h) are skipped. */
export function compileFormat(name: TraceEventName, format: string, fields: readonly string[]): CompiledEvent {
  const ops: number[] = [];
  const lits: string[] = [];
  let lit = '';
  const flushLit = (): void => {
    if (lit !== '') {
      ops.push(LIT);
      lits.push(lit);
      lit = '';
    }
  };
  for (let i = 0; i < format.length; i++) {
    const ch = format[i]!;
    if (ch !== '%') {
      lit += ch;
      continue;
    }
    let j = i + 1;
    while (j < format.length && 'lzhjt'.includes(format[j]!)) j++;
    const conv = format[j];
    flushLit();
    const op = conv === 's' ? STR : conv === 'p' ? PTR : conv === 'x' || conv === 'X' ? HEX : 'diu'.includes(conv ?? '?') ? DEC : -1;
    if (op < 0) throw new Error(`trace event ${name}: unsupported conversion %${format.slice(i + 1, j + 1)}`);
    if (op === STR && ops.length > 0 && ops[ops.length - 1] === STR) {
      throw new Error(`trace event ${name}: two %s in a row cannot be split`);
    }
    ops.push(op);
    lits.push('');
    i = j;
  }
  flushLit();
  const conversions = ops.filter((o) => o !== LIT).length;
  if (conversions !== fields.length) {
    throw new Error(`trace event ${name}: format has ${conversions} conversions but ${fields.length} field names`);
  }
  for (let k = 0; k + 1 < ops.length; k++) {
    if (ops[k] === STR && ops[k + 1] !== LIT) throw new Error(`trace event ${name}: %s must be followed by literal text`);
  }
  return { name, fields, ops: Uint8Array.from(ops), lits };
}

const COMPILED = new Map<string, CompiledEvent>();
for (const name of Object.keys(QEMU_TRACE_EVENTS) as TraceEventName[]) {
  const spec = QEMU_TRACE_EVENTS[name];
  COMPILED.set(name, compileFormat(name, spec.format, spec.fields));
}

// ---------------------------------------------------------------------------
// Argument matching

/** Scratch space for one line's values: no allocation per line for the array. */
const values: Array<string | number | null> = new Array(16).fill(0);

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Position after the number at `pos` (value left in `parsed`), or -1 when there is none. */
let parsed = 0;
function parseDec(s: string, pos: number): number {
  let p = pos;
  let neg = false;
  if (s.charCodeAt(p) === 45) {
    neg = true;
    p++;
  }
  const start = p;
  let v = 0;
  for (let c = s.charCodeAt(p); c >= 48 && c <= 57; c = s.charCodeAt(++p)) v = v * 10 + (c - 48);
  if (p === start) return -1;
  parsed = neg ? -v : v;
  return p;
}

function parseHex(s: string, pos: number): number {
  let p = pos;
  let v = 0;
  for (let d = hexDigit(s.charCodeAt(p)); d >= 0; d = hexDigit(s.charCodeAt(++p))) v = v * 16 + d;
  if (p === pos) return -1;
  parsed = v;
  return p;
}

/** printf prints a NULL `%s` as "(null)". */
function stringValue(s: string): string | null {
  return s === '(null)' ? null : s;
}

/**
 * Matches the steps from `i` on against `s` from `pos` to its end, writing values from
 * `k`. A `%s` takes the shortest text after which the rest still matches (backtracking
 * over the next literal's occurrences: block names may contain '@' or ':').
 */
function matchFrom(c: CompiledEvent, i: number, s: string, pos: number, k: number): boolean {
  const ops = c.ops;
  const n = ops.length;
  for (; i < n; i++) {
    switch (ops[i]) {
      case LIT: {
        const lit = c.lits[i]!;
        if (!s.startsWith(lit, pos)) return false;
        pos += lit.length;
        break;
      }
      case DEC:
        pos = parseDec(s, pos);
        if (pos < 0) return false;
        values[k++] = parsed;
        break;
      case HEX:
        pos = parseHex(s, pos);
        if (pos < 0) return false;
        values[k++] = parsed;
        break;
      case PTR:
        if (s.charCodeAt(pos) === 48 && s.charCodeAt(pos + 1) === 120) {
          pos = parseHex(s, pos + 2);
          if (pos < 0) return false;
          values[k++] = parsed;
        } else if (s.startsWith('(nil)', pos)) {
          pos += 5;
          values[k++] = 0;
        } else {
          return false;
        }
        break;
      default: {
        // STR
        if (i === n - 1) {
          values[k] = stringValue(s.slice(pos));
          return true;
        }
        const next = c.lits[i + 1]!;
        for (let at = s.indexOf(next, pos); at >= 0; at = s.indexOf(next, at + 1)) {
          values[k] = stringValue(s.slice(pos, at));
          if (matchFrom(c, i + 1, s, at, k + 1)) return true;
        }
        return false;
      }
    }
  }
  return pos === s.length;
}

// ---------------------------------------------------------------------------
// Lines

/** A line that did not yield an event. */
export class LineProblem {
  constructor(
    /** 1-based line number. */
    readonly line: number,
    /**
     * 'unknown': shaped like a trace line but the event is not in the catalogue;
     * 'malformed': a known event whose arguments do not match its format;
     * 'not-trace': not shaped like a trace line at all.
     */
    readonly problem: 'unknown' | 'malformed' | 'not-trace',
    /** The event name, or '' for not-trace lines. */
    readonly name: string,
    /** The line's text (cut to 200 characters). */
    readonly text: string,
  ) {}
}

/** Returned for a known event that the parser was told not to parse (`only`). */
export const SKIPPED = Symbol('skipped');

/** An event name after `tid@time:`. */
const TIMED_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Without the prefix, only snake_case names with an underscore pass for events: "The quick" is text. */
const UNTIMED_NAME = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$/;

/**
 * Parses lines. Holds the optional `only` filter: events outside it are recognised but
 * not parsed (returned as SKIPPED), which is what makes selective imports fast.
 */
export class TraceLineParser {
  private readonly only: ReadonlySet<string> | null;
  /** Whether the last line parsed carried a `tid@sec.usec:` prefix. */
  lastTimed = false;

  constructor(only?: Iterable<TraceEventName>) {
    this.only = only === undefined ? null : new Set<string>(only);
  }

  /**
   * Parses one line (without its newline). Returns the event, SKIPPED, a LineProblem,
   * or null for an empty line.
   */
  parse(text: string, lineNo: number): TraceEvent | LineProblem | typeof SKIPPED | null {
    let len = text.length;
    if (len > 0 && text.charCodeAt(len - 1) === 13) text = text.slice(0, --len);
    if (len === 0) return null;
    let tid = NO_TIME;
    let timeUs = NO_TIME;
    let nameStart = 0;
    this.lastTimed = false;
    const c0 = text.charCodeAt(0);
    if (c0 >= 48 && c0 <= 57) {
      // <tid>@<sec>.<usec>:
      let p = parseDec(text, 0);
      if (p < 0 || text.charCodeAt(p) !== 64) return this.notTrace(text, lineNo);
      tid = parsed;
      p = parseDec(text, p + 1);
      if (p < 0 || text.charCodeAt(p) !== 46) return this.notTrace(text, lineNo);
      const sec = parsed;
      const q = parseDec(text, p + 1);
      if (q !== p + 7 || text.charCodeAt(q) !== 58) return this.notTrace(text, lineNo);
      timeUs = sec * 1e6 + parsed;
      nameStart = q + 1;
      this.lastTimed = true;
    }
    let nameEnd = text.indexOf(' ', nameStart);
    if (nameEnd < 0) nameEnd = len;
    const name = text.slice(nameStart, nameEnd);
    const compiled = COMPILED.get(name);
    if (compiled === undefined) {
      if (!(this.lastTimed ? TIMED_NAME : UNTIMED_NAME).test(name)) return this.notTrace(text, lineNo);
      return new LineProblem(lineNo, 'unknown', name, text.slice(0, 200));
    }
    if (this.only !== null && !this.only.has(name)) return SKIPPED;
    const args = nameEnd < len ? text.slice(nameEnd + 1) : '';
    if (!matchFrom(compiled, 0, args, 0, 0)) return new LineProblem(lineNo, 'malformed', name, text.slice(0, 200));
    const event: Record<string, unknown> = { kind: name, line: lineNo, tid, timeUs };
    const fields = compiled.fields;
    for (let j = 0; j < fields.length; j++) event[fields[j]!] = values[j];
    return event as unknown as TraceEvent;
  }

  private notTrace(text: string, lineNo: number): LineProblem {
    this.lastTimed = false;
    return new LineProblem(lineNo, 'not-trace', '', text.slice(0, 200));
  }
}

const defaultParser = new TraceLineParser();

/** Parses one line with every event enabled (see TraceLineParser.parse). */
export function parseTraceLine(text: string, lineNo = 1): TraceEvent | LineProblem | null {
  const r = defaultParser.parse(text, lineNo);
  return r === SKIPPED ? null : r;
}

// ---------------------------------------------------------------------------
// Streaming

/** Lines longer than this are not trace lines; they are dropped (reported) to bound memory. */
export const MAX_LINE_CHARS = 1 << 20;
/** Distinct unknown event names counted one by one; further names are counted together. */
export const MAX_UNKNOWN_NAMES = 1000;
/** The `unknown` key that counts the names beyond MAX_UNKNOWN_NAMES. */
export const OTHER_UNKNOWN = '(other names)';

export interface TraceProgress {
  /** Bytes of the file read so far (compressed bytes for a .gz). */
  bytesRead: number;
  totalBytes: number;
  lines: number;
}

export interface ReadTraceOptions {
  /** Parse only these events; others are counted as `skipped`. Default: all. */
  only?: Iterable<TraceEventName>;
  /** Called after each chunk. */
  onProgress?: (p: TraceProgress) => void;
  /** Called for each unknown, malformed or not-trace line. */
  onProblem?: (p: LineProblem) => void;
  /** A file whose first `sniffLines` non-empty lines hold no trace line is refused. Default 50. */
  sniffLines?: number;
  /** How many problem lines the summary keeps (the counts are always complete). Default 100. */
  keepProblems?: number;
}

export interface TraceReadSummary {
  file: string;
  compressed: boolean;
  totalBytes: number;
  lines: number;
  /** Events delivered to `onEvent`. */
  events: number;
  /** Known events not parsed because of `only`. */
  skipped: number;
  /** Lines of events not in the catalogue, by event name (at most MAX_UNKNOWN_NAMES names, then OTHER_UNKNOWN). */
  unknown: Record<string, number>;
  /** Known events whose arguments did not parse, plus lines that are not trace lines. */
  malformedCount: number;
  /** The first `keepProblems` malformed lines, with their line numbers. */
  malformed: LineProblem[];
  /** Whether the lines carry `tid@sec.usec:` (QEMU run with -msg timestamp=on). */
  timed: boolean;
  /** Set when a .gz stream ended early or was corrupt after the trace began: what was read is kept. */
  truncated: string | null;
}

/** Pure: true when the bytes start like a gzip stream. */
function isGzip(head: Buffer): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

/**
 * Streams the trace at `path` and calls `onEvent` for every event, in file order.
 * Throws NotATraceError when the first `sniffLines` non-empty lines contain no trace
 * line (a line of a known event, or any `tid@sec.usec:name` line).
 */
export async function readTrace(
  path: string,
  onEvent: (e: TraceEvent) => void,
  opts: ReadTraceOptions = {},
): Promise<TraceReadSummary> {
  const batches = traceEventBatches(path, opts);
  try {
    for (;;) {
      const next = await batches.next();
      if (next.done === true) return next.value;
      for (const e of next.value) onEvent(e);
    }
  } catch (err) {
    // Stop reading (closes the file) when the caller's handler throws.
    await batches.return(undefined as never);
    throw err;
  }
}

/**
 * The pull side of `readTrace`: the events of the trace in file order, one batch per
 * chunk read (a few thousand lines), and the summary as the generator's return value.
 * A consumer that pulls from two traces at once (a merge by time) holds one batch of
 * each, so memory stays bounded; stopping early (`return()`) closes the file.
 */
export async function* traceEventBatches(path: string, opts: ReadTraceOptions = {}): AsyncGenerator<TraceEvent[], TraceReadSummary, void> {
  const sniffLines = opts.sniffLines ?? 50;
  const keep = opts.keepProblems ?? 100;
  const parser = new TraceLineParser(opts.only);
  const st = await stat(path);
  // A FIFO or a device (/dev/zero) would block or never end: refused before any read.
  if (!st.isFile()) throw new NotARegularFileError(path, fileKind(st));
  const totalBytes = st.size;
  const head = Buffer.alloc(2);
  const fh = await open(path, 'r');
  try {
    await fh.read(head, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const compressed = isGzip(head);
  const summary: TraceReadSummary = {
    file: path,
    compressed,
    totalBytes,
    lines: 0,
    events: 0,
    skipped: 0,
    unknown: {},
    malformedCount: 0,
    malformed: [],
    timed: false,
    truncated: null,
  };
  let nonEmpty = 0;
  let recognised = false;
  let batch: TraceEvent[] = [];

  // A Map, not the summary's object: an event could be named __proto__ or toString.
  const unknown = new Map<string, number>();
  /** Parses one line, or reports it as too long when `text` is null. */
  const handleLine = (text: string | null): void => {
    const lineNo = ++summary.lines;
    const r = text === null ? new LineProblem(lineNo, 'not-trace', '', `(a line longer than ${MAX_LINE_CHARS} characters)`) : parser.parse(text, lineNo);
    if (r === null) return;
    nonEmpty++;
    if (r === SKIPPED) {
      summary.skipped++;
      recognised = true;
      if (parser.lastTimed) summary.timed = true;
    } else if (r instanceof LineProblem) {
      if (r.problem === 'unknown') {
        // Bounded: a corrupt file could invent a new name per line.
        const name = unknown.has(r.name) || unknown.size < MAX_UNKNOWN_NAMES ? r.name : OTHER_UNKNOWN;
        unknown.set(name, (unknown.get(name) ?? 0) + 1);
        if (parser.lastTimed) recognised = true;
      } else {
        summary.malformedCount++;
        if (summary.malformed.length < keep) summary.malformed.push(r);
      }
      opts.onProblem?.(r);
    } else {
      summary.events++;
      recognised = true;
      if (r.tid !== NO_TIME) summary.timed = true;
      batch.push(r);
    }
    if (!recognised && nonEmpty >= sniffLines) {
      throw new NotATraceError(path, `none of its first ${nonEmpty} non-empty lines is a QEMU trace line`);
    }
  };
  const takeBatch = (): TraceEvent[] => {
    const out = batch;
    batch = [];
    return out;
  };

  const file = createReadStream(path, { highWaterMark: 256 * 1024 });
  const source = compressed ? file.pipe(createGunzip({ chunkSize: 256 * 1024 })) : file;
  if (compressed) file.on('error', (err) => source.destroy(err));
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let overlong = false;
  const consume = (s: string): void => {
    let start = 0;
    for (let nl = s.indexOf('\n'); nl >= 0; nl = s.indexOf('\n', start)) {
      if (overlong || nl - start > MAX_LINE_CHARS) {
        overlong = false;
        handleLine(null);
      } else {
        handleLine(s.slice(start, nl));
      }
      start = nl + 1;
    }
    carry = s.slice(start);
    if (carry.length > MAX_LINE_CHARS) {
      overlong = true;
      carry = '';
    }
  };
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      const text = decoder.write(chunk);
      consume(carry === '' ? text : carry + text);
      opts.onProgress?.({ bytesRead: file.bytesRead, totalBytes, lines: summary.lines });
      if (batch.length > 0) yield takeBatch();
    }
  } catch (err) {
    if (err instanceof NotATraceError) throw err;
    const code = (err as { code?: string }).code ?? '';
    if (!compressed || !code.startsWith('Z_')) throw err;
    if (!recognised) throw new NotATraceError(path, `its gzip stream is unreadable (${(err as Error).message})`);
    summary.truncated = `gzip stream ended early or is corrupt: ${(err as Error).message}`;
  } finally {
    file.destroy();
    if (source !== file) source.destroy();
  }
  const rest = carry + decoder.end();
  if (overlong || rest.length > MAX_LINE_CHARS) handleLine(null);
  else if (rest !== '') handleLine(rest);
  if (!recognised) {
    throw new NotATraceError(path, nonEmpty === 0 ? 'it has no lines' : `none of its ${nonEmpty} non-empty lines is a QEMU trace line`);
  }
  if (batch.length > 0) yield takeBatch();
  summary.unknown = Object.fromEntries(unknown);
  return summary;
}

/** Every event name of the catalogue (for `only` lists and documentation). */
export function knownEventNames(): TraceEventName[] {
  return Object.keys(QEMU_TRACE_EVENTS).filter(isTraceEventName);
}
