import { constants as bufferConstants } from 'node:buffer';
import { totalmem } from 'node:os';
import { UsageError } from '../errors.js';

/** Parses '256M', '1G', '4096', '2MiB' into bytes; a clear UsageError names the option. */
export function parseSize(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${option} must be a size like 256M, 1G or 4096, got '${text}'`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 4096 !== 0) {
    throw new UsageError(`${option} ${text} is not a positive multiple of 4 KiB`);
  }
  return bytes;
}

/** The source's largest prefetch window by default, in 4 KiB pages (`--prefetch`). */
export const DEFAULT_PREFETCH_PAGES = 32;

/** Parses `--prefetch`: a whole number of 4 KiB pages from 0 (off) to 4096; a clear UsageError otherwise. */
export function parsePrefetchPages(text: string | undefined): number {
  const pages = text === undefined ? DEFAULT_PREFETCH_PAGES : Number(text);
  if (!Number.isInteger(pages) || pages < 0 || pages > 4096) throw new UsageError(`--prefetch must be a whole number of 4 KiB pages from 0 to 4096, got '${text}'`);
  return pages;
}

/** Bytes as a person reads them: 1 TiB, 23.5 GiB, 256 MiB. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * Refuses, before anything is created, a guest this machine cannot hold: `copies` guest-
 * sized buffers (`why` says whose) against physical memory (os.totalmem()), and one
 * buffer against the largest one Node can allocate. The message says the numbers.
 */
export function refuseGuestTooLarge(text: string, size: number, copies: number, why: string, physical = totalmem()): void {
  const need = copies * size;
  if (need > physical) {
    throw new UsageError(`--size ${text} needs ${formatBytes(need)} of memory (${why}: ${copies} × ${formatBytes(size)}), but this machine has ${formatBytes(physical)} of physical memory`);
  }
  if (size > bufferConstants.MAX_LENGTH) {
    throw new UsageError(`--size ${text} (${formatBytes(size)}) is larger than the largest buffer Node can allocate (${formatBytes(bufferConstants.MAX_LENGTH)})`);
  }
}

/** HOST:PORT ('127.0.0.1:4444', '[::1]:4444') of an option, or a UsageError naming it. */
export function parseEndpoint(text: string, option: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(text.trim());
  if (!m || m[1] === '') throw new UsageError(`${option} must be HOST:PORT, e.g. 127.0.0.1:4444, got '${text}'`);
  const port = Number(m[2]);
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`${option}: port ${m[2]} is not in 0..65535`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}
