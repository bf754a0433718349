import test from 'ava';
import { dirname, join } from 'node:path';
import { runMigration, type MigrateCommandOptions } from '../../src/cli/migrateCommand.js';
import { EventKind, type EventRecord } from '../../src/engine/events.js';
import { PlaceOutcome } from '../../src/engine/ports.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { analyzeJournal } from '../../src/forensics/analysis.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { replay } from '../../src/journal/replay.js';
import { advise, listen, pageData, rig, run } from '../engine/harness.js';
import { scratchDir } from '../scratchDir.js';

/**
 * End-to-end migrations between two real processes on 127.0.0.1 with the native
 * userfaultfd backend and real vCPU threads (32 MiB guests). Each checks the exit status,
 * the memory (verified page for page by the orchestrator) and that the destination's
 * journal replays with zero divergence.
 */

const probe = UffdBackend.probe([{ name: 'pc.ram', length: 32 << 20, hostPageSize: 4096 }]);
if (!probe.ok) console.log(`[e2e] userfaultfd refused on this host, the destination falls back to the mock backend: ${probe.reason}`);

function options(extra: Partial<MigrateCommandOptions>): MigrateCommandOptions & { journal: string } {
  const dir = scratchDir('pce2e-');
  return {
    size: '32M', vcpus: '2', workload: 'sequential-increment', bandwidth: '0', dirtyRate: '20000',
    journal: join(dir, 'dst.journal'), backend: 'auto', faultReader: 'loop', seed: '7', quiet: true, ...extra,
  };
}

function replaysCleanly(path: string): { events: number; status: string } {
  const j = JournalReader.open(path);
  try {
    const r = replay(j);
    if (!r.ok) throw new Error(r.divergence!.message);
    return { events: r.events, status: r.engine.stateOf(1) };
  } finally {
    j.close();
  }
}

/**
 * Placements of a received page that found it already there (EEXIST). A stale fault's
 * zero placement may (the page came meanwhile); a page from the stream must not.
 */
function countPagesArrivedTwice(records: Iterable<EventRecord>): number {
  const pageInputs = new Set<number>();
  let twice = 0;
  for (const e of records) {
    if (e.kind === EventKind.IN_PAGE) pageInputs.add(e.seq);
    else if ((e.kind === EventKind.FX_COPY || e.kind === EventKind.FX_ZERO) && e.b === PlaceOutcome.ALREADY_PRESENT && pageInputs.has(e.cause)) twice++;
  }
  return twice;
}

function pagesArrivedTwice(path: string): number {
  const j = JournalReader.open(path);
  try {
    return countPagesArrivedTwice(j.records());
  } finally {
    j.close();
  }
}

test('the duplicate-page check sees a page that arrives twice, and not a stale fault', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  run(r);
  r.engine.page(0, 0, 4096, false, pageData(4096), 0, 10);
  t.is(countPagesArrivedTwice(r.sink.records), 0);
  r.engine.fault(r.backend.hostAddress(0) + 4096, 73001, 11); // stale: the page is already there
  const stale = r.sink.records.filter((e) => (e.kind === EventKind.FX_COPY || e.kind === EventKind.FX_ZERO) && e.b === PlaceOutcome.ALREADY_PRESENT);
  t.is(stale.length, 1, 'the stale fault met the page already there');
  t.is(countPagesArrivedTwice(r.sink.records), 0);
  r.engine.page(0, 0, 4096, false, pageData(4096), 0, 12);
  t.is(countPagesArrivedTwice(r.sink.records), 1);
});

