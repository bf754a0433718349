/** Shared by the forensics tests: temp journals, imports of the QEMU 7.2 captures, the CLI. */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Destination } from '../../src/engine/destination.js';
import { MockBackend } from '../../src/io/backends/mockBackend.js';
import { analyzeJournal } from '../../src/forensics/analysis.js';
import type { Analysis } from '../../src/forensics/analysisTypes.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter, type JournalWriterOptions } from '../../src/journal/journalWriter.js';
import { importQemuTrace, type ImportQemuOptions, type ImportSummary } from '../../src/io/qemu/qemuImport.js';
import { fixture } from '../fixtures.js';
import { scratchDir } from '../scratchDir.js';

export { fixture };

const dir = scratchDir('forensics-test-');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** A destination driven by hand over a mock backend (one 4 KiB-page block 'pc.ram'), journaled to `path`. */
export function handDriven(path: string, pages: number, vcpuTids: number[], writerOptions: JournalWriterOptions = {}, preempt = false): { engine: Destination; writer: JournalWriter; host: number } {
  const blocks = [{ name: 'pc.ram', length: pages * 4096 }];
  const backend = new MockBackend([{ ...blocks[0]!, hostPageSize: 4096 }], { vcpuTids });
  const writer = JournalWriter.create(path, {
    engineVersion: 'test',
    source: 'engine',
    created: new Date(0).toISOString(),
    timeOriginNs: 0,
    blocks: [{ ...blocks[0]!, hostPageSize: 4096, hostAddress: backend.hostAddress(0) }],
    vcpuTids,
    capabilities: preempt ? ['preempt'] : [],
    blocktimeMode: 'both',
  }, writerOptions);
  const engine = new Destination({ blocks, vcpuTids, preempt }, backend, { send: () => true }, writer);
  return { engine, writer, host: backend.hostAddress(0) };
}

/** A fresh path in this run's temp folder. */
export function tmpPath(name: string): string {
  return join(dir, `${++files}-${name}`);
}

export interface QueryMigrate {
  status: string;
  'postcopy-blocktime'?: number;
  'postcopy-vcpu-blocktime'?: number[];
}

/** QEMU's own final figures for a capture. */
export function queryMigrate(run: string): QueryMigrate {
  return JSON.parse(readFileSync(fixture(run, 'query-migrate-dst.json'), 'utf8')) as QueryMigrate;
}

/** Reads and analyzes a journal, closing it. */
export function analyze(path: string, opts = {}): Analysis {
  const reader = JournalReader.open(path);
  try {
    return analyzeJournal(reader, opts);
  } finally {
    reader.close();
  }
}

export interface Imported {
  path: string;
  summary: ImportSummary;
  analysis: Analysis;
}

const imports = new Map<string, Promise<Imported>>();

/** Imports a capture's destination trace once per set of options and analyzes the journal. */
export function importRun(run: string, opts: Partial<ImportQemuOptions> = {}): Promise<Imported> {
  const key = `${run} ${JSON.stringify(opts)}`;
  let p = imports.get(key);
  if (p === undefined) {
    p = (async () => {
      const path = tmpPath(`${run}.db`);
      const summary = await importQemuTrace({ dstTrace: fixture(run, 'dst-trace.log.gz'), out: path, ...opts });
      return { path, summary, analysis: analyze(path) };
    })();
    imports.set(key, p);
  }
  return p;
}

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

/** Runs the `postcopy` command line; stderr is not a terminal, so progress prints plain lines there. */
export function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
