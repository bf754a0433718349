import type { JournalSource } from '../journal/meta.js';

/**
 * What `analyzeJournal` finds in a journal (an engine run or an imported QEMU trace):
 * the data behind `postcopy inspect` (text and --json) and `postcopy report` (HTML).
 * Times are ms since the journal's t = 0 unless a name says otherwise. Plain JSON data.
 */
export interface Analysis {
  journal: {
    path: string;
    source: JournalSource;
    events: number;
    created: string;
    engineVersion: string;
    blocks: Array<{ name: string; length: number; hostPageSize: number }>;
    capabilities: string[];
    /** Events that could not be read (a damaged journal): the analysis covers the readable prefix. */
    unreadableFrom: number | null;
    unreadableReason: string | null;
  };
  /** Final migration status: 'completed', 'postcopy-paused', 'failed', ... */
  status: string;
  /** Final PostcopyState name: 'NONE' .. 'END'. */
  postcopyState: string;
  /**
   * The end of stream read on the main and the preempt channel's current connection (null:
   * not read). A main EOS with postcopy still RUNNING: the end waits for the preempt channel.
   */
  streamEnds: [{ seq: number; tMs: number } | null, { seq: number; tMs: number } | null];
  vcpus: number;
  /**
   * The one time base of every figure and plot: t = 0 is the journal's start (an engine run:
   * when its journal was opened; an imported trace: the destination trace's first line), and
   * the journal runs to `durationMs`, its last event. Every time in the analysis lies in
   * [0, durationMs].
   */
  durationMs: number;
  /** When the first event was written (an engine journal opens before the migration starts). */
  firstEventMs: number;
  /** Every state change of every machine, in order. */
  timeline: Array<{ seq: number; tMs: number; machine: string; from: string; to: string; event: string }>;
  /** Postcopy pauses: from postcopy-paused until postcopy-active again (null end: still paused). */
  pauses: Array<{
    startSeq: number;
    startMs: number;
    endMs: number | null;
    durationMs: number | null;
    /** The input that paused postcopy (a broken channel, a stream error) and its reason, when the journal has it. */
    causeSeq?: number;
    reason?: string;
    /** Imported with the source's trace: the source's last line before the pause (what it did last). */
    sourceLast?: SourceLine;
  }>;
  blocktime: {
    /** QEMU 7.2's algorithm with its quirks; for an imported trace this equals what QEMU reported. */
    qemu: {
      totalMs: number;
      perVcpuMs: number[];
      /**
       * Imported traces only: how the replay of QEMU's blocktime lines compares with the
       * running totals QEMU printed (0 mismatches: every intermediate figure reproduced).
       */
      check?: {
        endLines: number;
        totalMismatches: number;
        affectedMismatches: number;
        /** QEMU's final figure (cleanup), null when the run never got there. */
        reportedTotalMs: number | null;
        /** The running total on QEMU's last end line. */
        lastEndTotalMs: number | null;
        races: { alreadyReceivedBegin: number; endBeforeBeginStore: number };
        /** Begin lines of a vCPU the journal's meta does not count (left out of the replay). */
        unknownVcpuBegins: number;
      };
      /**
       * Imported with the destination's query-migrate answer: QEMU's own figures (ms). The
       * replay of the trace rebuilds each end's millisecond from the trace clock, so its
       * per-vCPU figures may differ from these by 1 ms.
       */
      reported?: { file: string; totalMs: number | null; perVcpuMs: number[] | null };
    };
    /**
     * Race-free truth: every fault's wait from the fault to its placement; a wait still open
     * at the end of the journal counts up to the end (`stillBlocked` names those vCPUs).
     */
    exact: { totalMs: number; perVcpuMs: number[]; perVcpuFaults: number[]; stillBlocked: Array<{ vcpu: number; sinceMs: number }> };
  };
  faults: {
    /** Faults seen (some found their page already there and never waited). */
    count: number;
    /** Faults in the latency figures: those that waited, and those still waiting at the end (at their age). */
    timed: number;
    /** Of `timed`: still waiting at the end of the journal, counted at their age (a lower bound). */
    unanswered: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
    maxMs: number;
    /** Fault → placement latency histogram: [fromMs, toMs) buckets. */
    histogram: Array<{ fromMs: number; toMs: number; count: number }>;
    /** The slowest faults (at most 20), slowest first. */
    slowest: Array<{ seq: number; tMs: number; block: string; offset: number; vcpu: number; latencyMs: number; unanswered?: true }>;
  };
  requests: {
    count: number;
    resent: number;
    /** Requested and never placed by the end of the journal, oldest first. */
    outstanding: Array<{ block: string; offset: number; address: number | null; requestedAtMs: number; ageMs: number; seq: number }>;
    /**
     * Request → placement by the channel whose page answered it: `main` mostly means the
     * page was already on its way (background push) when it was asked for; `preempt` is
     * the urgent path; `unknown` a placement not tied to a received page (a zero page).
     */
    answeredBy: { main: AnsweredRequests; preempt: AnsweredRequests; unknown: AnsweredRequests };
    /** `answeredBy`'s requests all together, whatever channel answered (a tap journal: every served request). */
    answered: AnsweredRequests;
  };
  pages: {
    placed: number;
    zero: number;
    precopy: number;
    /** Host pages placed per channel: { "0": n, "1": m }. */
    byChannel: Record<string, number>;
    discardedRanges: number;
  };
  /** Refused inputs and reported failures; `causeSeq`/`input` name the input that was refused. */
  errors: Array<{ seq: number; tMs: number; code: string; message: string; causeSeq?: number; input?: string }>;
  /** Imported with the source's trace (--src): its last line, null without one. A source that died stops there. */
  sourceLast: SourceLine | null;
  /** Imported with QEMU's stderr (--stderr): its lines (error_report: 'Detected IO failure ...'), at most 200. */
  stderr: Array<{ seq: number; tMs: number; text: string }>;
  /**
   * Events that decode but that neither the engine nor the importer can have written: a
   * time that is not finite, a block or offset outside the blocks, an unknown command, a
   * cause that is not an earlier event. Skipped by the analysis; `first` holds the first 100.
   */
  anomalies: { count: number; first: Array<{ seq: number; reason: string }> };
  /** A journal of `postcopy tap` only: what crossed the relay (see TapFindings). */
  tap?: TapFindings;
  /** For plots. Bounded in size whatever the journal length (downsampled). */
  series: {
    /** [tMs, pages received so far]. */
    received: Array<[number, number]>;
    /** Per vCPU: blocked intervals [startMs, endMs] (exact mode). */
    vcpuBlocked: Array<{ vcpu: number; intervals: Array<[number, number]> }>;
    /** Latency CDF: [ms, fraction of faults at or below]. */
    latencyCdf: Array<[number, number]>;
  };
}

