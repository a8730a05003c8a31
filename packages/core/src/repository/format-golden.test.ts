// Golden bytes: the layouts of docs/FORMAT.md written out by hand, field by field, compared with
// what cairn encodes, and decoded back. Sealed objects carry a random nonce, so for them this
// file is a second writer: it writes a whole repository from FORMAT.md alone (node:crypto with
// fixed nonces, scrypt, BLAKE3), and cairn must open, check and restore it.
import { createCipheriv, createHash, scryptSync, webcrypto } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Blake3Hasher, blake3 } from '@napi-rs/blake-hash';
import { MemoryTarget } from '../testing/index.js';
import { NONE_CODEC } from '../codecs/builtin.js';
import { SEAL_OVERHEAD, open, seal } from '../crypto/crypto.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { runCheck } from '../pipeline/check.js';
import { runRestore } from '../pipeline/restore.js';
import { openDestination } from '../pipeline/destination.js';
import { silentProgress } from '../pipeline/progress.js';
import {
  BlobType,
  ChunkKind,
  Keys,
  decodeChunkMap,
  decodeIndex,
  decodePackHeader,
  encodeChunkMap,
  encodeIndex,
  encodePackHeader,
  packHeaderLength,
  type IndexedPack,
  type PackedBlob,
} from './format.js';
import { decodeManifest, encodeManifest, type FileSnapshotManifest, type SnapshotManifest } from './snapshot.js';
import { decodeTree, encodeTree, type TreeEntry } from '../files/tree.js';
import { DamageError } from '../errors.js';
import { chunkerInUse, FastCdc, gearTable, useNativeChunker } from '../files/cdc.js';
import { DEFAULT_CDC, type RepositoryConfig } from './config.js';
import { Repository, blobIdSchemeOf } from './repository.js';

/**
 * Bytes from a commented hex dump: on each line, the hex digits up to the first space are
 * bytes, the rest names the field. Blank lines are skipped.
 */
function hex(dump: string): Buffer {
  const bytes = dump
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const digits = line.split(/\s/, 1)[0]!;
      if (!/^([0-9a-f]{2})+$/.test(digits)) throw new Error(`not hex bytes: ${line}`);
      return digits;
    });
  return Buffer.from(bytes.join(''), 'hex');
}

/** 32 bytes counting up from `first`: ids that are easy to spot in a dump. */
const idFrom = (first: number) => Buffer.from(Array.from({ length: 32 }, (_, i) => first + i));

// ---------------------------------------------------------------------------------------------
// Binary layouts (format.ts)

const PACK_HEADER_BLOBS: PackedBlob[] = [
  { type: BlobType.chunk, id: idFrom(0x00), offset: 0, length: 272, rawLength: 65536 },
  { type: BlobType.chunkMap, id: idFrom(0x20), offset: 272, length: 46, rawLength: 18 },
];

// FORMAT.md, Packs: "CPK1" ‖ u32 n ‖ n × (u8 type ‖ id[32] ‖ u32 sealed length ‖ u32 plaintext length)
const GOLDEN_PACK_HEADER = hex(`
  43504b31                                                          "CPK1"
  02000000                                                          u32 n = 2
  00                                                                blob 1: u8 type = 0 (chunk)
  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f  blob 1: id[32]
  10010000                                                          blob 1: u32 sealed length = 272
  00000100                                                          blob 1: u32 plaintext length = 65536
  01                                                                blob 2: u8 type = 1 (chunk map)
  202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f  blob 2: id[32]
  2e000000                                                          blob 2: u32 sealed length = 46
  12000000                                                          blob 2: u32 plaintext length = 18
`);

const INDEX_PACKS: IndexedPack[] = [
  { id: idFrom(0xe0), blobs: PACK_HEADER_BLOBS },
  { id: idFrom(0xc0), blobs: [{ type: BlobType.chunk, id: idFrom(0x40), offset: 0, length: 4194337, rawLength: 4194304 }] },
];

