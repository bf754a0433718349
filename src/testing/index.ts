/**
 * `postcopy-engine/testing`: a kit for fuzzing your own bitmap, discard and migration code
 * against ours with fast-check (a peer dependency: install `fast-check` 4 next to this
 * package). Arbitraries print their counterexamples as ranges and pages; `assertProperty`
 * and `forAll` print the property's own failure message and honour FC_RUNS, FC_SEED and
 * FC_PATH (replay a reported case without shrinking again).
 *
 * @packageDocumentation
 */
export { fcParams, failureMessage, assertProperty, forAll, type PropertyParams, type Asserter } from './properties.js';
export {
  runsBitmap,
  discardRanges,
  hostPageLayout,
  wireCommandFrame,
  describeBitmap,
  describeRanges,
  withText,
  type RunsBitmapOptions,
  type ByteRange,
  type DiscardRangesOptions,
  type HostPageLayoutOptions,
  type WireCommandFrame,
} from './arbitraries.js';
export { BitmapModel, canonicalHostPagesModel, POSTCOPY_COMMAND_TABLE, type PostcopyStateName } from './models.js';
export { destinationCommands, type DestinationModel, type DestinationReal, type DestinationCommandsOptions } from './commands.js';
export {
  postcopyModel,
  faultThreadModel,
  preemptThreadModel,
  migrationStatusModel,
  postcopyTable,
  faultThreadTable,
  preemptThreadTable,
  migrationStatusTable,
  POSTCOPY_NUMBERS,
  type ReferenceModel,
  type Table,
  type Row,
} from './referenceTables.js';
