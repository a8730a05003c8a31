// The scale part of `pnpm bench` (issue 18, `--scale`): does cost grow with the data or with the
// disk, and with the number of snapshots?
//
//   sparse disk  the same data (--scale-data GiB of files, 1/4 random, 3/4 text-like) on an ext4
//                volume just large enough for it and on a sparse ext4 disk of --scale-disk GiB
//                (default 2048: 2 TiB), both cached next to the corpus; each backed up (mode
//                used; caches dropped first) into a fresh repository and restored to a sparse file (the restore checks
//                the snapshot's digest of the whole image; the small volume's restore is also
//                e2fsck'ed). Goal: the large disk's backup and restore take <= 2x the small one's.
//                Index memory (bench/index-memory.mjs: the heap and typed arrays a loaded index
//                holds) is measured on the small volume's repository and on an index of 1 TB of
//                distinct data shaped like it (262,144 blobs at the default 4 MiB chunks, in
//                index files written by cairn; no packs behind them): goal <= 64 MB per TB.
//   snapshots    --scale-snapshots (default 1000) backups of a 64 MiB ext4 volume into one
//                repository, a day apart (`--time`), each with a changed file; then `snapshots`
//                (goal < 1 s), `check`, a restore of the oldest and one more backup, timed
//                against the same steps on the repository when it held one snapshot.
// Times and peak RSS from /usr/bin/time (%e, %M); MB = 2^20 bytes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const GiB = 1024 ** 3;
export const SCALE_GOALS = { diskTimeRatio: 2, indexMBPerTB: 64, snapshotsListS: 1 };

/** Runs the scale part. `h` holds bench.mjs's helpers. Returns {summary, rows, failures}. */
export function scalePart(o, h) {
  const ctx = { o, h, failures: 0, work: path.join(o.work, 'scale'), rows: [] };
  fs.rmSync(ctx.work, { recursive: true, force: true });
  fs.mkdirSync(ctx.work, { recursive: true });
  const images = buildScaleImages(ctx);
  const disk = { small: imageRun(ctx, 'small', images.small), large: imageRun(ctx, 'large', images.large) };
  const snapshots = snapshotsRun(ctx);
  const summary = { dataGiB: o.scaleData, diskGiB: o.scaleDisk, disk, snapshots, goals: scaleGoals(disk, snapshots) };
  if (!o.keep) fs.rmSync(ctx.work, { recursive: true, force: true });
  return { summary, rows: ctx.rows, failures: ctx.failures };
}

// ---------------------------------------------------------------------------- images
function buildScaleImages(ctx) {
  const { o, h } = ctx;
  const small = path.join(o.corpus, `scale-${o.scaleData}g.img`);
  const large = path.join(o.corpus, `scale-${o.scaleDisk}g-${o.scaleData}g.img`);
  if (!fs.existsSync(`${small}.done`)) {
    h.log(`scale: writing ${o.scaleData} GiB of files into ${small}`);
    makeExt4(ctx, small, Math.ceil(o.scaleData * 1.1 + 1) * GiB);
    withMount(ctx, small, (dir) => writeData(dir, o.scaleData * GiB));
    fs.writeFileSync(`${small}.done`, '');
  }
  if (!fs.existsSync(`${large}.done`)) {
    h.log(`scale: copying the files onto a sparse ${o.scaleDisk} GiB ext4 disk ${large}`);
    makeExt4(ctx, large, o.scaleDisk * GiB);
    withMount(ctx, small, (from) => withMount(ctx, large, (to) => mustSh(ctx, `cp -a ${h.q(from)}/data ${h.q(to)}/`)), 'ro');
    fs.writeFileSync(`${large}.done`, '');
  }
  const info = (p) => ({ path: p, size: fs.statSync(p).size, allocated: h.allocBytes(p) });
  return { small: info(small), large: info(large) };
}

