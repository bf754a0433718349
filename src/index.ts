/**
 * `postcopy-engine`: the engine of a postcopy live migration's destination (and a model of
 * its source) for a VMM to embed. Your transport feeds the `Destination` its inputs (commands,
 * pages, channel events); your guest memory sits behind the `Backend` port (or use ours:
 * `UffdBackend` on a real userfaultfd, `MockBackend` simulated); a `JournalWriter` records
 * every input and effect, and `replay` re-runs a journal with zero divergence.
 *
 * Start from `describeGuest`: one description of the guest gives the engine config, the
 * backend layout and the journal meta. Times are ns (`t`, `tNs`); offsets and lengths bytes.
 *
 * @packageDocumentation
 */

// The engine
export {
  Destination,
  pageInput,
  type PageInput,
  type DestinationConfig,
  type DestinationSnapshot,
  type EngineStats,
  type ReturnPath,
  type EffectHandlers,
} from './engine/destination.js';
export { Source, isZeroPage, type SourceBlock, type SourceOutput, type PostcopyStartReport, type SourceCounters } from './engine/source.js';
export { PlaceOutcome, type PlaceOutcomeValue, type Backend, type BlockLayout, type FaultBatch, type FaultListener, type SupportCheck, type SupportReport } from './engine/ports.js';
export type { RamBlock, RamBlockConfig } from './engine/ramBlock.js';
export { Bitmap } from './engine/bitmap.js';
export {
  EventKind,
  EVENT_KIND_NAMES,
  MachineId,
  MACHINE_NAMES,
  RequestFlag,
  FaultDisposition,
  ArraySink,
  CountingSink,
  isInput,
  type EventKindValue,
  type MachineIdValue,
  type RecordSink,
  type EventRecord,
} from './engine/events.js';
export * from './engine/constants.js';
export * from './engine/wire.js';
export * as qemuWire from './engine/qemuWire/index.js';
export { applyDiscard, planDiscard, type DiscardRange, type DiscardPlan } from './engine/discard.js';
export { canonicaliseHostPages, discardBlock, type DiscardBlock, type BlockDiscard, type DiscardCounters } from './engine/sourceDiscard.js';

// The guest, described once
export { describeGuest, type GuestDescription, type GuestBlock, type GuestConfig, type JournalMetaOptions } from './journal/guest.js';

// Backends
export { MockBackend, FIRST_VCPU_TID, DEFAULT_BASE_ADDRESS, type MockBackendOptions, type MockBackendStats, type StartVcpusOptions } from './io/backends/mockBackend.js';
export { probeSimulatedHost, type SimulatedHost } from './io/backends/mockProbe.js';
export { UffdBackend, type UffdBackendOptions, type VcpuRun } from './io/backends/uffdBackend.js';
export type { AccessPlan } from './io/backends/accessPatterns.js';

// The journal, its replay and its analysis
export { JournalWriter, type JournalWriterOptions } from './journal/journalWriter.js';
export { JournalReader, type TailInfo } from './journal/journalReader.js';
export type { JournalMeta, JournalBlock } from './journal/meta.js';
export { replay, stateAt, type ReplayOptions, type ReplayResult, type Divergence } from './journal/replay.js';
export { analyzeJournal, type AnalyzeOptions } from './forensics/analysis.js';
export type { Analysis } from './forensics/analysisTypes.js';

// QEMU
export { importQemuTrace, type ImportQemuOptions, type ImportSummary, type ImportProgress, type TraceFileSummary } from './io/qemu/qemuImport.js';

// A whole migration on a simulated clock
export { runSimulatedMigration, type SimulatedMigrationOptions, type SimulatedMigrationResult, type SimulationProgress } from './io/migration/simulatedMigration.js';

// Typed errors, and the package's version
export * from './errors.js';
export { PACKAGE_VERSION } from './paths.js';
