import { takeOverInterrupts } from './interrupt.js';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { startTap, type TapResult } from '../io/qemu/tap.js';
import { parseEndpoint } from './options.js';

export interface TapCommandOptions {
  listen: string;
  to: string;
  resumeTo?: string;
  journal: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/**
 * `postcopy tap --listen HOST:PORT --to HOST:PORT --journal J [--resume-to HOST:PORT]`:
 * relays a QEMU migration and journals it (io/qemu/tap.ts). Runs until the migration is
 * over and every connection closed, or until SIGINT / SIGTERM; commits the journal and
 * exits 0. Exit 2: bad options, an existing journal without --force, or the listening
 * address refused. Exit 4: the recorder failed (forwarding went on to the end regardless).
 */
export async function tapCommand(o: TapCommandOptions): Promise<number> {
  const listen = parseEndpoint(o.listen, '--listen');
  const to = parseEndpoint(o.to, '--to');
  const resumeTo = o.resumeTo === undefined ? undefined : parseEndpoint(o.resumeTo, '--resume-to');
  const journalPath = resolve(o.journal);
  if (existsSync(journalPath) && !o.force) throw new UsageError(`${o.journal} exists: choose another --journal or pass --force to replace it`);
  if (!existsSync(dirname(journalPath))) throw new UsageError(`--journal ${o.journal}: the folder ${dirname(journalPath)} does not exist`);
  const log = o.quiet ? () => {} : (line: string) => process.stderr.write(`tap: ${line}\n`);
  let handle;
  try {
    handle = await startTap({ listen, to, ...(resumeTo ? { resumeTo } : {}), journalPath, overwrite: !!o.force, log });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') throw new UsageError(`--listen ${o.listen}: ${e.message}`);
    throw err;
  }
  // The line a script waits for before it starts the migration (the port, when --listen asked for port 0).
  process.stdout.write(o.json ? `${JSON.stringify({ listening: `${handle.listening.host}:${handle.listening.port}` })}\n` : `listening on ${handle.listening.host}:${handle.listening.port}\n`);
  // Ctrl-C stops the relay and commits the journal (exit 0), instead of the default interruption.
  const giveBack = takeOverInterrupts();
  const onSignal = (): void => void handle.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const result: TapResult = await handle.done;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  giveBack();
  const s = result.summary;
  if (s === null) {
    // The migration was forwarded to its end; only the record is incomplete.
    process.stderr.write(`postcopy tap: the recorder failed, forwarding went on to the end: ${result.recorderError ?? 'unknown error'}; ${result.journalPath} holds what was committed before\n`);
    return 4;
  }
  if (o.json) {
    // CPU the tap used (both threads): what recording a migration costs the host.
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ journal: result.journalPath, ...s, forwarded: result.forwarded, durationMs: Math.round(result.durationMs), cpuMs: { user: Math.round(cpu.user / 1000), system: Math.round(cpu.system / 1000) } })}\n`);
  } else {
    process.stdout.write(
      `${result.journalPath}: migration ${s.migration} (postcopy ${s.postcopy}), ${s.connections.length} connection(s) (${s.connections.map((c) => c.role).join(', ')}), ` +
        `${s.requests} page requests, pages ${s.pages.precopy} precopy + ${s.pages.main} main + ${s.pages.preempt} preempt, ${s.breaks} break(s); ` +
        `${result.forwarded.toDestination} bytes forwarded to the destination, ${result.forwarded.toSource} to the source\n` +
        `next: postcopy inspect ${result.journalPath}\n`,
    );
  }
  return 0;
}
