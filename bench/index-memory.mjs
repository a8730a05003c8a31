#!/usr/bin/env node
// Index memory of a local repository: the heap a loaded blob index holds, measured by loading
// it in a fresh process (node --expose-gc) and comparing the heap after a full GC before and
// after. Prints one JSON line: {blobs, packs, heapBytes, bytesPerBlob}.
//
//   CAIRN_PASSWORD=... node --expose-gc bench/index-memory.mjs REPOSITORY_FOLDER
import { Repository } from '../packages/core/dist/repository/repository.js';
import { LocalTarget } from '../packages/target-local/dist/local-target.js';

const [folder] = process.argv.slice(2);
if (!folder || typeof globalThis.gc !== 'function') {
  console.error('usage: CAIRN_PASSWORD=... node --expose-gc bench/index-memory.mjs REPOSITORY_FOLDER');
  process.exit(2);
}
const heapAfterGc = () => {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage().heapUsed;
};

const repository = await Repository.open(new LocalTarget(folder), process.env.CAIRN_PASSWORD ?? '');
const before = heapAfterGc();
const index = await repository.loadIndex('write');
const heapBytes = heapAfterGc() - before;
console.log(JSON.stringify({ blobs: index.blobCount, packs: index.packIds.length, heapBytes, bytesPerBlob: index.blobCount ? heapBytes / index.blobCount : null }));
