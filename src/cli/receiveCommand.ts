import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { READ_WORKLOADS, runReceiver, type Endpoint, type ReadWorkload, type ReceiveResult } from '../io/qemu/qemuReceiver.js';
import { parseSize } from './options.js';

export interface ReceiveCommandOptions {
  listen: string;
  recoverListen?: string;
  preempt?: boolean;
  journal: string;
  workload: string;
  vcpus: string;
  seed: string;
  vcpuNice: string;
  maxMemory?: string;
  pauseTimeout: string;
  deviceState?: string;
  saveMemory?: string;
  faultReader: string;
  json?: boolean;
  quiet?: boolean;
}


function endpoint(text: string, option: string): Endpoint {
  const m = /^(.*):(\d+)$/.exec(text.trim());
  if (!m || m[1] === '') throw new UsageError(`${option} must be HOST:PORT, e.g. 127.0.0.1:4444, got '${text}'`);
  const port = Number(m[2]);
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`${option}: port ${m[2]} is not in 0..65535`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

function wholeNumber(text: string, option: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${option} must be a whole number from ${min} to ${max}, got '${text}'`);
  return n;
}

/** Seconds ('30', '2.5', '500ms') into milliseconds. */
function duration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${option} must be a duration like 30 (seconds), 2.5s or 500ms, got '${text}'`);
  return m[2] === 'ms' ? Number(m[1]) : Number(m[1]) * 1000;
}

export async function receiveCommand(o: ReceiveCommandOptions): Promise<number> {
  if (!READ_WORKLOADS.includes(o.workload as ReadWorkload)) throw new UsageError(`--workload must be one of ${READ_WORKLOADS.join(', ')}, got '${o.workload}'`);
  if (o.faultReader !== 'thread' && o.faultReader !== 'loop') throw new UsageError(`--fault-reader must be thread or loop, got '${o.faultReader}'`);
  const maxMemoryBytes = o.maxMemory === undefined ? Math.floor(totalmem() / 2) : parseSize(o.maxMemory, '--max-memory');
  const log = o.quiet ? () => {} : (line: string) => process.stderr.write(`receive: ${line}\n`);
  const result: ReceiveResult = await runReceiver({
    listen: endpoint(o.listen, '--listen'),
    ...(o.recoverListen ? { recoverListen: endpoint(o.recoverListen, '--recover-listen') } : {}),
    journalPath: resolve(o.journal),
    preempt: !!o.preempt,
    workload: o.workload as ReadWorkload,
    vcpus: wholeNumber(o.vcpus, '--vcpus', 1, 64),
    seed: wholeNumber(o.seed, '--seed', 0, Number.MAX_SAFE_INTEGER),
    vcpuNice: wholeNumber(o.vcpuNice, '--vcpu-nice', 0, 19),
    maxMemoryBytes,
    pauseTimeoutMs: duration(o.pauseTimeout, '--pause-timeout'),
    ...(o.deviceState ? { deviceStatePath: resolve(o.deviceState) } : {}),
    ...(o.saveMemory ? { saveMemoryDir: resolve(o.saveMemory) } : {}),
    faultReader: o.faultReader,
    log,
  });
  if (o.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else if (result.status === 'refused') {
    // One line: what was refused and why (the journal has it too).
    process.stderr.write(`postcopy receive: ${result.error?.message ?? result.message}\n`);
  } else {
    const bt = result.blocktime;
    process.stdout.write(
      [
        `status ${result.status} (exit ${result.exitCode}): ${result.message}`,
        `requests ${result.requests}; pages precopy ${result.pagesByChannel.precopy}, main ${result.pagesByChannel.main}, preempt ${result.pagesByChannel.preempt}; outstanding ${result.outstanding}`,
        `blocktime ${bt ? `${bt.qemu.totalMs} ms (qemu mode), ${(bt.exact.totalNs / 1e6).toFixed(1)} ms (exact)` : 'n/a'}; device state ${result.deviceStateBytes} bytes${result.deviceStateSha256 ? ` sha256 ${result.deviceStateSha256}` : ''}`,
        `journal ${result.journalPath} (postcopy inspect / report / replay)`,
      ].join('\n') + '\n',
    );
  }
  return result.exitCode;
}
