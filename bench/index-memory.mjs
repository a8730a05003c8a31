#!/usr/bin/env node
// Index memory of a local repository: the memory a loaded blob index holds, measured by loading
// it in a fresh process (node --expose-gc) and comparing, after a full GC before and after, the
// JS heap plus the ArrayBuffers (the index keeps its blobs in typed arrays, outside the heap).
//
// With --terabytes N it also writes, into a scratch repository with the same password and chunk
// size, index files for N TB of distinct data shaped like REPOSITORY_FOLDER's (its blobs per
// pack and per index file; 4 MiB chunks make 262,144 blobs a TB) and measures that index: a
// small repository's figure per blob is mostly the fixed cost of loading any index.
//
// Prints one JSON line: {blobs, packs, heapBytes, arrayBufferBytes, bytes, bytesPerBlob,
// synthetic?: {terabytes, blobs, packs, indexFiles, bytes, bytesPerBlob, mbPerTB}}.
//
//   CAIRN_PASSWORD=... node --expose-gc bench/index-memory.mjs REPOSITORY_FOLDER [--terabytes N]
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeIndex } from '../packages/core/dist/repository/format.js';
import { Repository } from '../packages/core/dist/repository/repository.js';
import { LocalTarget } from '../packages/target-local/dist/local-target.js';

const [folder, flag, value] = process.argv.slice(2);
const terabytes = flag === '--terabytes' ? Number(value) : 0;
if (!folder || (flag !== undefined && !(terabytes > 0)) || typeof globalThis.gc !== 'function') {
  console.error('usage: CAIRN_PASSWORD=... node --expose-gc bench/index-memory.mjs REPOSITORY_FOLDER [--terabytes N]');
  process.exit(2);
}
const password = process.env.CAIRN_PASSWORD ?? '';

const memoryAfterGc = () => {
  globalThis.gc();
  globalThis.gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return { heapUsed, arrayBuffers };
};

/** Loads the repository's index and returns it with the memory it holds. */
async function measureIndex(repository) {
  const before = memoryAfterGc();
  const index = await repository.loadIndex('write');
  const after = memoryAfterGc();
  const heapBytes = after.heapUsed - before.heapUsed;
  const arrayBufferBytes = after.arrayBuffers - before.arrayBuffers;
  const bytes = heapBytes + arrayBufferBytes;
  const figures = { blobs: index.blobCount, packs: index.packIds.length, heapBytes, arrayBufferBytes, bytes, bytesPerBlob: index.blobCount ? bytes / index.blobCount : null };
  return { index, figures };
}

/** Index files naming `blobs` made-up blobs, `perPack` to a pack and `packsPerFile` packs to a file. */
async function writeSyntheticIndex(repository, { blobs, perPack, packsPerFile, chunkSize }) {
  let files = 0;
  let packs = 0;
  for (let written = 0; written < blobs; files++) {
    const batch = [];
    for (let p = 0; p < packsPerFile && written < blobs; p++, packs++) {
      const count = Math.min(perPack, blobs - written);
      const sealed = Math.round(chunkSize * 0.6);
      batch.push({ id: randomBytes(32), blobs: Array.from({ length: count }, (_, b) => ({ type: 0, id: randomBytes(32), offset: b * sealed, length: sealed, rawLength: chunkSize })) });
      written += count;
    }
    await repository.putSealed('index', encodeIndex(batch));
  }
  return { files, packs };
}

const repository = await Repository.open(new LocalTarget(folder), password);
const { index: real, figures } = await measureIndex(repository);
const result = { ...figures };
if (terabytes > 0 && real.blobCount > 0) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-index-memory-'));
  try {
    const chunkSize = repository.config.chunkSize;
    const synthetic = await Repository.init(new LocalTarget(path.join(scratch, 'repo')), password, { chunkSize });
    const blobs = Math.round((terabytes * 1024 ** 4) / chunkSize);
    const perPack = Math.max(1, Math.round(real.blobCount / Math.max(1, real.packIds.length)));
    const packsPerFile = Math.max(1, Math.round(real.packIds.length / Math.max(1, real.files.size)));
    const shape = await writeSyntheticIndex(synthetic, { blobs, perPack, packsPerFile, chunkSize });
    const { figures: large } = await measureIndex(await Repository.open(new LocalTarget(path.join(scratch, 'repo')), password));
    result.synthetic = { terabytes, indexFiles: shape.files, ...large, mbPerTB: large.bytes / terabytes / 2 ** 20 };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
console.log(JSON.stringify(result));
