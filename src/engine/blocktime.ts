import { ExactBlocktime, type ExactBlocktimeReport, type ExactBlocktimeSnapshot } from './blocktimeExact.js';
import { QemuBlocktime, type QemuBlocktimeSnapshot } from './blocktimeQemu.js';

/** Both blocktime figures, as reported at cleanup and by inspect. */
export interface BlocktimeReport {
  qemu: { totalMs: number; perVcpuMs: number[] };
  exact: ExactBlocktimeReport;
}

export interface BlocktimeSnapshot {
  qemu: QemuBlocktimeSnapshot | null;
  exact: ExactBlocktimeSnapshot;
}

/**
 * The two blocktime modes fed by the same fault and placement events (reference
 * section 5): `qemu` reproduces QEMU 7.2's figures, quirks included, from ADVISE on;
 * `exact` is the race-free truth in ns.
 */
export class Blocktime {
  private qemu: QemuBlocktime | null = null;
  private exact: ExactBlocktime;

  constructor(private readonly vcpus: number) {
    this.exact = new ExactBlocktime(Math.max(1, vcpus));
  }

  /** QEMU creates its context while handling ADVISE. */
  start(t: number): void {
    this.qemu = new QemuBlocktime(Math.max(1, this.vcpus), t);
  }

  /** A fault of `vcpu` (-1: not a vCPU) at `address`, in the host page `key`. Hot path. */
  begin(address: number, key: number, vcpu: number, t: number, alreadyReceived: boolean): void {
    if (this.qemu !== null) this.qemu.begin(vcpu, address, t, alreadyReceived);
    this.exact.fault(vcpu, key, address, t, alreadyReceived);
  }

  /** The host page `key` at `hostAddress` was placed. Hot path. */
  end(hostAddress: number, key: number, t: number): void {
    if (this.qemu !== null) this.qemu.end(hostAddress, t);
    this.exact.placed(key, t);
  }

  report(): BlocktimeReport {
    return {
      qemu: { totalMs: this.qemu?.totalMs ?? 0, perVcpuMs: this.qemu?.perVcpuMs() ?? new Array<number>(this.vcpus).fill(0) },
      exact: this.exact.report(),
    };
  }

  snapshot(): BlocktimeSnapshot {
    return { qemu: this.qemu?.toJSON() ?? null, exact: this.exact.toJSON() };
  }

  restore(s: BlocktimeSnapshot): void {
    this.qemu = s.qemu ? QemuBlocktime.fromJSON(s.qemu) : null;
    this.exact = ExactBlocktime.fromJSON(s.exact);
  }
}
