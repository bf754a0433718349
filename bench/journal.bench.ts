/**
 * journal.append: events per second from the engine's append to durable in SQLite
 * (segments, group commit, crash-surviving tail), beside one row per event (msgpackr
 * payload, transactions of 10 000) measured in the same run.
 * replay.verify.*: journal events replayed with verification per second, from SQLite,
 * at 10^5, 10^6 and 10^7 events, beside a row-by-row read with one msgpackr decode per row.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { MigCommand } from '../src/engine/constants.js';
import { Destination } from '../src/engine/destination.js';
import { EventKind } from '../src/engine/events.js';
import { encodeAdvise } from '../src/engine/wire.js';
import { MockBackend } from '../src/io/backends/mockBackend.js';
import { JournalReader } from '../src/journal/journalReader.js';
import { JournalWriter } from '../src/journal/journalWriter.js';
import type { JournalMeta } from '../src/journal/meta.js';
import { replay } from '../src/journal/replay.js';
import { median, type Benchmark } from './harness.js';

const dir = (): string => mkdtempSync(join(tmpdir(), 'pcbench-'));
const META: Omit<JournalMeta, 'blocks'> = {
  engineVersion: 'bench', source: 'engine', created: new Date(0).toISOString(), timeOriginNs: 0,
  vcpuTids: [73001, 73002], capabilities: [], blocktimeMode: 'both',
};

function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** One row per event, as a naive journal would store it. */
function rowPerEventRate(n: number): { write: number; read: number } {
  const d = dir();
  const db = new Database(join(d, 'rows.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE events (seq INTEGER PRIMARY KEY, t REAL, kind INTEGER, payload BLOB)');
  const ins = db.prepare('INSERT INTO events (seq, t, kind, payload) VALUES (?, ?, ?, ?)');
  const write = seconds(() => {
    for (let start = 0; start < n; start += 10_000) {
      db.transaction(() => {
        for (let i = start; i < Math.min(n, start + 10_000); i++) {
          ins.run(i, i * 1000, i & 1 ? EventKind.FX_COPY : EventKind.IN_PAGE, pack({ block: 0, offset: (i >> 1) * 4096, a: i & 1 ? 4096 : 0, b: 0, cause: i & 1 ? i - 1 : -1 }));
        }
      })();
    }
  });
  let sum = 0;
  const read = seconds(() => {
    for (const row of db.prepare('SELECT seq, t, kind, payload FROM events ORDER BY seq').iterate() as Iterable<{ payload: Buffer }>) {
      sum += (unpack(row.payload) as { offset: number }).offset;
    }
  });
  db.close();
  rmSync(d, { recursive: true, force: true });
  if (sum < 0) throw new Error('unreachable');
  return { write: n / write, read: n / read };
}

const APPEND_EVENTS = 2_000_000;

/** Writes a journal of about `events` events by running the engine over zero and data pages. */
function recordJournal(path: string, events: number): number {
  const pages = Math.ceil(events / 2);
  const length = Math.max(1, Math.ceil(pages / 262144)) * 262144 * 4096;
  const blocks = [{ name: 'pc.ram', length, hostPageSize: 4096 }];
  const backend = new MockBackend(blocks);
  const w = JournalWriter.create(path, { ...META, blocks: [{ ...blocks[0]!, hostAddress: backend.hostAddress(0) }] }, { overwrite: true });
  const engine = new Destination({ blocks, vcpuTids: [73001, 73002], preempt: false }, backend, { send: () => true }, w);
  w.setSnapshotSource(() => engine.snapshot());
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: 4096, targetPageSize: 4096 }), 1);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2);
  const data = new Uint8Array(4096).fill(1);
  for (let p = 0; p < pages; p++) engine.page(0, 0, p * 4096, p % 64 !== 0, data, 0, 10 + p);
  const n = w.nextSeq;
  w.close();
  return n;
}

function appendBench(): Benchmark {
  return {
    name: 'journal.append',
    description: 'events per second, engine record → durable in SQLite',
    run() {
      const rates: number[] = [];
      for (let r = 0; r < 5; r++) {
        const d = dir();
        const w = JournalWriter.create(join(d, 'j.db'), { ...META, blocks: [{ name: 'pc.ram', length: 4096, hostAddress: 0 }] });
        const secs = seconds(() => {
          for (let i = 0; i < APPEND_EVENTS; i += 2) {
            w.append(EventKind.IN_PAGE, i * 1000, -1, 0, (i >> 1) * 4096, 0, 0, null);
            w.append(EventKind.FX_COPY, i * 1000, i, 0, (i >> 1) * 4096, 4096, 0, null);
          }
          w.close(); // flush + checkpoint: everything is in the SQLite file
        });
        rates.push(APPEND_EVENTS / secs);
        rmSync(d, { recursive: true, force: true });
      }
      const base = rowPerEventRate(200_000);
      return {
        median: median(rates),
        unit: 'events/s',
        runs: rates.length,
        higherIsBetter: true,
        baseline: { name: 'one row per event (msgpackr payload, 10 000 per transaction)', median: base.write, source: 'measured' },
        notes: `${APPEND_EVENTS} events per run, crash-surviving tail on; goal ≥ 2 000 000 events/s`,
      };
    },
  };
}

function replayBench(events: number, label: string): Benchmark {
  return {
    name: `replay.verify.${label}`,
    description: `events replayed with verification per second from a ${label}-event journal`,
    run() {
      const d = dir();
      const path = join(d, 'r.db');
      const n = recordJournal(path, events);
      const rates: number[] = [];
      const runs = events >= 10_000_000 ? 3 : 5;
      for (let r = 0; r < runs; r++) {
        const j = JournalReader.open(path);
        let ok = false;
        const secs = seconds(() => {
          ok = replay(j).ok;
        });
        j.close();
        if (!ok) throw new Error(`replay of the ${label} journal diverged`);
        rates.push(n / secs);
      }
      rmSync(d, { recursive: true, force: true });
      const base = rowPerEventRate(100_000);
      return {
        median: median(rates),
        unit: 'events/s',
        runs,
        higherIsBetter: true,
        baseline: { name: 'row-by-row read, one msgpackr decode per row', median: base.read, source: 'measured' },
        notes: `${n} events; goal ≥ 2 000 000 events/s and linear scaling`,
      };
    },
  };
}

export const benchmarks: Benchmark[] = [appendBench(), replayBench(100_000, '1e5'), replayBench(1_000_000, '1e6'), replayBench(10_000_000, '1e7')];