/**
 * What a `postcopy tap` journal adds: the connections, and the requests as the relay saw
 * them. For a tap journal `requests.outstanding` lists the requests no page answered on the
 * wire, `requests.answeredBy` holds request → page-on-the-wire latencies of served requests
 * by the channel that carried the page, and `pages.placed` / `byChannel` count the pages that
 * crossed the relay in postcopy (the relay places nothing).
 */
export interface TapFindings {
  connections: Array<{
    id: number;
    role: string;
    client: string;
    upstream: string;
    openedMs: number;
    /** When its last direction ended (null: still open at the end of the journal). */
    closedMs: number | null;
    bytesToDestination: number;
    bytesToSource: number;
    error: string | null;
    /** Where the tap stopped decoding a direction (bytes it could not decode, or it fell behind); forwarding went on. */
    undecoded: Array<{ direction: 'to destination' | 'to source'; fromByte: number; reason: string }>;
  }>;
  requests: {
    /** REQ_PAGES and REQ_PAGES_ID seen on the return paths (to compare with the source's ram.postcopy-requests). */
    count: number;
    /** A page of the request crossed the relay after the request did. */
    served: number;
    /** Its page had already crossed the relay towards the destination (in postcopy, since the last break) when it was requested: it was in flight. */
    alreadyInFlight: number;
    /** How long before the request those pages had crossed, ms. */
    inFlightLead: AnsweredRequests;
    /** Never answered by a page on the wire (`requests.outstanding` lists them with their ages). */
    unanswered: number;
  };
  /**
   * Each break (postcopy paused): the requests that had crossed the relay and had no page
   * after them then — in flight when the connection broke, possibly never read by the source —
   * and, once the destination sent its receive bitmaps, the pages that had crossed the relay
   * but never reached the destination.
   */
  breaks: Array<{
    seq: number;
    tMs: number;
    reason: string;
    /**
     * Requests the source may never have read: those nothing answered, and every request younger
     * than `inFlightWindowMs` (the slowest answer seen so far, 10 ms to 1 s), even if a page of the
     * push crossed after it. A resumed source's count is at most this much lower than the tap's.
     */
    requestsInFlight: number;
    inFlightWindowMs: number;
    requests: Array<{ block: string; offset: number; requestedAtMs: number; ageMs: number }>;
    /** Null until receive bitmaps came after this break. */
    pagesLost: number | null;
    lostPages: Array<{ block: string; offset: number; crossedAtMs: number }>;
  }>;
  pings: number;
  pongs: number;
  shut: { tMs: number; status: number } | null;
  recvBitmaps: Array<{ tMs: number; block: string; receivedPages: number; pages: number }>;
  resumeAcks: number;
}

