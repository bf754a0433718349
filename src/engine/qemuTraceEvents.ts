/**
 * The catalogue of QEMU 7.2 migration trace events (the log backend's text format):
 * every event's printf format, as listed in the fixtures' trace-event-formats-migration.txt,
 * with a name for each of its fields. The parser (qemuTrace.ts) compiles these formats;
 * the types below turn the same table into a discriminated union, `TraceEvent`, whose
 * `kind` is the event name and whose fields are typed from the conversions:
 * `%s` → `string | null` (null when QEMU printed a NULL string as "(null)"), every other
 * conversion → `number` (`%p` printed as "(nil)" → 0; 64-bit values above 2^53 lose
 * precision, which no address or size in a trace comes near).
 *
 * Quirks of the formats themselves are kept verbatim: `%ud` is a `%u` followed by a
 * literal `d` (QEMU's own format bug), so "pc.ram: 16d" parses as 16; and
 * `migrate_send_rp_recv_bitmap ... size 0x%li` prints decimal digits after "0x", so
 * "size 0x8200" is 8200 bytes (a 256 MiB block's 8192-byte bitmap plus 8).
 */

/** One event: its format and the names of its fields, in conversion order. */
export interface EventSpec<F extends string = string, N extends readonly string[] = readonly string[]> {
  readonly format: F;
  readonly fields: N;
}

function ev<const F extends string, const N extends readonly string[]>(format: F, ...fields: N): EventSpec<F, N> {
  return { format, fields };
}

