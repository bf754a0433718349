/** Streaming codec of QEMU's migration wire (docs/qemu-wire.md). */
export * from './items.js';
export { MainStreamDecoder, type MainStreamOptions, type MainStreamState } from './mainStream.js';
export { PreemptChannelDecoder, type PreemptChannelOptions } from './preemptChannel.js';
export { ReturnPathDecoder, type ReturnPathOptions } from './returnPath.js';
export * from './encoder.js';
