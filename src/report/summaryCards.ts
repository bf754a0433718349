import { qemuBlocktimeSaid, qemuMs, splitErrors, stateInWords, type Analysis } from '../forensics/analysisTypes.js';
import { esc } from './escape.js';
import { groupDigits, formatMs } from '../text.js';

type Tone = 'good' | 'warn' | 'bad' | 'plain';

/** Pure: the tone of a final migration status: green completed, red failed, amber anything unfinished. */
export function statusTone(status: string): Tone {
  if (status === 'completed') return 'good';
  if (/fail|cancel/.test(status)) return 'bad';
  return 'warn';
}

/**
 * Pure: the cards at the top of the report, the numbers an operator looks at first:
 * status, postcopy state, duration, blocktime (QEMU's and exact), fault latency,
 * outstanding requests, pages, errors.
 */
export function summaryCards(a: Analysis): string {
  const unfinished = a.status !== 'completed';
  const outstanding = a.requests.outstanding.length;
  const perVcpu = (ms: number[]) => ms.map((v) => formatMs(v)).join(' · ');
  const { failures: failed, refused } = splitErrors(a);
  const cards = [
    card('Status', esc(a.status), `${a.journal.source === 'qemu-trace' ? 'imported QEMU trace' : a.journal.source === 'tap' ? 'recorded by postcopy tap' : 'engine run'} · ${a.vcpus} vCPU${a.vcpus === 1 ? '' : 's'}`, statusTone(a.status), 'status'),
    card('Postcopy state', esc(a.postcopyState), `${stateInWords('postcopy', a.postcopyState)} · ${a.pauses.length} pause${a.pauses.length === 1 ? '' : 's'}${a.pauses.some((p) => p.endMs === null) ? ' (still paused)' : ''}`, a.postcopyState === 'END' ? 'good' : 'plain', 'postcopy-state'),
    card('Duration', esc(formatMs(a.durationMs)), `the journal, 0 to its last event · ${groupDigits(a.journal.events)} events`, 'plain', 'duration'),
    card('Blocktime',
      `<span class="pair"><small>QEMU</small> ${esc(qemuMs(qemuBlocktimeSaid(a).totalMs))}</span><span class="pair"><small>exact</small> ${esc(formatMs(a.blocktime.exact.totalMs))}</span>`,
      `per vCPU: QEMU ${qemuBlocktimeSaid(a).perVcpuMs.map(qemuMs).join(' · ')}${a.blocktime.qemu.reported ? ' (its query-migrate)' : ''}; exact ${perVcpu(a.blocktime.exact.perVcpuMs)}${a.blocktime.exact.stillBlocked.length ? ' (waits still open run to the end)' : ''}`, 'plain', 'blocktime'),
    card('Fault latency',
      `<span class="pair"><small>p50</small> ${esc(formatMs(a.faults.p50Ms))}</span><span class="pair"><small>p99</small> ${esc(formatMs(a.faults.p99Ms))}</span><span class="pair"><small>max</small> ${esc(formatMs(a.faults.maxMs))}</span>`,
      `${groupDigits(a.faults.timed)} faults timed${a.faults.unanswered ? ` (${groupDigits(a.faults.unanswered)} still waiting, at their age)` : ''} · p90 ${formatMs(a.faults.p90Ms)}`, 'plain', 'faults'),
    card('Outstanding requests', groupDigits(outstanding), `of ${groupDigits(a.requests.count)} requests · ${groupDigits(a.requests.resent)} re-sent`, outstanding > 0 ? (unfinished ? 'bad' : 'warn') : 'good', 'outstanding'),
    card('Pages placed', groupDigits(a.pages.placed), `in postcopy · ${groupDigits(a.pages.zero)} zero-filled locally · ${a.journal.source === 'qemu-trace' ? 'precopy not traced' : `${groupDigits(a.pages.precopy)} precopy`} · ${groupDigits(a.pages.discardedRanges)} discarded ranges`, 'plain', 'pages'),
    failed.length
      ? card('Failure', esc(failed[0]!.code), failed[0]!.message, 'bad', 'failure')
      : card('Refused inputs', groupDigits(refused.length), refused.length ? `first at sequence number ${refused[0]!.seq}; each changed nothing` : unfinished ? 'none: the migration stopped for the cause above, not a refused input' : 'none', refused.length ? 'warn' : unfinished ? 'plain' : 'good', 'errors'),
  ];
  return `<section class="cards">${cards.join('')}</section>`;
}

/** Pure: one card; `valueHtml` is markup whose journal strings are already escaped, `sub` is plain text. */
function card(label: string, valueHtml: string, sub: string, tone: Tone, key: string): string {
  return `<div class="card tone-${tone}" data-card="${key}"><div class="card-label">${esc(label)}</div><div class="card-value${valueHtml.includes('class="pair"') ? ' pairs' : ''}">${valueHtml}</div><div class="card-sub">${esc(sub)}</div></div>`;
}