/** One line of the source's trace (kept as a note in an imported journal). */
export interface SourceLine {
  seq: number;
  tMs: number;
  event: string;
  text: string;
}

/** Requests answered by one channel: how many, and their request → placement latency. */
export interface AnsweredRequests {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Pure: the channels that answered at least one request, each with a name a person reads, main first. */
export function answeringChannels(a: Analysis): Array<{ name: string; answered: AnsweredRequests }> {
  const by = a.requests.answeredBy;
  return [
    { name: 'main channel (mostly pages already on their way)', answered: by.main },
    { name: 'preempt channel (the urgent path)', answered: by.preempt },
    { name: 'no received page (a zero page)', answered: by.unknown },
  ].filter((c) => c.answered.count > 0);
}

/**
 * Pure: one line on why QEMU's blocktime differs from the exact one, or null when they agree
 * to the ms. QEMU mode stays QEMU 7.2's own running figure; exact counts every wait.
 */
export function blocktimeDifference(a: Analysis): string | null {
  const q = a.blocktime.qemu;
  const e = a.blocktime.exact;
  const same = Math.round(q.totalMs) === Math.round(e.totalMs) && e.perVcpuMs.every((ms, v) => Math.abs(Math.round(ms) - (q.perVcpuMs[v] ?? 0)) <= 1);
  if (same) return null;
  const races = q.check === undefined ? 0 : q.check.races.alreadyReceivedBegin + q.check.races.endBeforeBeginStore;
  const open = e.stillBlocked.length > 0 ? '; exact also runs the waits still open at the end up to the end of the journal, which QEMU never counts' : '';
  const total = races > 0 ? `; QEMU's "all vCPUs blocked" stopped growing after a race (${races} modelled) left its count of blocked vCPUs too low` : '';
  return `Why QEMU's figures differ: QEMU 7.2 counts a vCPU's wait only if the page's placement still finds it, and drops it when the vCPU's next fault overwrote it first; exact counts every wait from fault to placement${open}${total}.`;
}

/**
 * Pure: what happened in one line, and what to do next, for the top of `inspect` and of the
 * report: recover the paused destination, or the source is gone; a failure; a completion.
 */
export function verdict(a: Analysis): { verdict: string; next: string; cause: string[] } {
  const ms = (v: number): string => `${v.toFixed(3)} ms`;
  const n = a.requests.outstanding.length;
  const open = a.pauses.find((p) => p.endMs === null);
  const cause: string[] = [];
  const src = open?.sourceLast ?? a.sourceLast;
  if (open !== undefined && open.reason !== undefined) cause.push(`destination: ${open.reason} (#${open.causeSeq})`);
  for (const l of a.stderr.filter((x) => !/^warning:/i.test(x.text)).slice(-3)) cause.push(`QEMU's stderr at ${ms(l.tMs)}: ${l.text}`);
  const sourceGone = open !== undefined && a.sourceLast !== null && a.sourceLast.tMs <= open.startMs;
  if (src !== null && src !== undefined) {
    const before = open === undefined ? '' : `, ${(open.startMs - src.tMs).toFixed(1)} ms before the pause`;
    cause.push(`source: its trace's last line at ${ms(src.tMs)}${before}: ${src.event}${src.text ? ` ${src.text}` : ''}${sourceGone ? ' (nothing after it: the source stopped)' : ''}`);
  }
  if (a.status === 'completed') {
    return { verdict: `completed: postcopy ${a.postcopyState}, every requested page placed${a.pauses.length ? ` after ${a.pauses.length} pause(s), all recovered` : ''}`, next: 'nothing to do; postcopy report <journal> -o report.html draws it', cause };
  }
  // A relay sees no vCPUs: a tap journal says nothing about blocked ones.
  const blocked = a.journal.source === 'tap' ? '' : `, ${a.blocktime.exact.stillBlocked.length} vCPU(s) still blocked`;
  const waiting = n > 0 ? `, ${n} page request${n === 1 ? '' : 's'} never answered${blocked}` : '';
  if (open !== undefined) {
    const lost = /closed by the peer|stream failed|IO failure|broken|EOF|reset/i.test(open.reason ?? '') || a.stderr.some((l) => /IO failure|footer failed/i.test(l.text));
    const how = a.journal.source !== 'engine' ? ' (QEMU: migrate-recover <uri> on the destination, then migrate resume=true on the source)' : '';
    const next = sourceGone || lost
      ? `recover if the source still runs: reconnect it and resume postcopy${how}; if the source is gone the guest cannot continue: ${n > 0 ? `the pages it waits for exist only on the source` : 'pages not yet received exist only on the source'}, so restart the guest from the source's last good state`
      : `recover: reconnect the source and resume postcopy${how}`;
    const after = a.durationMs - open.startMs;
    return { verdict: `paused: postcopy stopped at ${ms(open.startMs)} and never resumed (${after < 1 ? 'the journal ends there' : `the journal ends ${after.toFixed(1)} ms later`})${waiting}`, next, cause };
  }
  if (/fail|cancel/.test(a.status)) {
    const e = a.errors.find((x) => x.code === 'MIGRATION_FAILED') ?? a.errors[a.errors.length - 1];
    return { verdict: `${a.status}${e ? `: ${e.message}` : ''}${waiting}`, next: 'the destination cannot continue: keep (or restart) the guest on the source and migrate again', cause };
  }
  return { verdict: `unfinished: the journal ends with the migration ${a.status}, postcopy ${a.postcopyState}${waiting}`, next: 'if the destination process is gone, the journal is all there is: migrate again from the source', cause };
}

/** Codes of reported failures (the migration's own), as opposed to inputs the engine refused. */
const FAILURE_CODES = new Set(['MIGRATION_FAILED', 'QEMU_MIGRATE_ERROR']);

/** Pure: the errors split into the migration's failures and the inputs the engine refused (each changed nothing). */
export function splitErrors(a: Analysis): { failures: Analysis['errors']; refused: Analysis['errors'] } {
  return { failures: a.errors.filter((e) => FAILURE_CODES.has(e.code)), refused: a.errors.filter((e) => !FAILURE_CODES.has(e.code)) };
}

const STATE_WORDS: Record<string, string> = {
  'faultThread paused.returnPathLost': 'paused: return path lost, no page requests can be sent',
  'faultThread paused': 'paused: no page requests are sent',
  'faultThread running': 'running: catching faults, requesting pages',
  'faultThread notStarted': 'not started',
  'preemptThread paused': 'paused: the preempt channel is down',
  'postcopy RUNNING': 'running: the guest runs here, pages arrive on demand',
  'postcopy LISTENING': 'listening: pages arrive, the guest not yet started',
  'postcopy END': 'ended: every page arrived',
  'postcopy ADVISE': 'advised: postcopy is coming (still precopy)',
  'postcopy DISCARD': 'discarding the pages dirtied on the source',
  'migration postcopy-paused': 'paused: the connection to the source is lost',
  'migration postcopy-active': 'postcopy: the guest runs here',
  'migration postcopy-recover': 'recovering: reconnecting to the source',
  'migration active': 'precopy: pages copied while the guest runs on the source',
};

/** Pure: a machine's state in plain words ('paused: return path lost, ...'), or the state itself. */
export function stateInWords(machine: string, state: string): string {
  return STATE_WORDS[`${machine} ${state}`] ?? STATE_WORDS[`${machine} ${state.split('.')[0]}`] ?? state;
}

/** Pure: QEMU's blocktime figures are whole ms, as QEMU prints them. */
export function qemuMs(ms: number): string {
  return `${Math.round(ms)} ms`;
}

/**
 * Pure: the phases as `inspect` and `migrate` name them: precopy from the first event to
 * LISTENING, postcopy from LISTENING to END (or to the end of the journal when it never
 * ended), and the whole journal.
 */
export function phasesOf(a: Analysis): { precopyMs: number | null; postcopyMs: number | null; postcopyEnded: boolean; journalMs: number } {
  const listen = a.timeline.find((e) => e.machine === 'postcopy' && e.to === 'LISTENING');
  const end = a.timeline.find((e) => e.machine === 'postcopy' && e.to === 'END' && (listen === undefined || e.tMs >= listen.tMs));
  return {
    precopyMs: listen === undefined ? null : listen.tMs - a.firstEventMs,
    postcopyMs: listen === undefined ? null : (end?.tMs ?? a.durationMs) - listen.tMs,
    postcopyEnded: end !== undefined,
    journalMs: a.durationMs,
  };
}

/** Pure: the channel names a person reads: 'main 61 184, preempt 33'. */
export function channelCounts(byChannel: Record<string, number>): string {
  return Object.entries(byChannel).map(([c, n]) => `${c === '0' ? 'main' : c === '1' ? 'preempt' : `channel ${c}`} ${n.toLocaleString('en-US')}`).join(', ');
}

/** QEMU's blocktime as QEMU said it (query-migrate, when imported with it), else as its algorithm counts it: per vCPU and all vCPUs. */
export function qemuBlocktimeSaid(a: Analysis): { totalMs: number; perVcpuMs: number[] } {
  const q = a.blocktime.qemu;
  const r = q.reported;
  return {
    totalMs: r?.totalMs ?? q.totalMs,
    perVcpuMs: q.perVcpuMs.map((ms, v) => r?.perVcpuMs?.[v] ?? ms),
  };
}

/** How a migration ended, in one word (the branches of `verdict`): for grouping many migrations. */
export type Outcome = 'completed' | 'paused' | 'failed' | 'unfinished';

/** Pure: the migration's outcome as `verdict` decides it: completed, left paused, failed (or cancelled), or unfinished. */
export function outcomeOf(a: Analysis): Outcome {
  if (a.status === 'completed') return 'completed';
  if (a.pauses.some((p) => p.endMs === null)) return 'paused';
  if (/fail|cancel/.test(a.status)) return 'failed';
  return 'unfinished';
}
