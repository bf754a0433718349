/**
 * `threads.json` beside a QEMU capture: TID → thread name for the destination and
 * source processes, and the mapping from a fault's `pid=` (a vCPU thread's TID) to its
 * vCPU index (threads named `CPU <n>/KVM` or `CPU <n>/TCG`, QEMU's debug-threads names).
 *
 * File shape: { "dst": { "<tid>": { "comm": name, "names": [names...], ... } }, "src": {...} }.
 */
import { readFile } from 'node:fs/promises';
import { NotATraceError } from '../../errors.js';

/** TID → names seen for that thread (the current name, `comm`, first). */
export type ThreadNames = ReadonlyMap<number, readonly string[]>;

export interface QemuThreads {
  dst: ThreadNames;
  src: ThreadNames;
}

/** Pure: parses the text of a threads.json; `file` names it in errors. */
export function parseThreadsJson(text: string, file: string): QemuThreads {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new NotATraceError(file, `threads.json is not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null) throw new NotATraceError(file, 'threads.json is not an object');
  const side = (key: 'dst' | 'src'): ThreadNames => {
    const out = new Map<number, string[]>();
    const part = (doc as Record<string, unknown>)[key];
    if (part === undefined) return out;
    if (typeof part !== 'object' || part === null) throw new NotATraceError(file, `threads.json: "${key}" is not an object`);
    for (const [tidText, info] of Object.entries(part as Record<string, unknown>)) {
      const tid = Number(tidText);
      if (!Number.isInteger(tid) || tid <= 0) throw new NotATraceError(file, `threads.json: "${tidText}" is not a thread id`);
      const rec = (info ?? {}) as { comm?: unknown; names?: unknown };
      const names: string[] = [];
      if (typeof rec.comm === 'string') names.push(rec.comm);
      if (Array.isArray(rec.names)) for (const n of rec.names) if (typeof n === 'string' && !names.includes(n)) names.push(n);
      out.set(tid, names);
    }
    return out;
  };
  return { dst: side('dst'), src: side('src') };
}

/** Reads and parses a threads.json file. */
export async function loadThreadsJson(path: string): Promise<QemuThreads> {
  return parseThreadsJson(await readFile(path, 'utf8'), path);
}

/** Pure: the vCPU index of a thread name ("CPU 1/KVM" → 1), or -1 if it is not a vCPU. */
export function vcpuIndexOfName(name: string): number {
  if (!name.startsWith('CPU ')) return -1;
  const slash = name.indexOf('/', 4);
  const digits = name.slice(4, slash < 0 ? name.length : slash);
  return /^\d+$/.test(digits) ? Number(digits) : -1;
}

/** Pure: TID → vCPU index, for every thread that ever had a vCPU name. */
export function vcpuIndexByTid(threads: ThreadNames): Map<number, number> {
  const out = new Map<number, number>();
  for (const [tid, names] of threads) {
    for (const n of names) {
      const idx = vcpuIndexOfName(n);
      if (idx >= 0) {
        out.set(tid, idx);
        break;
      }
    }
  }
  return out;
}

/** Pure: the number of vCPUs a process had (highest index + 1; 0 when none is named). */
export function vcpuCountOf(threads: ThreadNames): number {
  let max = -1;
  for (const idx of vcpuIndexByTid(threads).values()) max = Math.max(max, idx);
  return max + 1;
}