// FORMAT.md, Index: "CIX1" ‖ u32 packCount ‖ packCount × (packId[32] ‖ u32 blobCount ‖
// blobCount × (u8 type ‖ id[32] ‖ u32 offset ‖ u32 sealed length ‖ u32 plaintext length))
const GOLDEN_INDEX = hex(`
  43495831                                                          "CIX1"
  02000000                                                          u32 packCount = 2
  e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff  pack 1: packId[32]
  02000000                                                          pack 1: u32 blobCount = 2
  00                                                                blob 1: u8 type = 0 (chunk)
  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f  blob 1: id[32]
  00000000                                                          blob 1: u32 offset = 0
  10010000                                                          blob 1: u32 sealed length = 272
  00000100                                                          blob 1: u32 plaintext length = 65536
  01                                                                blob 2: u8 type = 1 (chunk map)
  202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f  blob 2: id[32]
  10010000                                                          blob 2: u32 offset = 272
  2e000000                                                          blob 2: u32 sealed length = 46
  12000000                                                          blob 2: u32 plaintext length = 18
  c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf  pack 2: packId[32]
  01000000                                                          pack 2: u32 blobCount = 1
  00                                                                blob 1: u8 type = 0 (chunk)
  404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f  blob 1: id[32]
  00000000                                                          blob 1: u32 offset = 0
  21004000                                                          blob 1: u32 sealed length = 4194337 (4 MiB + codec byte + nonce + tag)
  00004000                                                          blob 1: u32 plaintext length = 4194304
`);

const CHUNK_RECORDS = [{ kind: ChunkKind.data, id: idFrom(0x40) }, { kind: ChunkKind.zero }, { kind: ChunkKind.unused }, { kind: ChunkKind.data, id: idFrom(0x00) }];

// FORMAT.md, Snapshots: a record is u8 kind and, for kind 2, id[32].
const GOLDEN_CHUNK_MAP = hex(`
  02                                                                chunk 0: kind 2 (data)
  404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f  chunk 0: id[32]
  01                                                                chunk 1: kind 1 (zero)
  00                                                                chunk 2: kind 0 (unused)
  02                                                                chunk 3: kind 2 (data)
  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f  chunk 3: id[32]
`);

