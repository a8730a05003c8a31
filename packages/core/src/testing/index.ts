// Test helpers for cairn and its plugins, imported as `@cairn/core/testing` (needs vitest).
export { describeTargetConformance, type ConformanceOptions, type TargetUnderTest } from './target-conformance.js';
export { MemoryTarget, ObjectNotFoundError, ReadIntoMemoryTarget, sharedView } from './memory-target.js';
export { FaultyTarget, InjectedFaultError, type TargetOperation } from './faulty-target.js';
export { createTestPluginContext } from './plugin-context.js';
export { holdRepositoryLock, writeForeignLock, type ForeignLockOptions, type HoldLockOptions } from './hold-lock.js';
export { memorySource } from './memory-source.js';
export { startHttpCapture, type CapturedRequest, type HttpCapture } from './http-capture.js';
export { sampleDaemonState } from './daemon-states.js';
export { MemoryExport, type MemoryExportOptions } from './memory-export.js';
export { NbdTestClient, goData, metaContextData, type NbdOptionReply, type NbdReadResult, type NbdReply, type NbdRequest } from './nbd-client.js';
export * as NBD from '../nbd/nbd-protocol.js';
export { storeFolderSnapshot } from './file-snapshots.js';
export { storeFileSnapshots, writeFileSnapshots, type HandBuiltSnapshot, type NodeSpec, type WriteFileSnapshotsOptions } from './file-snapshot-writer.js';
export { pseudoRandomBytes } from './pseudo-random.js';
