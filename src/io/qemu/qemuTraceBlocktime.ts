/**
 * The blocktime replay of a QEMU destination trace file: the clock offset pass and the
 * replay pass over the file, feeding the pure replay in engine/traceBlocktimeReplay.ts.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  BLOCKTIME_REPLAY_EVENTS,
  TraceBlocktimeReplay,
  offsetBound,
  type BlocktimeReplayOptions,
  type BlocktimeReplayResult,
} from '../../engine/traceBlocktimeReplay.js';
import { UsageError } from '../../errors.js';
import { readTrace, type ReadTraceOptions, type TraceReadSummary } from './qemuTrace.js';
import { loadThreadsJson, vcpuCountOf } from './qemuThreads.js';

/**
 * The offset between the trace's wall clock and QEMU's blocktime ms clock, µs: the
 * minimum of offsetBound over every begin that was not already received. Null when the
 * trace has none. Streams the file once, parsing begin lines only.
 */
export async function estimateClockOffset(path: string): Promise<number | null> {
  let best = Infinity;
  await readTrace(
    path,
    (e) => {
      if (e.kind === 'mark_postcopy_blocktime_begin' && e.alreadyReceived === 0 && e.timeUs >= 0) best = Math.min(best, offsetBound(e));
    },
    { only: ['mark_postcopy_blocktime_begin'] },
  );
  return Number.isFinite(best) ? best : null;
}

export interface ReplayTraceFileOptions extends Partial<BlocktimeReplayOptions> {
  /** threads.json giving the vCPU count when `vcpuCount` is not set. Default: beside the trace. */
  threadsPath?: string;
  onProgress?: ReadTraceOptions['onProgress'];
}

/**
 * Replays a destination trace file (two streaming passes: the clock offset, then the
 * replay); the vCPU count comes from the options or threads.json.
 */
export async function replayTraceBlocktime(
  path: string,
  opts: ReplayTraceFileOptions = {},
): Promise<BlocktimeReplayResult & { read: TraceReadSummary }> {
  let vcpuCount = opts.vcpuCount;
  if (vcpuCount === undefined) {
    const threadsPath = opts.threadsPath ?? join(dirname(path), 'threads.json');
    if (!existsSync(threadsPath)) {
      throw new UsageError(`${path}: the vCPU count is needed; give it, or put threads.json beside the trace`);
    }
    vcpuCount = vcpuCountOf((await loadThreadsJson(threadsPath)).dst);
    if (vcpuCount === 0) throw new UsageError(`${threadsPath}: no destination thread is named 'CPU n/...'`);
  }
  const options: BlocktimeReplayOptions = { ...opts, vcpuCount };
  if (options.clockOffsetUs === undefined) {
    const offset = await estimateClockOffset(path);
    if (offset !== null) options.clockOffsetUs = offset;
  }
  const replay = new TraceBlocktimeReplay(options);
  const readOpts: ReadTraceOptions = { only: BLOCKTIME_REPLAY_EVENTS };
  if (opts.onProgress) readOpts.onProgress = opts.onProgress;
  const read = await readTrace(path, (e) => replay.push(e), readOpts);
  return { ...replay.finish(), read };
}