/** A sparse ext4 image; lazy inode tables and journal, so a large one costs only its metadata. */
function makeExt4(ctx, file, size) {
  fs.rmSync(file, { force: true });
  mustSh(ctx, `truncate -s ${size} ${ctx.h.q(file)} && mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${ctx.h.q(file)}`);
}

/** Mounts an image at a fresh folder for `fn`; `noinit_itable` keeps the kernel from zeroing inode tables (terabytes of writes). */
function withMount(ctx, image, fn, mode = 'rw') {
  const dir = fs.mkdtempSync(path.join(ctx.work, 'mnt-'));
  mustSh(ctx, `mount -o loop,${mode},noinit_itable ${ctx.h.q(image)} ${ctx.h.q(dir)}`);
  try {
    return fn(dir);
  } finally {
    mustSh(ctx, `umount ${ctx.h.q(dir)}`);
    fs.rmdirSync(dir);
  }
}

/**
 * Files of 256 MiB in 1 MiB blocks, one in four random, the others text-like (64 KiB pieces of
 * a 64 MiB word pool taken at random offsets: compressible, never a repeated chunk).
 */
function writeData(dir, bytes) {
  const words = 'backup restore snapshot volume chunk image repository disk system file folder kernel boot data'.split(' ');
  const pool = Buffer.alloc(64 * 1024 * 1024);
  for (let at = 0; at < pool.length; ) at += pool.write(`${words[crypto.randomInt(words.length)]}${crypto.randomInt(100000)} `, at);
  fs.mkdirSync(path.join(dir, 'data'));
  const block = Buffer.alloc(1024 * 1024);
  for (let file = 0, written = 0; written < bytes; file++) {
    const fd = fs.openSync(path.join(dir, 'data', `file-${String(file).padStart(4, '0')}.bin`), 'w');
    for (let i = 0; i < 256 && written < bytes; i++, written += block.length) {
      if (i % 4 === 0) crypto.randomFillSync(block);
      else for (let at = 0; at < block.length; at += 65536) pool.copy(block, at, crypto.randomInt(pool.length - 65536), undefined);
      fs.writeSync(fd, block);
    }
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------- the two disks
function imageRun(ctx, name, image) {
  const { o, h } = ctx;
  const base = path.join(ctx.work, name);
  fs.mkdirSync(base, { recursive: true });
  const repo = path.join(base, 'repo');
  const job = writeJob(base, 'job.json', { name: `scale-${name}`, source: { type: 'volume', path: image.path, mode: 'used' }, repo, level: o.level });
  const restored = path.join(base, 'restored.img');
  const label = `${name === 'small' ? `${o.scaleData} GiB volume` : `${o.scaleDisk} GiB sparse disk`} with ${o.scaleData} GiB of files`;
  h.log(`scale: ${label}`);
  const result = { image: { size: image.size, allocated: image.allocated } };
  if (!step(ctx, result, 'init', ['init', job])) return result;
  // Both disks are read and written cold: reading the large one's holes to warm it would take longer than its backup.
  dropCaches(ctx);
  const backup = step(ctx, result, 'backup', ['backup', job, '--json'], label);
  if (!backup) return result;
  result.backup.bytesRead = backup.json?.bytesRead;
  result.storedMB = h.duBytes(repo) / h.MB;
  result.index = indexMemory(ctx, repo);
  dropCaches(ctx);
  const restore = step(ctx, result, 'restore', ['restore', job, 'latest', '--to', restored, '--json'], label);
  if (restore) result.restore.allocatedMB = h.allocBytes(restored) / h.MB;
  if (restore && name === 'small') result.restore.fsck = h.sh(`e2fsck -fn ${h.q(restored)}`, { capture: true }).status === 0;
  fs.rmSync(base, { recursive: true, force: true });
  return result;
}

function indexMemory(ctx, repo) {
  const { h } = ctx;
  const r = h.sh(`node --expose-gc ${h.q(path.join(h.ROOT, 'bench/index-memory.mjs'))} ${h.q(repo)} --terabytes 1`, { capture: true, env: { CAIRN_PASSWORD: 'bench' } });
  if (r.status !== 0) {
    h.log(`scale: index memory could not be measured: ${r.stderr.trim().slice(-300)}`);
    return null;
  }
  const m = JSON.parse(r.stdout.trim().split('\n').at(-1));
  // The terabyte's index is the figure: the small repository's per-blob bytes are mostly the
  // fixed cost of loading any index.
  return { ...m, mbPerTB: m.synthetic ? m.synthetic.bytes / h.MB : null };
}

// ---------------------------------------------------------------------------- many snapshots
function snapshotsRun(ctx) {
  const { o, h } = ctx;
  const base = path.join(ctx.work, 'snapshots');
  fs.mkdirSync(base, { recursive: true });
  const image = path.join(base, 'volume.img');
  makeExt4(ctx, image, 64 * 1024 * 1024);
  withMount(ctx, image, (dir) => fs.writeFileSync(path.join(dir, 'changing.bin'), crypto.randomBytes(1024 * 1024)));
  const repo = path.join(base, 'repo');
  const job = writeJob(base, 'job.json', { name: 'scale-snapshots', source: { type: 'volume', path: image, mode: 'used' }, repo, level: o.level });
  const at = (n) => new Date(Date.UTC(2024, 0, 1) + n * 86400_000).toISOString();
  const result = { count: o.scaleSnapshots, one: {}, many: {} };
  h.log(`scale: ${o.scaleSnapshots} snapshots of a 64 MiB volume into one repository`);
  if (!step(ctx, result, 'init', ['init', job])) return result;
  const probe = (into, n) => {
    const r = { one: result.one, many: result.many }[into];
    const shown = `${n} snapshot${n === 1 ? '' : 's'}`;
    for (const [name, args] of [['snapshots', ['snapshots', job]], ['check', ['check', job]], ['restore oldest', ['restore', job, result.oldest, '--to', path.join(base, 'restored.img'), '--force']]]) {
      step(ctx, r, name, args, shown);
    }
  };
  const started = Date.now();
  const backupWalls = [];
  for (let n = 0; n < o.scaleSnapshots; n++) {
    changeFile(ctx, image);
    const args = ['backup', job, '--json', '--time', at(n)];
    if (n === 0) {
      const first = step(ctx, result.one, 'backup', args, 'into an empty repository');
      if (!first) return result;
      result.oldest = first.json.snapshot;
      backupWalls.push(first.wall);
      probe('one', 1);
      continue;
    }
    const t = h.timed(['node', h.CAIRN, ...args], { env: { CAIRN_PASSWORD: 'bench' }, cwd: base });
    if (!t.ok) return fail(ctx, result, `backup ${n + 1}`, t);
    backupWalls.push(t.wall);
    if ((n + 1) % 100 === 0) h.log(`scale: ${n + 1} snapshots (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  result.backupMedianS = h.median(backupWalls);
  step(ctx, result.many, 'backup', ['backup', job, '--time', at(o.scaleSnapshots)], `onto ${o.scaleSnapshots} snapshots`);
  probe('many', o.scaleSnapshots + 1);
  result.storedMB = h.duBytes(repo) / h.MB;
  fs.rmSync(base, { recursive: true, force: true });
  return result;
}

/** Rewrites the first 64 KiB of the volume's one file in place (its first block found once by debugfs), so every backup differs. */
function changeFile(ctx, image) {
  ctx.fileOffset ??= fileOffset(ctx, image);
  const fd = fs.openSync(image, 'r+');
  try {
    fs.writeSync(fd, crypto.randomBytes(65536), 0, 65536, ctx.fileOffset);
  } finally {
    fs.closeSync(fd);
  }
}

function fileOffset(ctx, image) {
  const r = ctx.h.sh(`debugfs -R 'bmap changing.bin 0' ${ctx.h.q(image)}`, { capture: true });
  const block = Number(r.stdout.trim());
  if (r.status !== 0 || !(block > 0)) throw new Error(`scale: debugfs could not map changing.bin: ${r.stderr}`);
  return block * 4096;
}

// ---------------------------------------------------------------------------- helpers
function writeJob(dir, file, { name, source, repo, level }) {
  const p = path.join(dir, file);
  fs.writeFileSync(p, JSON.stringify({ name, source, compression: { type: 'zstd', level }, target: { type: 'local', path: repo }, password: { env: 'CAIRN_PASSWORD' } }, null, 2));
  return p;
}

/** One timed cairn command: recorded in `into[name]` and as a table row; null when it failed. */
function step(ctx, into, name, args, label = '') {
  const { h } = ctx;
  const t = h.timed(['node', h.CAIRN, ...args], { env: { CAIRN_PASSWORD: 'bench' }, cwd: ctx.work });
  if (!t.ok) return fail(ctx, into, name, t);
  let json = null;
  if (args.includes('--json')) json = JSON.parse(t.stdout);
  into[name] = { wall: t.wall, rssMB: t.rssKiB / 1024 };
  if (name !== 'init') ctx.rows.push({ tool: 'cairn scale', step: `${label}: ${name}`, wall: t.wall, rssMB: t.rssKiB / 1024, note: '' });
  h.log(`scale: ${label} ${name}: ${t.wall.toFixed(2)} s, ${(t.rssKiB / 1024).toFixed(0)} MB RSS`);
  return { ...t, json };
}

function fail(ctx, into, name, t) {
  ctx.failures++;
  into.failed = `${name}: exit ${t.status}: ${(t.stderr || t.stdout).trim().slice(-400)}`;
  ctx.h.log(`scale: ${name} FAILED: ${into.failed}`);
  return null;
}

function dropCaches(ctx) {
  mustSh(ctx, 'sync && echo 3 > /proc/sys/vm/drop_caches');
}

function mustSh(ctx, cmd) {
  const r = ctx.h.sh(cmd, { capture: true });
  if (r.status !== 0) throw new Error(`${cmd}: exit ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

function scaleGoals(disk, snapshots) {
  const ratio = (a, b) => (a != null && b ? a / b : null);
  return {
    backupRatio: ratio(disk.large.backup?.wall, disk.small.backup?.wall),
    restoreRatio: ratio(disk.large.restore?.wall, disk.small.restore?.wall),
    indexMBPerTB: disk.small.index?.mbPerTB ?? null,
    snapshotsListS: snapshots.many.snapshots?.wall ?? null,
  };
}

/** The goal lines printed after the table. */
export function scaleGoalsText(s) {
  const g = s.goals;
  const line = (what, value, goal, fmt, met) => `  ${what}: ${value == null ? 'n/a' : fmt(value)}   (goal ${goal})${value == null ? '' : met(value) ? '  met' : '  NOT met'}`;
  const x = (v) => `${v.toFixed(2)}x`;
  return [
    `Goals (issue 18), scale: ${s.dataGiB} GiB of files on a ${s.dataGiB} GiB volume and on a sparse ${s.diskGiB} GiB disk; ${s.snapshots.count} snapshots`,
    line('backup time, large disk / small volume', g.backupRatio, '<= 2x', x, (v) => v <= SCALE_GOALS.diskTimeRatio),
    line('restore time, large disk / small volume', g.restoreRatio, '<= 2x', x, (v) => v <= SCALE_GOALS.diskTimeRatio),
    line('index memory per TB of data (4 MiB chunks)', g.indexMBPerTB, '<= 64 MB', (v) => `${v.toFixed(1)} MB`, (v) => v <= SCALE_GOALS.indexMBPerTB),
    line(`\`cairn snapshots\` on ${s.snapshots.count + 1} snapshots`, g.snapshotsListS, '< 1 s', (v) => `${v.toFixed(2)} s`, (v) => v < SCALE_GOALS.snapshotsListS),
  ].join('\n');
}
