/**
 * Test helper: the relay captures of test fixtures qemu-7.2/wire (README there): gzip of
 * "QMWIRE1\n", then records u8 conn, u8 dir, u64 t_ns, u32 len, len bytes (little-endian).
 * Each connection direction comes back as the list of the relay's own reads.
 */
import { readFileSync } from 'node:fs';
import { constants, gunzipSync } from 'node:zlib';
import { fixture } from '../../fixtures.js';

export const MAIN = 0;
export const PREEMPT = 1;
export const TO_DESTINATION = 0;
export const TO_SOURCE = 1;

export interface Capture {
  /** The relay's reads of one connection direction, in order (the closing 0-byte read left out). */
  reads(conn: number, dir: number): Uint8Array[];
  /** All bytes of one connection direction, in one piece. */
  bytes(conn: number, dir: number): Uint8Array;
}

const MAGIC = 'QMWIRE1\n';
const RECORD_HEAD = 14;

const cache = new Map<string, Capture>();

/** A capture by folder and file, e.g. ('plain', 'wire-main.gz'); parsed once per process. */
export function loadCapture(folder: string, file: string): Capture {
  const key = `${folder}/${file}`;
  const cached = cache.get(key);
  if (cached) return cached;
  const capture = parse(key, gunzipSync(readFileSync(fixture('wire', folder, file))));
  cache.set(key, capture);
  return capture;
}

/**
 * The start of a capture: what the first `compressedBytes` of its gzip hold (the last,
 * incomplete record left out). For tests that need a little of a stream quickly.
 */
export function loadCaptureHead(folder: string, file: string, compressedBytes: number): Capture {
  const gz = readFileSync(fixture('wire', folder, file)).subarray(0, compressedBytes);
  return parse(`${folder}/${file} (head)`, gunzipSync(gz, { finishFlush: constants.Z_SYNC_FLUSH }));
}

function parse(key: string, raw: Buffer): Capture {
  if (raw.subarray(0, 8).toString('latin1') !== MAGIC) throw new Error(`${key}: not a QMWIRE1 capture`);
  const streams = new Map<string, Uint8Array[]>();
  let at = 8;
  while (at + RECORD_HEAD <= raw.length) {
    const conn = raw[at]!;
    const dir = raw[at + 1]!;
    const length = raw.readUInt32LE(at + 10);
    at += RECORD_HEAD;
    if (at + length > raw.length) break;
    if (length > 0) {
      const k = `${conn}/${dir}`;
      let list = streams.get(k);
      if (!list) streams.set(k, (list = []));
      list.push(raw.subarray(at, at + length));
    }
    at += length;
  }
  return {
    reads: (conn, dir) => streams.get(`${conn}/${dir}`) ?? [],
    bytes: (conn, dir) => Buffer.concat(streams.get(`${conn}/${dir}`) ?? []),
  };
}