/** Every migration trace event of QEMU 7.2, by name. */
export const QEMU_TRACE_EVENTS = {
  await_return_path_close_on_source_close: ev(''),
  await_return_path_close_on_source_joining: ev(''),
  get_queued_page: ev('%s/0x%lx page_abs=0x%lx', 'block', 'offset', 'pageAbs'),
  get_queued_page_not_dirty: ev('%s/0x%lx page_abs=0x%lx', 'block', 'offset', 'pageAbs'),
  loadvm_handle_cmd_packaged: ev('%u', 'length'),
  loadvm_handle_cmd_packaged_main: ev('%d', 'ret'),
  loadvm_handle_cmd_packaged_received: ev('%d', 'ret'),
  loadvm_handle_recv_bitmap: ev('%s', 'block'),
  loadvm_postcopy_handle_advise: ev(''),
  loadvm_postcopy_handle_listen: ev('%s', 'stage'),
  loadvm_postcopy_handle_resume: ev(''),
  loadvm_postcopy_handle_run: ev(''),
  loadvm_postcopy_handle_run_bh: ev('%s', 'stage'),
  loadvm_postcopy_ram_handle_discard: ev(''),
  loadvm_postcopy_ram_handle_discard_end: ev(''),
  loadvm_postcopy_ram_handle_discard_header: ev('%s: %ud', 'block', 'length'),
  loadvm_process_command: ev('com=%s len=%d', 'com', 'len'),
  loadvm_process_command_ping: ev('0x%x', 'value'),
  loadvm_state_cleanup: ev(''),
  loadvm_state_setup: ev(''),
  mark_postcopy_blocktime_begin: ev('addr: 0x%lx, dd: %p, time: %u, cpu: %d, already_received: %d', 'addr', 'dd', 'time', 'cpu', 'alreadyReceived'),
  mark_postcopy_blocktime_end: ev('addr: 0x%lx, dd: %p, time: %u, affected_cpu: %d', 'addr', 'dd', 'time', 'affectedCpu'),
  migrate_fd_cancel: ev(''),
  migrate_fd_cleanup: ev(''),
  migrate_fd_error: ev('error=%s', 'error'),
  migrate_global_state_post_load: ev('loaded state: %s', 'state'),
  migrate_global_state_pre_save: ev('saved state: %s', 'state'),
  migrate_handle_rp_req_pages: ev('in %s at 0x%zx len 0x%zx', 'block', 'start', 'len'),
  migrate_pending: ev('pending size %lu max %lu (pre = %lu compat=%lu post=%lu)', 'size', 'max', 'pre', 'compat', 'post'),
  migrate_send_rp_message: ev('%d: len %d', 'msgType', 'len'),
  migrate_send_rp_recv_bitmap: ev('block \'%s\' size 0x%li', 'block', 'size'),
  migrate_set_state: ev('new state %s', 'state'),
  migrate_state_too_big: ev(''),
  migrate_transferred: ev('transferred %lu time_spent %lu bandwidth %lu max_size %ld', 'transferred', 'timeSpent', 'bandwidth', 'maxSize'),
  migration_bitmap_clear_dirty: ev('rb %s start 0x%lx size 0x%lx page 0x%lx', 'block', 'start', 'size', 'page'),
  migration_bitmap_sync_end: ev('dirty_pages %lu', 'dirtyPages'),
  migration_bitmap_sync_start: ev(''),
  migration_block_flush_blks: ev('%s submitted %d read_done %d transferred %d', 'label', 'submitted', 'readDone', 'transferred'),
  migration_block_init_full: ev('Start full migration for %s', 'device'),
  migration_block_init_shared: ev('Start migration for %s with shared base image', 'device'),
  migration_block_save: ev('Enter save live %s submitted %d transferred %d', 'label', 'submitted', 'transferred'),
  migration_block_save_complete: ev('Block migration completed'),
  migration_block_save_device_dirty: ev('Error reading sector %ld', 'sector'),
  migration_block_save_pending: ev('Enter save live pending  %lu', 'pending'),
  migration_completion_file_err: ev(''),
  migration_completion_postcopy_end: ev(''),
  migration_completion_postcopy_end_after_complete: ev(''),
  migration_completion_vm_stop: ev('ret %d', 'ret'),
  migration_exec_incoming: ev('cmd=%s', 'cmd'),
  migration_exec_outgoing: ev('cmd=%s', 'cmd'),
  migration_fd_incoming: ev('fd=%d', 'fd'),
  migration_fd_outgoing: ev('fd=%d', 'fd'),
  migration_pagecache_init: ev('Setting cache buckets to %ld', 'buckets'),
  migration_pagecache_insert: ev('Error allocating page'),
  migration_rate_limit_post: ev('urgent: %d', 'urgent'),
  migration_rate_limit_pre: ev('%d ms', 'ms'),
  migration_return_path_end_after: ev('%d', 'ret'),
  migration_return_path_end_before: ev(''),
  migration_set_incoming_channel: ev('ioc=%p ioctype=%s', 'ioc', 'ioctype'),
  migration_set_outgoing_channel: ev('ioc=%p ioctype=%s hostname=%s err=%p', 'ioc', 'ioctype', 'hostname', 'err'),
  migration_socket_incoming_accepted: ev(''),
  migration_socket_outgoing_connected: ev('hostname=%s', 'hostname'),
  migration_socket_outgoing_error: ev('error=%s', 'error'),
  migration_thread_after_loop: ev(''),
  migration_thread_file_err: ev(''),
  migration_thread_low_pending: ev('%lu', 'pending'),
  migration_thread_setup_complete: ev(''),
  migration_throttle: ev(''),
  migration_tls_incoming_handshake_complete: ev(''),
  migration_tls_incoming_handshake_error: ev('err=%s', 'err'),
  migration_tls_incoming_handshake_start: ev(''),
  migration_tls_outgoing_handshake_complete: ev(''),
  migration_tls_outgoing_handshake_error: ev('err=%s', 'err'),
  migration_tls_outgoing_handshake_start: ev('hostname=%s', 'hostname'),
  open_return_path_on_source: ev(''),
  open_return_path_on_source_continue: ev(''),
  postcopy_cleanup_range: ev('%s: %p offset=0x%zx length=0x%zx', 'block', 'host', 'offset', 'length'),
  postcopy_discard_send_finish: ev('%s mask words sent=%d in %d commands', 'block', 'wordsSent', 'commands'),
  postcopy_discard_send_range: ev('%s:%lx/%lx', 'block', 'start', 'length'),
  postcopy_init_range: ev('%s: %p offset=0x%zx length=0x%zx', 'block', 'host', 'offset', 'length'),
  postcopy_nhp_range: ev('%s: %p offset=0x%zx length=0x%zx', 'block', 'host', 'offset', 'length'),
  postcopy_page_req_add: ev('new page req %p total %d', 'host', 'total'),
  postcopy_page_req_del: ev('resolved page req %p total %d', 'host', 'total'),
  postcopy_page_req_sync: ev('sync page req %p', 'host'),
  postcopy_pause_continued: ev(''),
  postcopy_pause_fast_load: ev(''),
  postcopy_pause_fast_load_continued: ev(''),
  postcopy_pause_fault_thread: ev(''),
  postcopy_pause_fault_thread_continued: ev(''),
  postcopy_pause_incoming: ev(''),
  postcopy_pause_incoming_continued: ev(''),
  postcopy_pause_return_path: ev(''),
  postcopy_pause_return_path_continued: ev(''),
  postcopy_place_page: ev('host=%p', 'host'),
  postcopy_place_page_zero: ev('host=%p', 'host'),
  postcopy_preempt_enabled: ev('%d', 'enabled'),
  postcopy_preempt_hit: ev('ramblock %s offset 0x%lx', 'block', 'offset'),
  postcopy_preempt_new_channel: ev(''),
  postcopy_preempt_reset_channel: ev(''),
  postcopy_preempt_restored: ev('ramblock %s offset 0x%lx', 'block', 'offset'),
  postcopy_preempt_send_host_page: ev('ramblock %s offset 0x%lx', 'block', 'offset'),
  postcopy_preempt_switch_channel: ev('%d', 'channel'),
  postcopy_preempt_thread_entry: ev(''),
  postcopy_preempt_thread_exit: ev(''),
  postcopy_preempt_tls_handshake: ev(''),
  postcopy_preempt_triggered: ev('during sending ramblock %s offset 0x%lx', 'block', 'offset'),
  postcopy_ram_enable_notify: ev(''),
  postcopy_ram_fault_thread_entry: ev(''),
  postcopy_ram_fault_thread_exit: ev(''),
  postcopy_ram_fault_thread_fds_core: ev('ufd: %d quitfd: %d', 'ufd', 'quitfd'),
  postcopy_ram_fault_thread_fds_extra: ev('%zd/%s: %d', 'index', 'name', 'fd'),
  postcopy_ram_fault_thread_quit: ev(''),
  postcopy_ram_fault_thread_request: ev('Request for HVA=0x%lx rb=%s offset=0x%zx pid=%u', 'hva', 'block', 'offset', 'pid'),
  postcopy_ram_incoming_cleanup_blocktime: ev('total blocktime %lu', 'total'),
  postcopy_ram_incoming_cleanup_closeuf: ev(''),
  postcopy_ram_incoming_cleanup_entry: ev(''),
  postcopy_ram_incoming_cleanup_exit: ev(''),
  postcopy_ram_incoming_cleanup_join: ev(''),
  postcopy_ram_listen_thread_exit: ev(''),
  postcopy_ram_listen_thread_start: ev(''),
  postcopy_request_shared_page: ev('for %s in %s offset 0x%lx', 'sharer', 'block', 'offset'),
  postcopy_request_shared_page_present: ev('%s already %s offset 0x%lx', 'sharer', 'block', 'offset'),
  postcopy_start: ev(''),
  postcopy_start_set_run: ev(''),
  postcopy_wake_shared: ev('at 0x%lx in %s', 'clientAddr', 'block'),
  process_incoming_migration_co_end: ev('ret=%d postcopy-state=%d', 'ret', 'postcopyState'),
  process_incoming_migration_co_postcopy_end_main: ev(''),
  qemu_loadvm_state_post_main: ev('%d', 'ret'),
  qemu_loadvm_state_section: ev('%d', 'sectionType'),
  qemu_loadvm_state_section_command: ev('%d', 'ret'),
  qemu_loadvm_state_section_partend: ev('%u', 'sectionId'),
  qemu_loadvm_state_section_startfull: ev('%u(%s) %u %u', 'sectionId', 'idstr', 'instanceId', 'versionId'),
  qemu_savevm_send_packaged: ev(''),
  qemu_savevm_send_postcopy_advise: ev(''),
  qemu_savevm_send_postcopy_ram_discard: ev('%s: %ud', 'block', 'length'),
  qmp_enter_migrate: ev('%s', 'args'),
  qmp_enter_migrate_cancel: ev('%s', 'args'),
  qmp_enter_migrate_continue: ev('%s', 'args'),
  qmp_enter_migrate_incoming: ev('%s', 'args'),
  qmp_enter_migrate_pause: ev('%s', 'args'),
  qmp_enter_migrate_recover: ev('%s', 'args'),
  qmp_enter_migrate_set_capabilities: ev('%s', 'args'),
  qmp_enter_migrate_set_parameters: ev('%s', 'args'),
  qmp_enter_migrate_start_postcopy: ev('%s', 'args'),
  qmp_exit_migrate: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_cancel: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_continue: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_incoming: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_pause: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_recover: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_set_capabilities: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_set_parameters: ev('%s %d', 'result', 'ok'),
  qmp_exit_migrate_start_postcopy: ev('%s %d', 'result', 'ok'),
  ram_block_discard_range: ev('%s@%p + 0x%zx: madvise: %d fallocate: %d ret: %d', 'block', 'host', 'length', 'madvise', 'fallocate', 'ret'),
  ram_dirty_bitmap_reload_begin: ev('%s', 'block'),
  ram_dirty_bitmap_reload_complete: ev('%s', 'block'),
  ram_dirty_bitmap_request: ev('%s', 'block'),
  ram_dirty_bitmap_sync_complete: ev(''),
  ram_dirty_bitmap_sync_start: ev(''),
  ram_dirty_bitmap_sync_wait: ev(''),
  ram_discard_range: ev('%s: start: %lx %zx', 'block', 'start', 'length'),
  ram_load_complete: ev('exit_code %d seq iteration %lu', 'exitCode', 'seqIter'),
  ram_load_loop: ev('%s: addr: 0x%lx flags: 0x%x host: %p', 'block', 'addr', 'flags', 'host'),
  ram_load_postcopy_loop: ev('chan=%d addr=0x%lx flags=0x%x', 'channel', 'addr', 'flags'),
  ram_postcopy_send_discard_bitmap: ev(''),
  ram_save_iterate_big_wait: ev('big wait: %lu milliseconds, %d iterations', 'ms', 'iterations'),
  ram_save_page: ev('%s: offset: 0x%lx host: %p', 'block', 'offset', 'host'),
  ram_save_queue_pages: ev('%s: start: 0x%zx len: 0x%zx', 'block', 'start', 'len'),
  ram_state_resume_prepare: ev('%ld', 'pages'),
  ram_write_tracking_ramblock_start: ev('%s: page_size: %zu addr: %p length: %zu', 'block', 'pageSize', 'addr', 'length'),
  ram_write_tracking_ramblock_stop: ev('%s: page_size: %zu addr: %p length: %zu', 'block', 'pageSize', 'addr', 'length'),
  savevm_command_send: ev('com=0x%x len=%d', 'com', 'len'),
  savevm_section_end: ev('%s, section_id %u -> %d', 'idstr', 'sectionId', 'ret'),
  savevm_section_skip: ev('%s, section_id %u', 'idstr', 'sectionId'),
  savevm_section_start: ev('%s, section_id %u', 'idstr', 'sectionId'),
  savevm_send_colo_enable: ev(''),
  savevm_send_open_return_path: ev(''),
  savevm_send_ping: ev('0x%x', 'value'),
  savevm_send_postcopy_listen: ev(''),
  savevm_send_postcopy_resume: ev(''),
  savevm_send_postcopy_run: ev(''),
  savevm_send_recv_bitmap: ev('%s', 'block'),
  savevm_state_cleanup: ev(''),
  savevm_state_complete_precopy: ev(''),
  savevm_state_header: ev(''),
  savevm_state_iterate: ev(''),
  savevm_state_resume_prepare: ev(''),
  savevm_state_setup: ev(''),
  source_return_path_thread_bad_end: ev(''),
  source_return_path_thread_end: ev(''),
  source_return_path_thread_entry: ev(''),
  source_return_path_thread_loop_top: ev(''),
  source_return_path_thread_pong: ev('0x%x', 'value'),
  source_return_path_thread_resume_ack: ev('%u', 'value'),
  source_return_path_thread_shut: ev('0x%x', 'value'),
} as const;

