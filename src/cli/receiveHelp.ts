/** The long help of `postcopy receive` (its own file: main.ts loads it without loading the receiver). */
export const RECEIVE_HELP = `
Our destination for a real QEMU source (QEMU 7.2 tested). Listens on HOST:PORT; the source
connects with QMP "migrate uri=tcp:HOST:PORT" (nothing like migrate-incoming is needed on
this side). The stream is decoded and fed to the same engine as "postcopy migrate", guest
memory is laid out from the stream's MEM_SIZE (every RAM block, userfaultfd-registered at
LISTEN), vCPU threads start at RUN and fault on missing pages (REQ_PAGES on the return path).

On the source (QMP):
  migrate-set-capabilities postcopy-ram=on [postcopy-preempt=on]
  migrate uri=tcp:HOST:PORT
  migrate-start-postcopy                      (once precopy made a pass: ram.dirty-sync-count >= 2)
Recovery: after a break (or migrate-pause) this side stays paused and keeps listening on
HOST:PORT (and on --recover-listen, if given); the source resumes with
  migrate uri=tcp:HOST:PORT resume=true

Connections are known by order (QEMU names none): the first is the main stream, the next one
the preempt channel (only with --preempt: the stream does not say whether the source has
postcopy-preempt on, so say it here as you would with migrate-set-capabilities on a QEMU
destination); while paused, one starting with RECV_BITMAP is the resumed main stream. Any
other connection is refused without touching the migration.

Exit status: 0 completed; 3 left paused (the source died or did not resume within
--pause-timeout); 1 failed; 2 refused input (not a QEMU migration stream: a typed one-line
error, journaled; or a MEM_SIZE above --max-memory, refused before allocating anything).
`;