const cases: Array<[string, Partial<MigrateCommandOptions>]> = [
  ['plain', {}],
  ['plain, reader thread', { faultReader: 'thread' }],
  ['preempt', { preempt: true }],
  ['2 MiB huge-page block', { hugePages: true }],
  ['random workload', { workload: 'random' }],
  ['break and recover', { breakAt: '0.3' }],
  // The earliest cut: it waits until the destination has read LISTEN (pages queued ahead
  // of it would otherwise fail the migration instead of pausing it).
  ['break at the switch and recover', { breakAt: '0' }],
  ['break and recover with preempt', { breakAt: '0.5', preempt: true, workload: 'hot-set' }],
  // 16 MiB/s: slow enough that vCPUs descheduled by a loaded host still outrun the push (64 MiB/s was not, once).
  ['capped bandwidth, preempt: pages prefetched ahead of the faulting vCPUs', { bandwidth: '16M', preempt: true }],
  // QEMU's max-postcopy-bandwidth: precopy runs free, the postcopy push waits on the cap.
  // The bootblock guest's vCPUs write their whole share pass after pass: all of it dirty at the switch.
  ['bootblock guest, preempt', { workload: 'bootblock', preempt: true }],
  // The hot-set workload touches few pages: the push, not the requests, moves most of the memory.
  ['postcopy capped at 8 MiB/s, preempt', { maxPostcopyBandwidth: '8M', preempt: true, workload: 'hot-set' }],
];

for (const [name, extra] of cases) {
  test.serial(`migrate (${name}): exit 0, memory verified, the journal replays with zero divergence`, async (t) => {
    const o = options(extra);
    const r = await runMigration(o);
    t.is(r.exitCode, 0, r.message);
    t.true(r.verified, r.message);
    t.deepEqual(r.mismatches, []);
    t.is(r.backend.kind, probe.ok ? 'uffd' : 'mock');
    t.is(r.destination!.status, 'completed');
    t.is(r.destination!.outstanding, 0);
    if (extra.breakAt) t.is(r.source!.reconnects, 1, 'the cut happened and the source reconnected');
    t.is(pagesArrivedTwice(o.journal), 0, 'no page arrived twice (recovery neither loses nor duplicates a page)');
    if (extra.maxPostcopyBandwidth) {
      // 32 MiB at 8 MiB/s would take 4 s: a precopy far below that was not capped; the
      // postcopy push cannot have beaten the cap (the last push batch and prefetch batch may overshoot it by 96 pages).
      const charged = r.source!.postcopyChargedBytes;
      t.true(r.source!.precopyMs < 2000, `precopy took ${r.source!.precopyMs} ms: the postcopy cap held it back`);
      t.true(charged > 2 << 20, `only ${charged} bytes charged to the postcopy cap`);
      t.true(r.source!.postcopyMs >= ((charged - 96 * 4104) / (8 << 20)) * 1000, `postcopy took ${r.source!.postcopyMs} ms for ${charged} bytes at 8 MiB/s`);
      t.log(`precopy ${r.source!.precopyMs} ms, postcopy ${r.source!.postcopyMs} ms, ${charged} bytes charged to the cap`);
    }
    if (extra.workload === 'bootblock') {
      // 32 MiB: pages [32, 7 680) are the guests' working set ([1/256, 240/256) of RAM).
      const c = r.source!.counters;
      t.true(c.postcopyPages + c.urgentPages + c.prefetchPages >= 7_680 - 32, `only ${c.postcopyPages + c.urgentPages + c.prefetchPages} pages sent in postcopy: the working set was not all dirty at the switch`);
    }
    if (extra.bandwidth) t.true(r.source!.counters.prefetchPages > 0, 'vCPUs that outrun a capped push fault their way forward: the source sends ahead of them');
    const j = JournalReader.open(o.journal);
    const by = analyzeJournal(j).requests.answeredBy;
    j.close();
    t.is(by.main.count + by.preempt.count + by.unknown.count, r.destination!.stats.requests, 'every request was answered once, by some channel');
    if (!extra.preempt) t.is(by.preempt.count, 0);
    // A floor on the plain run's requests once guarded faults left unread until a socket read
    // ended (0–1 requests then, 87–345 with faults read between pages). Since a read's pages
    // are placed in runs of up to 32 (pageRuns.ts, one UFFDIO_COPY each, faults read between
    // runs) the destination keeps ahead of the vCPUs and a correct run may send 1 request: the
    // count no longer tells the bug apart. The gathering is tested in test/io/qemu/pageRuns.test.ts.
    const rep = replaysCleanly(o.journal);
    t.is(rep.status, 'completed');
    t.is(rep.events, r.destination!.events);
    t.log(`${r.destination!.events} events, ${r.destination!.stats.requests} requests, ${r.wallMs} ms`);
  });
}

