/** One-line parsing: the README's real lines, the format quirks, and every catalogue format. */
import test from 'ava';
import { LineProblem, SKIPPED, TraceLineParser, parseTraceLine } from '../../../src/io/qemu/qemuTrace.js';
import { NO_TIME, QEMU_TRACE_EVENTS, type TraceEvent, type TraceEventName } from '../../../src/engine/qemuTraceEvents.js';

function event(line: string): TraceEvent {
  const r = parseTraceLine(line, 7);
  if (r === null || r instanceof LineProblem) throw new Error(`not an event: ${line} (${r?.problem})`);
  return r;
}

test('a fault request: tid, time in whole µs, hex address beyond 2^32, block, offset, pid', (t) => {
  t.deepEqual(
    event('15864@1795337949.624891:postcopy_ram_fault_thread_request Request for HVA=0x7ffa19734000 rb=pc.ram offset=0xd934000 pid=15784'),
    {
      kind: 'postcopy_ram_fault_thread_request',
      line: 7,
      tid: 15864,
      timeUs: 1795337949624891,
      hva: 0x7ffa19734000,
      block: 'pc.ram',
      offset: 0xd934000,
      pid: 15784,
    },
  );
});

test('blocktime begin and end lines', (t) => {
  const b = event(
    '15864@1795337949.624894:mark_postcopy_blocktime_begin addr: 0x7ffa19734000, dd: 0x55fc57c16b80, time: 1963, cpu: 1, already_received: 0',
  );
  t.like(b, { kind: 'mark_postcopy_blocktime_begin', addr: 0x7ffa19734000, dd: 0x55fc57c16b80, time: 1963, cpu: 1, alreadyReceived: 0 });
  const e = event('15865@1795337949.655394:mark_postcopy_blocktime_end addr: 0x7ffa0fbc5000, dd: 0x55fc57c16b80, time: 15, affected_cpu: 1');
  t.like(e, { kind: 'mark_postcopy_blocktime_end', tid: 15865, addr: 0x7ffa0fbc5000, time: 15, affectedCpu: 1 });
});

test('page load and placement lines', (t) => {
  t.like(event('15865@1795337949.547773:ram_load_postcopy_loop chan=0 addr=0x164000 flags=0x28'), {
    channel: 0,
    addr: 0x164000,
    flags: 0x28,
  });
  t.like(event('16043@1795337969.001571:postcopy_place_page_zero host=0x7f6b12e00000'), { host: 0x7f6b12e00000 });
  t.like(event('15865@1795337949.674363:postcopy_page_req_del resolved page req 0x7ffa19a0c000 total 1'), {
    host: 0x7ffa19a0c000,
    total: 1,
  });
  t.like(event('15865@1795337949.602756:ram_load_complete exit_code 0 seq iteration 37'), { exitCode: 0, seqIter: 37 });
});

test('an empty format still has its trailing space; without it the line parses too', (t) => {
  const e = event('15865@1795337949.546590:postcopy_ram_listen_thread_start ');
  t.deepEqual(e, { kind: 'postcopy_ram_listen_thread_start', line: 7, tid: 15865, timeUs: 1795337949546590 });
  t.is(event('15865@1795337949.546590:postcopy_ram_listen_thread_start').kind, 'postcopy_ram_listen_thread_start');
});

test('quirk %ud: the number is followed by a literal d', (t) => {
  t.like(event('15773@1795337949.543614:loadvm_postcopy_ram_handle_discard_header pc.ram: 16d'), { block: 'pc.ram', length: 16 });
  t.like(event('15855@1795337949.535153:qemu_savevm_send_postcopy_ram_discard pc.ram: 1d'), { block: 'pc.ram', length: 1 });
});

test('NULL strings print as (null) and parse as null; NULL pointers print as (nil) and parse as 0', (t) => {
  t.like(event('15854@1795337949.604673:migrate_handle_rp_req_pages in (null) at 0xd6dc000 len 0x1000'), {
    block: null,
    start: 0xd6dc000,
    len: 0x1000,
  });
  t.like(event('15864@1795337949.624891:postcopy_ram_fault_thread_request Request for HVA=0x7ffa19734000 rb=(null) offset=0xd934000 pid=15784'), {
    block: null,
    pid: 15784,
  });
  t.like(
    event('16572@1795338028.541851:migration_set_outgoing_channel ioc=0x562e40c76280 ioctype=qio-channel-socket hostname=127.0.0.1 err=(nil)'),
    { ioc: 0x562e40c76280, ioctype: 'qio-channel-socket', hostname: '127.0.0.1', err: 0 },
  );
});

