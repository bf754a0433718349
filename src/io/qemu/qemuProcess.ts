import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PostcopyError } from '../../errors.js';
import { QmpClient } from './qmp.js';

/**
 * Launches a real qemu-system-x86_64 the way the QEMU 7.2 fixtures were run
 * (shared/fixtures/qemu-7.2/wire/*\/cmdline-*.sh), in a temporary folder of its own:
 *
 *   -name NAME,debug-threads=on -accel kvm|tcg,thread=multi -m 256M -smp 2 -nodefaults -display none
 *   -serial file:DIR/NAME-serial.txt -qmp unix:DIR/NAME.qmp,server=on,wait=off
 *   -drive file=bootblock.bin,format=raw,if=ide  [-incoming defer]
 *
 * (run in that folder, which holds a copy of the guest image: QEMU locks its disk).
 *
 * The guest is dist/guest/bootblock.bin (guest/README.md). Every process started here is
 * SIGKILLed when the Node process exits (an exit hook, and the parent-death signal through
 * setpriv, which also covers a Node process that is itself SIGKILLed).
 */

/** QEMU could not be started, or exited before its QMP socket answered. */
export class QemuLaunchError extends PostcopyError {
  constructor(readonly vmName: string, message: string) {
    super('QEMU_LAUNCH', `QEMU '${vmName}': ${message}`);
  }
}

export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  reason: string;
}

let accelChoice: AccelChoice | undefined;
let accelReported = false;

/** KVM only where /dev/kvm opens read-write, else TCG; decided once per process. */
export function chooseAccel(): AccelChoice {
  if (accelChoice) return accelChoice;
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    accelChoice = { accel: 'kvm', reason: '/dev/kvm opens read-write' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    accelChoice = { accel: 'tcg', reason: `/dev/kvm cannot be opened read-write (${code}): TCG with thread=multi` };
  }
  return accelChoice;
}

/** The guest's file name inside each QEMU's folder (its command line says file=bootblock.bin, as the fixtures' do). */
const GUEST_FILE = 'bootblock.bin';

/** The guest built by `npm run build` (scripts/build-guest.mjs). */
export const DEFAULT_GUEST_IMAGE = fileURLToPath(new URL('../../../guest/bootblock.bin', import.meta.url));

/** The random-access variant of the guest (guest/bootblock-random.S), built beside it: pass it as `guestImage`. */
export const RANDOM_GUEST_IMAGE = fileURLToPath(new URL('../../../guest/bootblock-random.bin', import.meta.url));

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** `explicit`, else QEMU_SYSTEM_X86, else qemu-system-x86_64 on PATH. */
export function findQemu(explicit?: string): string {
  const chosen = explicit ?? process.env.QEMU_SYSTEM_X86;
  if (chosen) {
    if (!isExecutable(chosen)) throw new QemuLaunchError('-', `${chosen} is not an executable file`);
    return chosen;
  }
  const found = onPath('qemu-system-x86_64');
  if (found) return found;
  throw new QemuLaunchError('-', 'qemu-system-x86_64 is neither in QEMU_SYSTEM_X86 nor on PATH: install Debian\'s qemu-system-x86 (npm test\'s pretest does)');
}

export interface QemuOptions {
  /** -name, also the file names in the folder (default 'vm'). */
  name?: string;
  /** A destination: `-incoming defer` (then `migrate-incoming` over QMP). */
  incoming?: boolean;
  /** The executable (default: findQemu()). */
  qemuPath?: string;
  /** Firmware and ROM folders, each passed as `-L` (a QEMU unpacked outside /usr needs its own share/qemu). */
  dataDirs?: string[];
  /** Force an accelerator (default: chooseAccel()). */
  accel?: Accel;
  /** Raw boot image (default: DEFAULT_GUEST_IMAGE). */
  guestImage?: string;
  /** -m (default '256M'). */
  memory?: string;
  /** -smp (default 2). */
  smp?: number;
  /** Appended to the command line, e.g. ['-msg', 'timestamp=on', '-trace', 'events=…', '-D', '…']. */
  extraArgs?: string[];
  /** How long to wait for QMP to answer (default 15 s). */
  qmpTimeoutMs?: number;
  /** Where the accelerator choice is reported, once per process (default console.log). */
  log?: (line: string) => void;
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface QemuProcess {
  name: string;
  /** The process's own temporary folder (serial file, QMP socket). */
  dir: string;
  pid: number;
  accel: Accel;
  /** The full command line (executable first). */
  argv: string[];
  qmp: QmpClient;
  /** What the guest has written to COM1 so far. */
  serial(): string;
  /** The last few KiB of QEMU's stderr and stdout (error_report lines). */
  output(): string;
  kill(signal?: NodeJS.Signals): void;
  /** Settles when the process has exited. */
  exited: Promise<QemuExit>;
  /** SIGKILLs it (no graceful quit: a destination paused in postcopy does not exit on `quit`), waits, removes its folder. */
  dispose(): Promise<void>;
}

const live = new Set<{ kill: (s: NodeJS.Signals) => void; cleanup: () => void }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) {
      p.kill('SIGKILL');
      p.cleanup();
    }
  });
}