describe('binary layouts, byte for byte as docs/FORMAT.md writes them', () => {
  it('encodes a pack header, and decodes it with offsets following from the lengths', () => {
    expect(encodePackHeader(PACK_HEADER_BLOBS).toString('hex')).toBe(GOLDEN_PACK_HEADER.toString('hex'));
    expect(packHeaderLength(2)).toBe(GOLDEN_PACK_HEADER.length);
    expect(decodePackHeader(GOLDEN_PACK_HEADER)).toEqual(PACK_HEADER_BLOBS);
  });

  it('encodes an index of two packs, and decodes it', () => {
    expect(encodeIndex(INDEX_PACKS).toString('hex')).toBe(GOLDEN_INDEX.toString('hex'));
    expect(decodeIndex(GOLDEN_INDEX)).toEqual(INDEX_PACKS);
  });

  it('encodes a chunk map with every record kind, and decodes it', () => {
    expect(encodeChunkMap(CHUNK_RECORDS).toString('hex')).toBe(GOLDEN_CHUNK_MAP.toString('hex'));
    expect(decodeChunkMap(GOLDEN_CHUNK_MAP)).toEqual(CHUNK_RECORDS);
  });

  it('names objects as the table of objects does', () => {
    const id = `ab${'0'.repeat(62)}`;
    expect([Keys.config, Keys.key(id), Keys.pack(id), Keys.index(id), Keys.snapshot(id), Keys.lock(id)]).toEqual([
      'config',
      `keys/${id}`,
      `data/ab/${id}`,
      `index/${id}`,
      `snapshots/${id}`,
      `locks/${id}`,
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Snapshot manifests (snapshot.ts)

const DIGEST_HEX = '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85';

function sampleManifest(version: 1 | 2): SnapshotManifest {
  return {
    version,
    time: '2026-11-25T10:09:26.000Z',
    hostname: 'nas',
    job: 'laptop-system',
    source: { type: 'volume', path: '/dev/sdb' },
    layout: { size: 8192, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, filesystem: 'ext4', mode: 'used', partitions: [] },
    size: 8192,
    chunkSize: 4096,
    chunkCount: 2,
    chunkMaps: ['20'.repeat(32)],
    imageDigest: { algorithm: version === 2 ? 'blake3' : 'sha256', hex: DIGEST_HEX },
    compression: 'zstd',
    stats: { bytesRead: 4096, bytesAdded: 1234, dataChunks: 1, zeroChunks: 0, unusedChunks: 1, newChunks: 1, durationMs: 17 },
  };
}

// The JSON of FORMAT.md's example, with the sample's values, in one line as cairn writes it.
const GOLDEN_MANIFEST_V2 =
  '{"version":2,"time":"2026-11-25T10:09:26.000Z","hostname":"nas","job":"laptop-system",' +
  '"source":{"type":"volume","path":"/dev/sdb"},' +
  '"layout":{"size":8192,"sectorSize":512,"kind":"file","partitionTable":{"type":"none"},"filesystem":"ext4","mode":"used","partitions":[]},' +
  `"size":8192,"chunkSize":4096,"chunkCount":2,"chunkMaps":["${'20'.repeat(32)}"],` +
  `"imageDigest":{"algorithm":"blake3","hex":"${DIGEST_HEX}"},"compression":"zstd",` +
  '"stats":{"bytesRead":4096,"bytesAdded":1234,"dataChunks":1,"zeroChunks":0,"unusedChunks":1,"newChunks":1,"durationMs":17}}';

// Version 1: "identical except that instead of imageDigest it has "sha256": "<64 hex>"".
const GOLDEN_MANIFEST_V1 =
  '{"version":1,"time":"2026-11-25T10:09:26.000Z","hostname":"nas","job":"laptop-system",' +
  '"source":{"type":"volume","path":"/dev/sdb"},' +
  '"layout":{"size":8192,"sectorSize":512,"kind":"file","partitionTable":{"type":"none"},"filesystem":"ext4","mode":"used","partitions":[]},' +
  `"size":8192,"chunkSize":4096,"chunkCount":2,"chunkMaps":["${'20'.repeat(32)}"],"compression":"zstd",` +
  '"stats":{"bytesRead":4096,"bytesAdded":1234,"dataChunks":1,"zeroChunks":0,"unusedChunks":1,"newChunks":1,"durationMs":17},' +
  `"sha256":"${DIGEST_HEX}"}`;

describe('snapshot manifests, as docs/FORMAT.md writes them', () => {
  it('encodes a version 2 manifest (BLAKE3 image digest) as its JSON, and decodes it', () => {
    expect(encodeManifest(sampleManifest(2)).toString('utf8')).toBe(GOLDEN_MANIFEST_V2);
    expect(decodeManifest('golden', Buffer.from(GOLDEN_MANIFEST_V2))).toEqual(sampleManifest(2));
  });

  it('encodes a version 1 manifest with "sha256" in place of "imageDigest", and decodes it', () => {
    expect(encodeManifest(sampleManifest(1)).toString('utf8')).toBe(GOLDEN_MANIFEST_V1);
    expect(decodeManifest('golden', Buffer.from(GOLDEN_MANIFEST_V1))).toEqual(sampleManifest(1));
  });
});

// ---------------------------------------------------------------------------------------------
// Trees and file snapshot manifests (files/tree.ts, snapshot.ts; format version 5)

const NS = 1_700_000_000_123_456_789n;

/** A folder with one entry of every kind, as docs/FORMAT.md's Trees table describes them. */
function sampleTree(): TreeEntry[] {
  const common = { uid: 1000, gid: 1000, mtimeNs: NS, ctimeNs: NS + 1n, atimeNs: -5n, inode: 12345678901234567n, device: 2049n, links: 1 };
  return [
    // Given out of order: encodeTree sorts by name bytes.
    { ...common, name: Buffer.from('zeros.img'), type: 'file', mode: 0o644, size: 1 << 30, content: [] },
    { ...common, name: Buffer.from([0x66, 0xff]), type: 'fifo', mode: 0o600, size: 0 },
    { ...common, name: Buffer.from('notes.txt'), type: 'file', mode: 0o4755, user: 'u', group: 'staff', size: 3000, links: 2,
      xattrs: [{ name: 'system.posix_acl_access', value: Buffer.from([2, 0, 0, 0]) }, { name: 'user.k', value: Buffer.from('v') }],
      content: [{ offset: 0, length: 1000, id: '11'.repeat(32) }, { offset: 2048, length: 100, id: '22'.repeat(32) }], changed: true },
    { ...common, name: Buffer.from('dir'), type: 'dir', mode: 0o1777, size: 0, subtree: '33'.repeat(32) },
    { ...common, name: Buffer.from('gone'), type: 'dir', mode: 0o700, size: 0, error: 'EACCES: permission denied' },
    { ...common, name: Buffer.from('link'), type: 'symlink', mode: 0o777, size: 1, target: Buffer.from([0xfe]) },
    { ...common, name: Buffer.from('tty'), type: 'chardev', mode: 0o620, size: 0, rdev: 1025n },
  ];
}

const COMMON = '"uid":1000,"gid":1000';
const TIMES = `"mtime":"${NS}","ctime":"${NS + 1n}","atime":"-5"`;
const IDS = '"inode":"12345678901234567","device":"2049"';
// Sorted by name bytes: "dir" < "f\xff" < "gone" < "link" < "notes.txt" < "tty" < "zeros.img".
const GOLDEN_TREE =
  '{"version":1,"entries":[' +
  `{"name":"dir","type":"dir","mode":1023,${COMMON},${TIMES},"size":0,${IDS},"links":1,"subtree":"${'33'.repeat(32)}"},` +
  `{"nameBytes":"Zv8=","type":"fifo","mode":384,${COMMON},${TIMES},"size":0,${IDS},"links":1},` +
  `{"name":"gone","type":"dir","mode":448,${COMMON},${TIMES},"size":0,${IDS},"links":1,"error":"EACCES: permission denied"},` +
  `{"name":"link","type":"symlink","mode":511,${COMMON},${TIMES},"size":1,${IDS},"links":1,"targetBytes":"/g=="},` +
  `{"name":"notes.txt","type":"file","mode":2541,${COMMON},"user":"u","group":"staff",${TIMES},"size":3000,${IDS},"links":2,` +
  `"xattrs":[["system.posix_acl_access","AgAAAA=="],["user.k","dg=="]],"content":[[0,1000,"${'11'.repeat(32)}"],[2048,100,"${'22'.repeat(32)}"]],"changed":true},` +
  `{"name":"tty","type":"chardev","mode":400,${COMMON},${TIMES},"size":0,${IDS},"links":1,"rdev":"1025"},` +
  `{"name":"zeros.img","type":"file","mode":420,${COMMON},${TIMES},"size":1073741824,${IDS},"links":1,"content":[]}` +
  ']}';

function sampleFileManifest(): FileSnapshotManifest {
  return {
    version: 3,
    kind: 'files',
    time: '2026-11-25T10:09:26.000Z',
    hostname: 'nas',
    job: 'home',
    source: { type: 'files', path: '/home/u/docs, /etc' },
    paths: ['/home/u/docs', '/etc'],
    tree: '44'.repeat(32),
    parent: '55'.repeat(32),
    chunker: { algorithm: 'fastcdc', min: 524288, avg: 1048576, max: 8388608 },
    compression: 'zstd',
    stats: { files: 2, dirs: 5, others: 1, totalBytes: 3000, bytesRead: 1100, bytesAdded: 999, unchangedFiles: 1, dataChunks: 2, newChunks: 1, treeBlobs: 5, changedWhileRead: 1, durationMs: 12 },
    skipped: [{ path: '/home/u/docs/secret', reason: 'EACCES: permission denied' }],
    lostPaths: ['/home/u/docs/a.txt', '/home/u/docs/old/'],
    repairedFrom: '66'.repeat(32),
  };
}

const GOLDEN_FILE_MANIFEST =
  '{"version":3,"kind":"files","time":"2026-11-25T10:09:26.000Z","hostname":"nas","job":"home",' +
  '"source":{"type":"files","path":"/home/u/docs, /etc"},"paths":["/home/u/docs","/etc"],' +
  `"tree":"${'44'.repeat(32)}","parent":"${'55'.repeat(32)}",` +
  '"chunker":{"algorithm":"fastcdc","min":524288,"avg":1048576,"max":8388608},"compression":"zstd",' +
  '"stats":{"files":2,"dirs":5,"others":1,"totalBytes":3000,"bytesRead":1100,"bytesAdded":999,"unchangedFiles":1,"dataChunks":2,"newChunks":1,"treeBlobs":5,"changedWhileRead":1,"durationMs":12},' +
  '"skipped":[{"path":"/home/u/docs/secret","reason":"EACCES: permission denied"}],' +
  `"lostPaths":["/home/u/docs/a.txt","/home/u/docs/old/"],"repairedFrom":"${'66'.repeat(32)}"}`;

describe('trees and file snapshot manifests, as docs/FORMAT.md writes them', () => {
  it('encodes a tree with every kind of entry and field as its JSON, sorted by name bytes, and decodes it', () => {
    const sorted = [...sampleTree()].sort((a, b) => Buffer.compare(a.name, b.name));
    expect(encodeTree(sampleTree()).toString('utf8')).toBe(GOLDEN_TREE);
    expect(decodeTree('golden', Buffer.from(GOLDEN_TREE))).toEqual(sorted);
  });

  it('refuses a tree that breaks the rules a reader must check', () => {
    const broken = [
      GOLDEN_TREE.replace('"version":1', '"version":2'),
      GOLDEN_TREE.replace('"name":"dir"', '"name":".."'),
      GOLDEN_TREE.replace(`,"subtree":"${'33'.repeat(32)}"`, ''),
      GOLDEN_TREE.replace(',"rdev":"1025"', ''),
      GOLDEN_TREE.replace('[2048,100,', '[500,100,'),
      GOLDEN_TREE.replace('"size":3000', '"size":2100'),
      GOLDEN_TREE.replace(`"mtime":"${NS}"`, `"mtime":${NS}`),
    ];
    for (const tree of broken) expect(() => decodeTree('golden', Buffer.from(tree))).toThrow(DamageError);
  });

  it('encodes a version 3 manifest as its JSON, and decodes it', () => {
    expect(encodeManifest(sampleFileManifest()).toString('utf8')).toBe(GOLDEN_FILE_MANIFEST);
    expect(decodeManifest('golden', Buffer.from(GOLDEN_FILE_MANIFEST))).toEqual(sampleFileManifest());
    expect(() => decodeManifest('golden', Buffer.from(GOLDEN_FILE_MANIFEST.replace('"lostPaths":["/home/u/docs/a.txt",', '"lostPaths":[1,')))).toThrow(DamageError);
  });
});

// ---------------------------------------------------------------------------------------------
// Content-defined chunking (files/cdc.ts): FORMAT.md's rules written out again, independently.

/** gear[i] = first 4 bytes (LE u32) of BLAKE3-keyed(blobId key, "cairn-fastcdc-gear" ‖ i). */
function referenceGear(blobIdKey: Buffer): number[] {
  return Array.from({ length: 256 }, (_, i) => {
    const hasher = Blake3Hasher.newKeyed(blobIdKey);
    hasher.update(Buffer.concat([Buffer.from('cairn-fastcdc-gear', 'ascii'), Buffer.from([i])]));
    return hasher.digestBuffer().readUInt32LE(0);
  });
}

/** Chunk lengths as FORMAT.md's "Cut" rule says, with BigInt-free 32-bit arithmetic kept unsigned. */
function referenceCuts(data: Buffer, gear: number[], min: number, avg: number, max: number): number[] {
  const bits = Math.log2(avg);
  const high = (n: number) => (n <= 0 ? 0 : Number(((1n << BigInt(n)) - 1n) << BigInt(32 - n)));
  const [maskS, maskL] = [high(bits + 2), high(bits - 2)];
  const lengths: number[] = [];
  for (let start = 0; start < data.length; ) {
    let length = Math.min(max, data.length - start);
    let h = 0;
    for (let p = min; p < length; p++) {
      h = ((h * 2) % 2 ** 32 + gear[data[start + p]!]!) % 2 ** 32;
      const mask = p + 1 < avg ? maskS : maskL;
      if (Number(BigInt(h) & BigInt(mask)) === 0) {
        length = p + 1;
        break;
      }
    }
    lengths.push(length);
    start += length;
  }
  return lengths;
}

describe('content-defined chunking, as docs/FORMAT.md defines it', () => {
  const key = { encryption: Buffer.alloc(32), blobId: Buffer.from(Array.from({ length: 32 }, (_, i) => i)) };
  const config = { version: 5, blobId: 'blake3-keyed' } as RepositoryConfig;

  it('derives the gear table from the blob-id key', () => {
    expect([...gearTable(config, key)]).toEqual(referenceGear(key.blobId));
  });

  it.each(['javascript', 'native'] as const)('cuts where the rules say, for small sizes and for the default ones (%s loop)', async (loop) => {
    if (loop === 'native') await useNativeChunker();
    expect(chunkerInUse()).toBe(loop);
    const gear = referenceGear(key.blobId);
    const small = { algorithm: 'fastcdc' as const, min: 64, avg: 256, max: 1024 };
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 2654435761) >>> 13 & 0xff));
    const noisy = Buffer.concat([data, Buffer.alloc(5000), data.subarray(0, 7000)]);
    const lengths = new FastCdc(gearTable(config, key), small).lengths(noisy);
    expect(lengths).toEqual(referenceCuts(noisy, gear, 64, 256, 1024));
    // Both masks and the forced cut at max all decided some boundaries.
    expect(lengths.some((n) => n < 256)).toBe(true);
    expect(lengths.some((n) => n > 256 && n < 1024)).toBe(true);
    expect(lengths).toContain(1024);
    const big = Buffer.alloc(12 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
    const cuts = new FastCdc(gearTable(config, key), DEFAULT_CDC).lengths(big);
    expect(cuts).toEqual(referenceCuts(big, gear, DEFAULT_CDC.min, DEFAULT_CDC.avg, DEFAULT_CDC.max));
    expect(cuts.some((n) => n < DEFAULT_CDC.max)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Sealing (crypto.ts): seal(key, plaintext) = nonce[12] ‖ AES-256-GCM ciphertext ‖ tag[16].

// AES-256 test cases 13 to 15 of McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)",
// laid out as FORMAT.md's sealed objects.
const GCM_CASES = [
  {
    name: 'test case 13 (empty plaintext)',
    key: '00'.repeat(32),
    plaintext: '',
    sealed: hex(`
      000000000000000000000000          nonce[12]
      530f8afbc74536b9a963b4f1c4cb738b  tag[16]
    `),
  },
  {
    name: 'test case 14',
    key: '00'.repeat(32),
    plaintext: '00'.repeat(16),
    sealed: hex(`
      000000000000000000000000          nonce[12]
      cea7403d4d606b6e074ec5d3baf39d18  ciphertext
      d0d1c8a799996bf0265b98b5d48ab919  tag[16]
    `),
  },
  {
    name: 'test case 15',
    key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
    plaintext: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255',
    sealed: hex(`
      cafebabefacedbaddecaf888                                          nonce[12]
      522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa  ciphertext
      8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad  ciphertext (continued)
      b094dac5d93471bdec1a502270e3cc6c                                  tag[16]
    `),
  },
];

describe('sealed objects, as docs/FORMAT.md lays them out', () => {
  it.each(GCM_CASES)('opens $name', ({ key, plaintext, sealed }) => {
    expect(open(Buffer.from(key, 'hex'), sealed).toString('hex')).toBe(plaintext);
  });

  it('seals as nonce, then ciphertext and tag as AES-GCM (WebCrypto, no associated data) reads them', async () => {
    const { key, plaintext } = GCM_CASES[2]!;
    // The plaintext in two parts is sealed as their concatenation.
    const parts = [Buffer.from(plaintext.slice(0, 20), 'hex'), Buffer.from(plaintext.slice(20), 'hex')];
    const sealed = seal(Buffer.from(key, 'hex'), ...parts);
    expect(sealed.length).toBe(12 + plaintext.length / 2 + 16);
    expect(SEAL_OVERHEAD).toBe(28);
    const webKey = await webcrypto.subtle.importKey('raw', Buffer.from(key, 'hex'), 'AES-GCM', false, ['decrypt']);
    const opened = await webcrypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.subarray(0, 12), tagLength: 128 }, webKey, sealed.subarray(12));
    expect(Buffer.from(opened).toString('hex')).toBe(plaintext);
  });
});

// ---------------------------------------------------------------------------------------------
// A whole repository written from FORMAT.md alone, read by cairn.

/** FORMAT.md, Sealing, with a nonce of our choosing. */
function sealWithNonce(key: Buffer, nonce: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

const u8 = (value: number) => Buffer.of(value);
const u32 = (value: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value);
  return bytes;
};
const sha256Hex = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const keyedBlake3 = (key: Buffer, bytes: Buffer) => Blake3Hasher.newKeyed(key).update(bytes).digestBuffer();
const nonce = (n: number) => Buffer.alloc(12, n);

// BLAKE3's published test vector: this key, and input byte i = i mod 251, 1024 bytes long.
const BLOB_ID_KEY = Buffer.from('whats the Elvish word for friend');
const VECTOR_INPUT = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 251));
const VECTOR_KEYED_HASH = '75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4';
const ENCRYPTION_KEY = idFrom(0x80);
const PASSWORD_NFC = 'Grüße, cairn';
const CHUNK_SIZE = 1024;

interface HandWritten {
  target: MemoryTarget;
  repositoryId: string;
  keyId: string;
  packId: string;
  snapshotId: string;
  /** The image as a restore to a file must write it. */
  image: Buffer;
}

/** A version-3 repository with one snapshot of four chunks (data, zero, unused, a short data chunk), written by hand. */
async function writeRepositoryByHand(): Promise<HandWritten> {
  const target = new MemoryTarget();
  const repositoryId = 'c0ffee'.padEnd(64, '0');

  // config, then keys/<sha256 of the file>: the master key sealed under scrypt(password).
  const config = { format: 'cairn', version: 3, id: repositoryId, created: '2026-11-25T10:00:00.000Z', chunkSize: CHUNK_SIZE, packSize: 16777216, blobId: 'blake3-keyed', packId: 'blake3', imageDigest: 'blake3' };
  const salt = idFrom(0x01);
  const kdf = { type: 'scrypt', N: 1024, r: 8, p: 1, salt: salt.toString('base64') };
  const passwordKey = scryptSync(Buffer.from(PASSWORD_NFC.normalize('NFC'), 'utf8'), salt, 32, { N: 1024, r: 8, p: 1 });
  const masterKeyJson = JSON.stringify({ repository: repositoryId, encryption: ENCRYPTION_KEY.toString('base64'), blobId: BLOB_ID_KEY.toString('base64') });
  const keyFile = Buffer.from(
    JSON.stringify({ version: 1, created: '2026-11-25T10:00:00.000Z', hostname: 'second-writer', username: 'test', kdf, masterKey: sealWithNonce(passwordKey, nonce(1), Buffer.from(masterKeyJson)).toString('base64') }),
  );
  const keyId = sha256Hex(keyFile);
  await target.put(`keys/${keyId}`, keyFile);

  // Blobs: seal(encryption key, codec[1] ‖ payload), codec 0 = none; ids are keyed BLAKE3.
  const lastChunk = Buffer.from('the last chunk is shorter than the others. '.repeat(3).slice(0, 100));
  const lastChunkId = keyedBlake3(BLOB_ID_KEY, lastChunk);
  const vectorId = Buffer.from(VECTOR_KEYED_HASH, 'hex');
  const chunkMap = Buffer.concat([u8(2), vectorId, u8(1), u8(0), u8(2), lastChunkId]);
  const chunkMapId = keyedBlake3(BLOB_ID_KEY, chunkMap);
  const blobs = [
    { type: 0, id: vectorId, plain: VECTOR_INPUT },
    { type: 0, id: lastChunkId, plain: lastChunk },
    { type: 1, id: chunkMapId, plain: chunkMap },
  ].map((blob, i) => ({ ...blob, sealed: sealWithNonce(ENCRYPTION_KEY, nonce(0x10 + i), Buffer.concat([u8(0), blob.plain])) }));

  // The pack: blobs back to back, the sealed header, its length; named by its BLAKE3.
  const header = Buffer.concat([Buffer.from('CPK1'), u32(blobs.length), ...blobs.flatMap((b) => [u8(b.type), b.id, u32(b.sealed.length), u32(b.plain.length)])]);
  const sealedHeader = sealWithNonce(ENCRYPTION_KEY, nonce(0x20), header);
  const pack = Buffer.concat([...blobs.map((b) => b.sealed), sealedHeader, u32(sealedHeader.length)]);
  const packId = blake3(pack).toString('hex');
  await target.put(`data/${packId.slice(0, 2)}/${packId}`, pack);

  // The index, sealed and named by the sha256 of its sealed bytes.
  let offset = 0;
  const entries = blobs.flatMap((b) => {
    const entry = [u8(b.type), b.id, u32(offset), u32(b.sealed.length), u32(b.plain.length)];
    offset += b.sealed.length;
    return entry;
  });
  const index = sealWithNonce(ENCRYPTION_KEY, nonce(0x21), Buffer.concat([Buffer.from('CIX1'), u32(1), Buffer.from(packId, 'hex'), u32(blobs.length), ...entries]));
  await target.put(`index/${sha256Hex(index)}`, index);

  // The image: chunk 0 the vector input, chunk 1 zeros, chunk 2 unused (zeros in a file), chunk 3 short.
  const image = Buffer.concat([VECTOR_INPUT, Buffer.alloc(2 * CHUNK_SIZE), lastChunk]);
  const manifest = {
    version: 2,
    time: '2026-11-25T10:00:01.000Z',
    hostname: 'second-writer',
    job: 'golden',
    source: { type: 'volume', path: '/dev/golden' },
    layout: { size: image.length, sectorSize: 512, kind: 'file', partitionTable: { type: 'none' }, mode: 'used', partitions: [] },
    size: image.length,
    chunkSize: CHUNK_SIZE,
    chunkCount: 4,
    chunkMaps: [chunkMapId.toString('hex')],
    imageDigest: { algorithm: 'blake3', hex: blake3(image).toString('hex') },
    compression: 'none',
    stats: { bytesRead: 1124, bytesAdded: pack.length + index.length, dataChunks: 2, zeroChunks: 1, unusedChunks: 1, newChunks: 2, durationMs: 1 },
  };
  const snapshot = sealWithNonce(ENCRYPTION_KEY, nonce(0x22), Buffer.from(JSON.stringify(manifest)));
  const snapshotId = sha256Hex(snapshot);
  await target.put(`snapshots/${snapshotId}`, snapshot);

  // Written last: until the config exists, there is no repository.
  await target.put('config', Buffer.from(JSON.stringify(config)));
  return { target, repositoryId, keyId, packId, snapshotId, image };
}

describe('a repository written by hand from docs/FORMAT.md', () => {
  let written: HandWritten;
  let repository: Repository;
  let pool: WorkerPool;
  let dir: string;

  beforeAll(async () => {
    written = await writeRepositoryByHand();
    // The password typed in another Unicode normal form: FORMAT.md has it NFC-normalised.
    repository = await Repository.open(written.target, PASSWORD_NFC.normalize('NFD'));
    pool = WorkerPool.spawn(1);
    await pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), codecs: [NONE_CODEC], writeCodec: { type: 'none' }, writeCodecId: 0 });
    dir = await mkdtemp(join(tmpdir(), 'cairn-golden-'));
  });
  afterAll(async () => {
    await pool?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('opens with the password: config, key file and master key', () => {
    expect(PASSWORD_NFC.normalize('NFD')).not.toBe(PASSWORD_NFC);
    expect(repository.config).toMatchObject({ version: 3, id: written.repositoryId, chunkSize: CHUNK_SIZE });
    expect(repository.keyId).toBe(written.keyId);
    expect(repository.masterKey).toEqual({ encryption: ENCRYPTION_KEY, blobId: BLOB_ID_KEY });
  });

  it('reads the index and the snapshot', async () => {
    const index = await repository.loadIndex();
    expect(index.packIds).toEqual([written.packId]);
    expect(index.get(VECTOR_KEYED_HASH)).toEqual({ pack: written.packId, type: BlobType.chunk, offset: 0, length: 1 + 1024 + SEAL_OVERHEAD, rawLength: 1024 });
    const [snapshot, ...others] = await repository.listSnapshots();
    expect(others).toEqual([]);
    expect(snapshot).toMatchObject({ id: written.snapshotId, manifest: { version: 2, chunkCount: 4, imageDigest: { algorithm: 'blake3', hex: blake3(written.image).toString('hex') } } });
  });

  it('finds nothing wrong reading every byte: pack name, header, blob ids', async () => {
    const report = await runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: true, progress: silentProgress });
    expect(report).toMatchObject({ snapshots: 1, packs: 1, blobs: 3, readData: true, problems: [], unreferencedPacks: [] });
  });

  it('restores the image byte for byte, its BLAKE3 digest checked', async () => {
    const to = join(dir, 'restored.img');
    const manifest = await repository.loadSnapshot(written.snapshotId);
    await runRestore({
      repository,
      index: await repository.loadIndex(),
      pool,
      snapshot: written.snapshotId,
      manifest,
      destination: await openDestination(to, manifest.size, { force: false }),
      progress: silentProgress,
    });
    expect((await readFile(to)).equals(written.image)).toBe(true);
  });

  it('writes blobs cairn\'s way: keyed BLAKE3 id, sealed codec byte and payload', async () => {
    const { id, sealed } = await pool.sealBytes(VECTOR_INPUT);
    expect(id.toString('hex')).toBe(VECTOR_KEYED_HASH);
    // Written with codec none here, so the payload is the plaintext.
    expect(open(ENCRYPTION_KEY, sealed).equals(Buffer.concat([u8(0), VECTOR_INPUT]))).toBe(true);
  });
});
