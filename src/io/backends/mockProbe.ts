import type { BlockLayout, SupportCheck, SupportReport } from '../../engine/ports.js';

/** How the simulated host answers the probe. */
export interface SimulatedHost {
  /** true, false (refused for an unnamed reason) or the refusal reason. */
  supported: boolean | string;
  /** Whether registered ranges offer UFFDIO_ZEROPAGE. */
  zeroPlace: boolean;
}

/**
 * Pure: the host support probe of reference section 10 against a simulated host, with
 * the same check names and order as the native probe. Only the block geometry check is
 * real; the kernel checks pass unless the host is set to refuse. Never throws.
 */
export function probeSimulatedHost(blocks: readonly BlockLayout[], host: SimulatedHost): SupportReport {
  const report: SupportReport = { ok: true, checks: [] };
  const add = (name: string, ok: boolean, detail: string): void => {
    const check: SupportCheck = { name, ok, detail };
    report.checks.push(check);
    if (!ok && report.ok) {
      report.ok = false;
      report.reason = `${name}: ${detail}`;
    }
  };
  add('mlock', true, 'no locked memory (simulated)');
  if (host.supported !== true) {
    const why = typeof host.supported === 'string' ? host.supported : 'userfaultfd is not available (simulated refusal)';
    add('userfaultfd-open', false, why);
    addBlockChecks(blocks, add);
    return report;
  }
  add('userfaultfd-open', true, 'opened (simulated)');
  add('api-handshake', true, 'features offered: MISSING_HUGETLBFS THREAD_ID EVENT_REMOVE (simulated)');
  add('register-ioctls', true, 'fd ioctls: REGISTER UNREGISTER API (simulated)');
  addBlockChecks(blocks, add);
  add(
    'test-page',
    host.zeroPlace,
    host.zeroPlace ? 'test page registered; range ioctls: WAKE COPY ZEROPAGE (simulated)' : 'test page registered; range ioctls: WAKE COPY (simulated: no ZEROPAGE)',
  );
  const huge = blocks.some((b) => b.hugetlbfs === true);
  add('huge-page-feature', true, huge ? 'MISSING_HUGETLBFS offered for the hugetlbfs blocks (simulated)' : 'no hugetlbfs blocks (MISSING_HUGETLBFS offered)');
  add('thread-id', true, 'THREAD_ID offered: faults name their thread (blocktime per vCPU)');
  add('event-remove', true, 'EVENT_REMOVE offered (simulated)');
  return report;
}

/** The checks that need no fd: every block's lengths are multiples of its page size. */
function addBlockChecks(blocks: readonly BlockLayout[], add: (name: string, ok: boolean, detail: string) => void): void {
  let bad = '';
  let huge = 0;
  for (const b of blocks) {
    const ps = b.hostPageSize;
    const pow2 = Number.isInteger(ps) && ps >= 4096 && (ps & (ps - 1)) === 0 && ps <= 2 ** 30;
    const max = Math.max(b.length, b.maxLength ?? b.length);
    if (bad === '' && (!pow2 || b.length % ps !== 0 || max % ps !== 0)) {
      bad = `block '${b.name}' length ${b.length} is not a multiple of its page size ${ps}`;
    }
    if (b.hugetlbfs === true) huge++;
  }
  add(
    'block-page-multiples',
    bad === '',
    bad === '' ? `every one of ${blocks.length} block lengths is a multiple of its page size` : bad,
  );
  add('file-backed-blocks', true, `no file-backed blocks: ${blocks.length - huge} anonymous, ${huge} hugetlbfs (simulated)`);
}