/** Starts QEMU and connects to its QMP socket; rejects with QEMU's own output if it exits first. */
export async function launchQemu(options: QemuOptions = {}): Promise<QemuProcess> {
  const name = options.name ?? 'vm';
  const qemuPath = findQemu(options.qemuPath);
  const guestImage = options.guestImage ?? DEFAULT_GUEST_IMAGE;
  if (!existsSync(guestImage)) {
    throw new QemuLaunchError(name, `guest image ${guestImage} is missing: run npm run build (it needs binutils' as and ld)`);
  }
  const choice = options.accel ? { accel: options.accel, reason: 'chosen by the caller' } : chooseAccel();
  if (!accelReported) {
    accelReported = true;
    (options.log ?? console.log)(`[qemu] accelerator ${choice.accel}: ${choice.reason}`);
  }
  const dir = mkdtempSync(join(tmpdir(), `postcopy-qemu-${name}-`));
  const serialFile = join(dir, `${name}-serial.txt`);
  const qmpSocket = join(dir, `${name}.qmp`);
  // Each QEMU boots its own copy: a running QEMU holds a write lock on its disk image, so two
  // (not a migration pair, whose destination stays inactive until it takes over) cannot share one.
  copyFileSync(guestImage, join(dir, GUEST_FILE));
  const args = [
    '-name', `${name},debug-threads=on`,
    '-accel', choice.accel === 'kvm' ? 'kvm' : 'tcg,thread=multi',
    '-m', options.memory ?? '256M',
    '-smp', String(options.smp ?? 2),
    '-nodefaults', '-display', 'none',
    '-serial', `file:${serialFile}`,
    '-qmp', `unix:${qmpSocket},server=on,wait=off`,
    '-drive', `file=${GUEST_FILE},format=raw,if=ide`,
    ...(options.dataDirs ?? []).flatMap((d) => ['-L', d]),
    ...(options.incoming ? ['-incoming', 'defer'] : []),
    ...(options.extraArgs ?? []),
  ];
  installExitHook();
  // util-linux's setpriv (Essential in Debian) makes the kernel SIGKILL QEMU when this process
  // dies in any way, even by SIGKILL (a test runner's timeout), which no exit hook sees.
  const setpriv = onPath('setpriv');
  const child = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', qemuPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir })
    : spawn(qemuPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  let output = '';
  const keep = (d: Buffer) => { output = (output + d.toString()).slice(-8192); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const cleanup = () => {
    if (!process.env.KEEP_TEST_FILES) rmSync(dir, { recursive: true, force: true });
  };
  const handle = {
    kill: (s: NodeJS.Signals) => { if (child.exitCode === null && child.signalCode === null) child.kill(s); },
    cleanup,
  };
  live.add(handle);
  const exited = new Promise<QemuExit>((resolve) => {
    child.once('exit', (code, signal) => { live.delete(handle); resolve({ code, signal }); });
    child.once('error', (err) => { live.delete(handle); output += `\n${err.message}`; resolve({ code: null, signal: null }); });
  });
  const earlyExit = exited.then((e) => {
    throw new QemuLaunchError(name, `exited (code ${e.code}, signal ${e.signal}) before QMP answered; its output:\n${output}`);
  });
  earlyExit.catch(() => {});
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(qmpSocket, { timeoutMs: options.qmpTimeoutMs ?? 15_000, abort: earlyExit });
  } catch (err) {
    handle.kill('SIGKILL');
    await exited;
    cleanup();
    throw err instanceof QemuLaunchError ? err : new QemuLaunchError(name, `${(err as Error).message}; its output:\n${output}`);
  }
  return {
    name,
    dir,
    pid: child.pid!,
    accel: choice.accel,
    argv: [qemuPath, ...args],
    qmp,
    serial: () => (existsSync(serialFile) ? readFileSync(serialFile, 'latin1') : ''),
    output: () => output,
    kill: (signal: NodeJS.Signals = 'SIGKILL') => handle.kill(signal),
    exited,
    dispose: async () => {
      await qmp.close().catch(() => {});
      handle.kill('SIGKILL');
      await exited;
      cleanup();
    },
  };
}

/**
 * Waits until the bootblock guest's two vCPUs are both in their work loop ('B' and 'D' on COM1,
 * after byte `from` of the serial output); resolves with the ms waited. Throws naming what the
 * guest printed and QEMU's output when `timeoutMs` passes first.
 */
export async function waitForGuestWork(q: QemuProcess, timeoutMs = 60_000, from = 0): Promise<number> {
  const start = Date.now();
  for (;;) {
    const tail = q.serial().slice(from);
    if (tail.includes('B') && tail.includes('D')) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new QemuLaunchError(q.name, `the guest printed only ${JSON.stringify(tail.slice(0, 200))} in ${timeoutMs} ms; QEMU output: ${q.output().trim()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
