import { FilesSourceFactory } from '../dist/files-source.js';
const root = '/tmp/cairn-list-100000';
const tree = await new FilesSourceFactory().open({ type: 'files', paths: [root] }, { baseDir: '/' });
const files = [];
for (let a = 0; a < 100; a++) for (let b = 0; b < 10; b++) { const d = Buffer.from(`${root}/${a}/${b}`); const l = await tree.list(d, await tree.stat(d)); for (const e of l.entries) files.push([Buffer.concat([d, Buffer.from('/'), e.name]), e.metadata.size]); }
const buf = Buffer.alloc(1 << 20);
for (const conc of [1, 8, 32]) {
  const t = performance.now(); let next = 0; const n = 30000;
  await Promise.all(Array.from({ length: conc }, async () => { while (next < n) { const [p, size] = files[next++]; const bufx = Buffer.alloc(64 * 1024); const f = await tree.open(p); await f.dataRanges(size); await f.read(bufx, 0, bufx.length, 0); await f.stat(); await f.close(); } }));
  console.log(conc, 'open/ranges/read/stat/close per file µs', ((performance.now() - t) * 1000 / n).toFixed(1));
}
const slab = new SharedArrayBuffer(64 * 1024 * 32);
for (const conc of [1, 8, 32]) {
  const t = performance.now(); let next = 0; const n = 30000;
  await Promise.all(Array.from({ length: conc }, async (_, k) => { const into = new Uint8Array(slab, k * 65536, 65536); while (next < n) { const [p, size] = files[next++]; await tree.readWhole(p, into.subarray(0, size)); } }));
  console.log(conc, 'readWhole per file µs', ((performance.now() - t) * 1000 / n).toFixed(1));
}
