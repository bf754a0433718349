/**
 * What `analyzeJournal` finds in a journal (an engine run or an imported QEMU trace):
 * the data behind `postcopy inspect` (text and --json) and `postcopy report` (HTML).
 * Times are ms since the journal's t = 0 unless a name says otherwise. Plain JSON data.
 */
export interface Analysis {
  journal: {
    path: string;
    source: 'engine' | 'qemu-trace';
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
  durationMs: number;
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
    };
    /** Race-free truth. */
    exact: { totalMs: number; perVcpuMs: number[]; perVcpuFaults: number[] };
  };
  faults: {
    count: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
    maxMs: number;
    /** Fault → placement latency histogram: [fromMs, toMs) buckets. */
    histogram: Array<{ fromMs: number; toMs: number; count: number }>;
    /** The slowest faults (at most 20), slowest first. */
    slowest: Array<{ seq: number; tMs: number; block: string; offset: number; vcpu: number; latencyMs: number }>;
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
  /**
   * Events that decode but that neither the engine nor the importer can have written: a
   * time that is not finite, a block or offset outside the blocks, an unknown command, a
   * cause that is not an earlier event. Skipped by the analysis; `first` holds the first 100.
   */
  anomalies: { count: number; first: Array<{ seq: number; reason: string }> };
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