for (const killAt of ['0.3', '0']) test.serial(`migrate with the source killed mid-postcopy (at ${killAt}): exit 3, the destination stays paused, the journal is complete and names the outstanding requests`, async (t) => {
  const o = options({ killSourceAt: killAt, size: '64M' });
  const r = await runMigration(o);
  t.is(r.exitCode, 3, r.message);
  t.false(r.verified);
  t.regex(r.message, /the source was lost during postcopy: the destination stays postcopy-paused with \d+ outstanding page requests/);
  t.regex(r.message, /postcopy inspect/);
  const j = JournalReader.open(o.journal);
  const a = analyzeJournal(j);
  j.close();
  t.is(a.status, 'postcopy-paused');
  // t = 0 is the source's first connection, not the destination's start (the source process's start-up once sat there).
  t.true(a.firstEventMs < Math.min(100, a.durationMs! / 4), `the journal's first event at ${a.firstEventMs} ms of ${a.durationMs} ms`);
  t.is(a.requests.outstanding.length, r.paused!.outstanding, 'inspect lists exactly the requests the destination was still waiting for');
  for (const req of a.requests.outstanding) t.true(req.ageMs >= 0 && req.block === 'pc.ram');
  t.is(replaysCleanly(o.journal).status, 'postcopy-paused');
});

test('migrate refuses bad options with a clear message', async (t) => {
  await t.throwsAsync(runMigration(options({ size: '3K' })), { message: /--size 3K is not a positive multiple of 4 KiB/ });
  await t.throwsAsync(runMigration(options({ workload: 'nope' })), { message: /--workload must be one of sequential-increment, random, hot-set/ });
  await t.throwsAsync(runMigration(options({ breakAt: '1.5' })), { message: /--break-at must be a fraction in \[0, 1\)/ });
  await t.throwsAsync(runMigration(options({ breakAt: '0.2', killSourceAt: '0.3' })), { message: /cannot be combined/ });
  await t.throwsAsync(runMigration(options({ prefetch: '-1' })), { message: /--prefetch must be a whole number of 4 KiB pages from 0 to 4096, got '-1'/ });
});

test('renicing a vCPU thread that already finished is not an error (it once paused a whole migration)', async (t) => {
  const { lowerPriority } = await import('../../src/io/backends/vcpuLauncher.js');
  t.notThrows(() => lowerPriority(2 ** 22 + 12345, 5));
  t.throws(() => lowerPriority(process.pid, -21));
});

test.serial('migrate --tap-journal: our two processes through postcopy tap, which decodes our wire as QEMU\'s and counts every request the destination sent', async (t) => {
  const o = options({ preempt: true, size: '64M' });
  const tapJournal = join(dirname(o.journal), 'tap.db');
  const r = await runMigration({ ...o, tapJournal });
  t.is(r.exitCode, 0, r.message);
  t.true(r.verified);
  t.truthy(r.tap?.summary, 'the tap recorded the migration');
  const s = r.tap!.summary!;
  t.is(s.migration, 'completed');
  t.is(s.postcopy, 'END');
  t.deepEqual(s.connections.map((c) => c.role), ['main', 'preempt']);
  t.true(s.connections.every((c) => c.undecodedFrom.length === 0), 'every byte decoded as QEMU\'s wire');
  const j = JournalReader.open(tapJournal);
  const a = analyzeJournal(j);
  j.close();
  t.is(a.journal.source, 'tap');
  t.is(a.tap!.requests.count, r.destination!.stats.requests, 'the relay saw every request the destination sent');
  t.is(a.firstEventMs, 0, 't = 0 is the first connection');
});