test('strings containing the next literal: block names with @ and :, JSON with spaces', (t) => {
  t.like(
    event('15773@1795337947.661775:ram_block_discard_range /rom@etc/acpi/tables@0x7ffa29400000 + 0x20000: madvise: 1 fallocate: 0 ret: 0'),
    { block: '/rom@etc/acpi/tables', host: 0x7ffa29400000, length: 0x20000, madvise: 1, fallocate: 0, ret: 0 },
  );
  t.like(event('15773@1795337947.661720:postcopy_init_range /rom@etc/acpi/tables: 0x7ffa29400000 offset=0x10080000 length=0x20000'), {
    block: '/rom@etc/acpi/tables',
    host: 0x7ffa29400000,
    offset: 0x10080000,
  });
  t.like(event('15773@1795337947.646805:qmp_exit_migrate_set_capabilities {} 1'), { result: '{}', ok: 1 });
  t.like(event('16117@1795337989.845736:qmp_enter_migrate_recover {"uri": "tcp:127.0.0.1:44442"}'), {
    args: '{"uri": "tcp:127.0.0.1:44442"}',
  });
  t.like(event('15773@1795337949.566466:process_incoming_migration_co_end ret=-5 postcopy-state=1'), { ret: -5, postcopyState: 1 });
  // Quirk: the format is '0x%li', so the digits after 0x are decimal: 8192 bytes of bitmap + 8.
  t.like(event("16212@1795337989.849528:migrate_send_rp_recv_bitmap block 'pc.ram' size 0x8200"), { block: 'pc.ram', size: 8200 });
});

test('lines without tid@time: (no -msg timestamp=on), and CRLF endings', (t) => {
  t.deepEqual(event('postcopy_place_page host=0x7ffa0bf64000'), {
    kind: 'postcopy_place_page',
    line: 7,
    tid: NO_TIME,
    timeUs: NO_TIME,
    host: 0x7ffa0bf64000,
  });
  t.like(event('postcopy_init_range /rom@etc/acpi/tables: 0x7ffa29400000 offset=0x10080000 length=0x20000'), { block: '/rom@etc/acpi/tables' });
  t.like(event('15865@1795337949.547786:postcopy_place_page host=0x7ffa0bf64000\r'), { host: 0x7ffa0bf64000 });
});

test('problems: unknown event, malformed arguments, not a trace line, empty line', (t) => {
  const unknown = parseTraceLine('15865@1795337949.547786:vhost_user_something x=1', 3);
  t.true(unknown instanceof LineProblem);
  t.like(unknown, { problem: 'unknown', name: 'vhost_user_something', line: 3 });
  const malformed = parseTraceLine('15865@1795337949.547786:postcopy_place_page host=oops', 4);
  t.like(malformed, { problem: 'malformed', name: 'postcopy_place_page', line: 4 });
  t.like(parseTraceLine('15865@1795337949.547786:postcopy_place_page host=0x1000 trailing', 5), { problem: 'malformed' });
  t.like(parseTraceLine('# QEMU 7.2 postcopy captures (fixtures)', 6), { problem: 'not-trace' });
  t.like(parseTraceLine('15865@1795337949.54:postcopy_place_page host=0x1000', 8), { problem: 'not-trace' });
  t.is(parseTraceLine('', 9), null);
});

test('the only filter: other known events are recognised but not parsed', (t) => {
  const p = new TraceLineParser(['postcopy_place_page']);
  t.is(p.parse('15865@1795337949.547773:ram_load_postcopy_loop chan=0 addr=0x164000 flags=0x28', 1), SKIPPED);
  t.true(p.lastTimed);
  t.like(p.parse('15865@1795337949.547786:postcopy_place_page host=0x7ffa0bf64000', 2), { host: 0x7ffa0bf64000 });
  t.like(p.parse('15865@1795337949.547786:not_an_event_we_know ', 3), { problem: 'unknown' });
});

/** Renders a format like printf would, with distinct values per conversion. */
function render(format: string): { text: string; values: Array<string | number> } {
  const values: Array<string | number> = [];
  let text = '';
  for (let i = 0; i < format.length; i++) {
    if (format[i] !== '%') {
      text += format[i];
      continue;
    }
    let j = i + 1;
    while ('lzh'.includes(format[j]!)) j++;
    const k = values.length;
    switch (format[j]) {
      case 's':
        values.push(`/rom@etc/n${k}`);
        text += `/rom@etc/n${k}`;
        break;
      case 'x':
        values.push(0x7ffa0be00000 + k * 0x1000);
        text += (0x7ffa0be00000 + k * 0x1000).toString(16);
        break;
      case 'p':
        values.push(0x55fc57c16b80 + k);
        text += '0x' + (0x55fc57c16b80 + k).toString(16);
        break;
      default:
        values.push(k % 2 === 0 ? 1000 + k : -(1000 + k));
        text += String(k % 2 === 0 ? 1000 + k : -(1000 + k));
    }
    i = j;
  }
  return { text, values };
}

test('every catalogue format parses a line rendered from it back to the same values', (t) => {
  const names = Object.keys(QEMU_TRACE_EVENTS) as TraceEventName[];
  t.is(names.length, 195);
  for (const name of names) {
    const spec = QEMU_TRACE_EVENTS[name];
    const { text, values } = render(spec.format);
    const e = parseTraceLine(`4242@1795337949.000001:${name} ${text}`, 1);
    if (e === null || e instanceof LineProblem) {
      t.fail(`${name}: "${text}" did not parse`);
      continue;
    }
    t.is(e.kind, name);
    const got = spec.fields.map((f) => (e as unknown as Record<string, unknown>)[f]);
    t.deepEqual(got, values, name);
  }
});