/** The name of a known event. */
export type TraceEventName = keyof typeof QEMU_TRACE_EVENTS;

/** Pure: is `name` a known event? */
export function isTraceEventName(name: string): name is TraceEventName {
  return Object.prototype.hasOwnProperty.call(QEMU_TRACE_EVENTS, name);
}

/** The value types of a format's conversions, in order: `%s` → string | null, else number. */
type ConversionTypes<F extends string> = F extends `${string}%${infer Rest}`
  ? [Rest extends `s${string}` ? string | null : number, ...ConversionTypes<Rest>]
  : [];

/** Pairs field names with value types into an object type. */
type Zip<N extends readonly string[], T extends readonly unknown[]> = N extends readonly [
  infer Name extends string,
  ...infer MoreNames extends readonly string[],
]
  ? T extends readonly [infer Type, ...infer MoreTypes]
    ? { readonly [K in Name]: Type } & Zip<MoreNames, MoreTypes>
    : never
  : unknown;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type FieldsOf<K extends TraceEventName> = (typeof QEMU_TRACE_EVENTS)[K] extends EventSpec<infer F, infer N>
  ? Zip<N, ConversionTypes<F>>
  : never;

/** Where a line came from. `tid` and `timeUs` are NO_TIME when the line has no `tid@sec.usec:` prefix. */
export interface TraceLineMeta {
  /** 1-based line number in the file. */
  readonly line: number;
  /** Linux thread id of the emitting thread. */
  readonly tid: number;
  /** gettimeofday wall clock, in whole µs since the epoch. */
  readonly timeUs: number;
}

/** tid / timeUs of a line written without `-msg timestamp=on`. */
export const NO_TIME = -1;

/** The parsed event `K`. */
export type TraceEventOf<K extends TraceEventName> = Simplify<{ readonly kind: K } & TraceLineMeta & FieldsOf<K>>;

/** Any parsed event: switch on `kind` to narrow. */
export type TraceEvent = { [K in TraceEventName]: TraceEventOf<K> }[TraceEventName];
