// Measures listing (and reading) a generated tree with the files source: `node scripts/measure-list.mjs [files] [dir]`.
// Makes (once) `files` small files, 100 per folder in folders of 10 subfolders, then walks the
// whole tree (stat + list of every folder, like a backup's walk) a few times and prints the times.
// Run after `pnpm build`. The first walk after creating the tree has the metadata in the page
// cache too; `echo 3 > /proc/sys/vm/drop_caches` before a run measures a cold walk.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FilesSourceFactory } from '../dist/files-source.js';

const count = Number(process.argv[2] ?? 100_000);
const root = path.resolve(process.argv[3] ?? `/tmp/cairn-list-${count}`);
const perFolder = 100;

function makeTree() {
  const marker = path.join(root, '.complete');
  if (existsSync(marker)) return;
  for (let i = 0; i < count; i++) {
    const folder = Math.floor(i / perFolder);
    const dir = path.join(root, String(Math.floor(folder / 10)), String(folder % 10));
    if (i % perFolder === 0) mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `file-${i}.txt`), `file ${i}\n`);
  }
  writeFileSync(marker, '');
}

/** Lists every folder below the roots, `folders` folders at a time (a backup's walk does about that). */
async function walk(tree, folders) {
  let entries = 0;
  let active = 0;
  const queue = [];
  for (const r of tree.roots) queue.push([r, await tree.stat(r)]);
  await new Promise((resolve, reject) => {
    const pump = () => {
      while (active < folders && queue.length > 0) {
        const [folder, metadata] = queue.pop();
        active++;
        tree.list(folder, metadata).then((listing) => {
          entries += listing.entries.length;
          for (const e of listing.entries) if (e.metadata.type === 'dir') queue.push([Buffer.concat([folder, Buffer.from('/'), e.name]), e.metadata]);
          active--;
          pump();
        }, reject);
      }
      if (active === 0 && queue.length === 0) resolve();
    };
    pump();
  });
  return entries;
}

let started = performance.now();
makeTree();
console.log(`tree of ${count} files at ${root}: ${((performance.now() - started) / 1000).toFixed(1)} s to make (0 when it existed)`);
const tree = await new FilesSourceFactory().open({ type: 'files', paths: [root], exclude: ['*.tmp', '/0/0/file-3.txt'] }, { baseDir: '/' });
for (const [run, folders] of [[1, 1], [2, 1], [3, 4], [4, 4]]) {
  started = performance.now();
  const entries = await walk(tree, folders);
  const seconds = (performance.now() - started) / 1000;
  console.log(`walk ${run}, ${folders} folder(s) at a time: ${entries} entries in ${seconds.toFixed(2)} s (${Math.round(entries / seconds)} entries/s), rss ${Math.round(process.memoryUsage().rss / 1048576)} MB`);
}

// Reading every file: through open/read/stat/close (OpenedFile), then through readWhole, 32 files at a time.
const files = [];
const collect = async (folder, metadata) => {
  const listing = await tree.list(folder, metadata);
  for (const e of listing.entries) {
    const child = Buffer.concat([folder, Buffer.from('/'), e.name]);
    if (e.metadata.type === 'dir') await collect(child, e.metadata);
    else if (e.metadata.type === 'file') files.push([child, e.metadata.size]);
  }
};
for (const r of tree.roots) await collect(r, await tree.stat(r));
const slab = new SharedArrayBuffer(32 * 65536);
const readAll = async (readOne) => {
  let next = 0;
  started = performance.now();
  await Promise.all(Array.from({ length: 32 }, async (_, k) => {
    const into = new Uint8Array(slab, k * 65536, 65536);
    while (next < files.length) {
      const [file, size] = files[next++];
      await readOne(file, into.subarray(0, Math.min(size, 65536)));
    }
  }));
  return (performance.now() - started) / 1000;
};
const viaHandle = await readAll(async (file, into) => {
  const opened = await tree.open(file);
  try {
    await opened.read(into, 0, into.length, 0);
    await opened.stat();
  } finally {
    await opened.close();
  }
});
console.log(`read ${files.length} files with open/read/stat/close: ${viaHandle.toFixed(2)} s (${Math.round((viaHandle * 1e6) / files.length)} µs a file)`);
const viaWhole = await readAll((file, into) => tree.readWhole(file, into));
console.log(`read ${files.length} files with readWhole: ${viaWhole.toFixed(2)} s (${Math.round((viaWhole * 1e6) / files.length)} µs a file)`);
