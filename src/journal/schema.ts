/**
 * The journal's SQLite schema (one file per migration, WAL). docs/journal.md explains
 * every table and every event kind. FORMAT_VERSION changes whenever a reader of the old
 * format would misread the new one.
 */
export const FORMAT_VERSION = 1;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL              -- JSON
);
-- One row per segment of consecutive events, stored as columns (src/journal/segment.ts).
CREATE TABLE IF NOT EXISTS events (
  segment   INTEGER PRIMARY KEY,
  first_seq INTEGER NOT NULL UNIQUE,
  count     INTEGER NOT NULL,
  t_first   REAL NOT NULL,         -- ns
  t_last    REAL NOT NULL,         -- ns
  crc       INTEGER NOT NULL,      -- CRC-32 of data
  data      BLOB NOT NULL          -- msgpackr: { v, firstSeq, count, kind, t, cause, block, offset, a, b, payloadEnd, payload }
);
-- Which segments hold events of a kind (and how many): inspect's index by kind.
CREATE TABLE IF NOT EXISTS segment_kinds (
  kind    INTEGER NOT NULL,
  segment INTEGER NOT NULL,
  count   INTEGER NOT NULL,
  PRIMARY KEY (kind, segment)
) WITHOUT ROWID;
-- Offsets each segment touches per block: inspect's index by block and host page.
CREATE TABLE IF NOT EXISTS segment_blocks (
  block      INTEGER NOT NULL,
  segment    INTEGER NOT NULL,
  min_offset REAL NOT NULL,
  max_offset REAL NOT NULL,
  PRIMARY KEY (block, segment)
) WITHOUT ROWID;
-- Engine state before event seq (msgpackr DestinationSnapshot).
CREATE TABLE IF NOT EXISTS snapshots (
  seq   INTEGER PRIMARY KEY,
  state BLOB NOT NULL
);
`;

/** Suffix of the crash-surviving tail file beside a journal. */
export const TAIL_SUFFIX = '-tail';
