// The files part of `pnpm bench` (issue 15): cairn's file backup next to restic and borg.
//
// Two trees, each backed up to a fresh local repository by every tool, run after run:
//   corpus  the files of the corpus volume: sysvol.img mounted read-only at one mount point
//           (ext4, about 59,000 entries, 1.9 GB), backed up ("first"); then sysvol2.img (the
//           same volume after a day of use) mounted at the SAME mount point, so paths, inode
//           numbers and ctimes of unchanged files are equal and each tool's incremental
//           machinery applies ("day later", whose parent is the first); then the same again
//           ("unchanged"); then everything restored from the latest snapshot into a new, empty
//           ext4 file system (a loop-mounted image on the repository's disk), and checked.
//   small   a generated tree of 100,000 small files (0-16 KiB, 100 per folder, cached in
//           /tmp/cairn-smallfiles-<count>): first backup, unchanged second, restore, check.
// Time and peak RSS come from /usr/bin/time (%e, %M), stored = `du -sb` of the repository.
// Compression: cairn zstd (--level, 3), borg zstd,3, restic its default (auto), as the volume
// part (peers.sh). Before each tool's first backup the images (or the small tree) are read
// once, so every tool starts from the same warm page cache of the image file; each mount is
// fresh, so the file system's own caches are cold for the first and day-later backups alike.
// Before each restore the tool's repository is read once (from 2026-12-06), for the same reason.
//
// Checks of every restore (never timed): a listing of both trees (type, mode, owner, links,
// size of non-folders, mtime with nanoseconds, symlink target) must be equal; in each tool's
// first run the contents are compared too (diff -r --no-dereference). A cairn failure fails
// the bench; a peer's differences are reported in its note.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const FILES_STEPS = [
  ['first', 'corpus: first (sysvol)'],
  ['later', 'corpus: day later (sysvol2)'],
  ['unchanged', 'corpus: unchanged (sysvol2)'],
  ['restore', 'corpus: restore latest'],
  ['smallFirst', 'small: first'],
  ['smallUnchanged', 'small: unchanged'],
  ['smallRestore', 'small: restore'],
];
const LABEL = Object.fromEntries(FILES_STEPS);
/** Issue 15's goals: cairn's time ÷ restic's per step; stored ÷ restic's ≤ 1; peak RSS ≤ 200 MB. */
const TIME_GOALS = { first: 0.5, later: 0.3, unchanged: 0.3, restore: 0.5, smallFirst: 0.5, smallUnchanged: 0.3, smallRestore: 0.5 };
const RSS_GOAL_MB = 200;
export const FILES_TOOLS = ['cairn', 'restic', 'borg'];

/**
 * Runs the files part. `h` holds bench.mjs's helpers ({sh, q, timed, median, log, duBytes, MB,
 * CAIRN}). Returns {summary, rows, failures}: rows for the files table, failures of cairn.
 */
export function filesPart(o, h) {
  const ctx = { o, h, failures: 0, work: path.join(o.work, 'files'), mnt: path.join(o.work, 'files-mnt') };
  const tools = o.filesTools;
  h.log(`files: ${tools.join(', ')}; cairn ${o.runs} run(s), peers ${o.peerRuns} run(s)`);
  fs.mkdirSync(ctx.mnt, { recursive: true });
  const onExit = () => unmount(ctx, true);
  process.on('exit', onExit);
  try {
    ctx.small = smallTree(o, h);
    ctx.trees = { sysvol: describeImage(ctx, o.images.sysvol.path), sysvol2: describeImage(ctx, o.images.sysvol2.path) };
    const per = {}; // tool → step → [measurement]
    const maxRuns = Math.max(...tools.map((t) => runsOf(o, t)));
    for (let run = 1; run <= maxRuns; run++) {
      for (const tool of tools) {
        if (run > runsOf(o, tool)) continue;
        h.log(`files: ${tool}, run ${run}/${runsOf(o, tool)}`);
        const m = (per[tool] ??= Object.fromEntries(FILES_STEPS.map(([k]) => [k, []])));
        corpusRun(ctx, tool, run, m);
        smallRun(ctx, tool, run, m);
      }
    }
    const rows = filesRows(ctx, per);
    const summary = {
      corpus: ctx.trees, smallTree: ctx.small, tools, runs: o.runs, peerRuns: o.peerRuns, level: o.level,
      compression: { cairn: `zstd level ${o.level}`, restic: 'default (auto)', borg: 'zstd,3' },
      goals: filesGoals(rows), measurements: per,
    };
    return { summary, rows, failures: ctx.failures };
  } finally {
    unmount(ctx, true);
    process.off('exit', onExit);
    if (!o.keep) fs.rmSync(ctx.work, { recursive: true, force: true });
  }
}

const runsOf = (o, tool) => (tool === 'cairn' ? o.runs : o.peerRuns);

// ---------------------------------------------------------------------------- trees and mounts
function mount(ctx, image) {
  const { h } = ctx;
  unmount(ctx);
  h.sh(`cat ${h.q(image)} > /dev/null`); // the image file warm in the page cache, as peers.sh does
  let r = h.sh(`mount -o ro,loop ${h.q(image)} ${h.q(ctx.mnt)}`, { capture: true });
  if (r.status !== 0) r = h.sh(`mount -o ro,loop,noload ${h.q(image)} ${h.q(ctx.mnt)}`, { capture: true });
  if (r.status !== 0) throw new Error(`mount -o ro,loop ${image} ${ctx.mnt} failed: ${r.stderr.trim()}`);
}

/** Unmounts the mount point if something is mounted there (loop device released by the kernel: autoclear). */
function unmount(ctx, quiet = false) {
  const { h } = ctx;
  if (h.sh(`mountpoint -q ${h.q(ctx.mnt)}`, { capture: true }).status !== 0) return;
  const r = h.sh(`umount ${h.q(ctx.mnt)}`, { capture: true });
  if (r.status !== 0 && !quiet) throw new Error(`umount ${ctx.mnt} failed: ${r.stderr.trim()}`);
}

/**
 * Entries and regular files of a tree: {entries, files, bytes, uniqueBytes}: bytes counts every
 * path (what a tool reads), uniqueBytes every inode once (hard links: the corpus has 13 links
 * to each of a few 25 MB libraries).
 */
function measureTree(h, root) {
  const out = h.sh(`find ${h.q(root)} -xdev -mindepth 1 -printf '%y %s %i\\n'`, { capture: true }).stdout;
  let entries = 0; let files = 0; let bytes = 0; let uniqueBytes = 0;
  const seen = new Set();
  for (const line of out.split('\n')) {
    if (!line) continue;
    entries++;
    if (line[0] !== 'f') continue;
    const [, size, inode] = line.split(' ');
    files++;
    bytes += Number(size);
    if (!seen.has(inode)) { seen.add(inode); uniqueBytes += Number(size); }
  }
  return { entries, files, bytes, uniqueBytes };
}

function describeImage(ctx, image) {
  mount(ctx, image);
  try {
    const t = measureTree(ctx.h, ctx.mnt);
    ctx.h.log(`files: ${path.basename(image)}: ${t.entries} entries, ${t.files} files, ${(t.bytes / ctx.h.MB).toFixed(0)} MB ` +
      `(${(t.uniqueBytes / ctx.h.MB).toFixed(0)} MB without hard links)`);
    return { image, mountPoint: ctx.mnt, ...t };
  } finally { unmount(ctx); }
}

/** A small seeded PRNG (mulberry32): the same tree on every machine. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 4 MiB of seeded text, source-like (compresses about 3:1), that the text files are cut from. */
function textPool(rnd) {
  const words = ['const', 'return', 'function', 'value', 'if', 'else', 'for', 'let', 'import', 'export', 'the', 'of',
    'buffer', 'length', 'index', 'error', 'null', 'await', 'async', 'new', 'this', 'path', 'file', 'size', '=', '{', '}', '(', ')', ';'];
  const parts = [];
  let n = 0;
  while (n < 4 * 1024 * 1024) {
    const indent = '  '.repeat(Math.floor(rnd() * 4));
    const k = 3 + Math.floor(rnd() * 9);
    let line = indent;
    for (let i = 0; i < k; i++) line += `${words[Math.floor(rnd() * words.length)]}${rnd() < 0.2 ? Math.floor(rnd() * 1000) : ''} `;
    line += '\n';
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join(''));
}

/**
 * The small-files tree, generated once and cached: `count` files in folders of 100
 * (d000/s0/f00.txt …), 10 such folders per top folder; sizes 0-16 KiB, most small (16 KiB × r³,
 * about 4 KiB on average); two thirds text cut from a seeded pool, one third random bytes.
 */
function smallTree(o, h) {
  const count = o.smallFiles;
  const base = o.smallDir ?? `/tmp/cairn-smallfiles-${count}`;
  const root = path.join(base, 'tree');
  const done = path.join(base, '.complete');
  if (!fs.existsSync(done)) {
    h.log(`files: generating ${count} small files in ${root} (once; cached)`);
    fs.rmSync(base, { recursive: true, force: true });
    const rnd = prng(15);
    const pool = textPool(rnd);
    const key = crypto.createHash('sha256').update('cairn bench small files').digest().subarray(0, 16);
    const random = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    for (let i = 0; i < count; i++) {
      const dir = path.join(root, `d${String(Math.floor(i / 1000)).padStart(3, '0')}`, `s${Math.floor(i / 100) % 10}`);
      if (i % 100 === 0) fs.mkdirSync(dir, { recursive: true });
      const size = Math.floor(16384 * rnd() ** 3);
      const text = rnd() < 2 / 3;
      let content;
      if (text) {
        const at = Math.floor(rnd() * (pool.length - size));
        content = pool.subarray(at, at + size);
      } else content = random.update(Buffer.alloc(size));
      fs.writeFileSync(path.join(dir, `f${String(i % 100).padStart(2, '0')}.${text ? 'txt' : 'bin'}`), content);
    }
    fs.writeFileSync(done, `${count} files\n`);
  }
  const t = measureTree(h, root);
  h.log(`files: small tree ${root}: ${t.entries} entries, ${t.files} files, ${(t.bytes / h.MB).toFixed(0)} MB`);
  return { root, ...t };
}

// ---------------------------------------------------------------------------- the tools
/**
 * One tool on one repository under `base`: {repo, init(), backup(), restore(to)}, each returning
 * bench.mjs's timed() result ({ok, status, wall, rssKiB, stdout, stderr}).
 */
function makeTool(ctx, tool, base, paths) {
  const { h, o } = ctx;
  const repo = path.join(base, 'repo');
  const run = (argv, env, cwd) => h.timed(argv, { env, cwd: cwd ?? base });
  if (tool === 'cairn') {
    const env = { CAIRN_PASSWORD: 'bench' };
    const job = path.join(base, 'job.json');
    fs.writeFileSync(job, JSON.stringify({
      name: 'bench-files',
      source: { type: 'files', paths },
      compression: { type: 'zstd', level: o.level },
      target: { type: 'local', path: repo },
      password: { env: 'CAIRN_PASSWORD' },
    }, null, 2));
    return {
      repo,
      init: () => run(['node', h.CAIRN, 'init', job], env),
      backup: () => run(['node', h.CAIRN, 'backup', job, '--json'], env),
      restore: (to) => run(['node', h.CAIRN, 'restore', job, 'latest', '--to', to, '--json'], env),
    };
  }
  if (tool === 'restic') {
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(base, 'restic-cache') };
    const restic = (...args) => ['restic', '-q', '-r', repo, ...args];
    return {
      repo,
      init: () => run(restic('init'), env),
      backup: () => run(restic('backup', ...paths), env),
      restore: (to) => run(restic('restore', 'latest', '--target', to), env),
    };
  }
  if (tool === 'borg') {
    const env = { BORG_PASSPHRASE: 'bench', BORG_BASE_DIR: path.join(base, 'borg-base'), BORG_DISPLAY_PASSPHRASE: 'no',
      BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
    let archives = 0;
    return {
      repo,
      init: () => run(['borg', 'init', '-e', 'repokey', repo], env),
      backup: () => run(['borg', 'create', '--compression', 'zstd,3', `${repo}::b${++archives}`, ...paths], env),
      restore: (to) => run(['borg', 'extract', `${repo}::b${archives}`], env, to), // borg extracts into its working folder
    };
  }
  throw new Error(`unknown files tool ${tool}`);
}

/** A fresh folder for one tool's run. */
function fresh(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** cairn's output as JSON when it is (backup and restore --json), else null. */
function jsonOf(stdout) {
  try { return JSON.parse(stdout); } catch { return null; }
}

/**
 * Runs one timed step and records it in m[step]; returns false when it failed (the steps after it
 * in this run depend on it and are left out). cairn's exit 3 (snapshot saved incomplete) is
 * recorded with its figures and counted as a failure: nothing in these trees is unreadable.
 */
function step(ctx, tool, m, name, fn, { bytes, repo, previous }) {
  const { h } = ctx;
  // No step pays for the writeback of an earlier one (a restored tree of 2 GB, or the image it
  // was restored into, deleted on a disk mounted with discard): without this, restores after
  // the first of a run took up to twice as long.
  h.sh('sync', { capture: true });
  const t = fn();
  const incomplete = tool === 'cairn' && t.status === 3 && name !== 'restore' && name !== 'smallRestore';
  if (!t.ok && !incomplete) {
    if (tool === 'cairn') ctx.failures++;
    const error = (t.stderr || t.stdout).trim().split('\n').slice(-5).join('\n');
    h.log(`files: ${tool} ${LABEL[name]} FAILED (exit ${t.status}): ${error}`);
    m[name].push({ failed: true, status: t.status, error: error.slice(-500) });
    return null;
  }
  if (incomplete) ctx.failures++;
  const storedB = repo ? h.duBytes(repo) : null;
  const r = {
    wall: t.wall, rssMB: t.rssKiB / 1024, mbps: bytes / h.MB / Math.max(t.wall, 0.01),
    storedMB: storedB == null ? null : storedB / h.MB,
    addedMB: storedB == null ? null : (storedB - (previous ?? 0)) / h.MB,
    incomplete: incomplete || undefined,
    json: tool === 'cairn' ? jsonOf(t.stdout) : undefined,
  };
  m[name].push(r);
  h.log(`files: ${tool} ${LABEL[name]}: ${t.wall.toFixed(2)} s, rss ${Math.round(r.rssMB)} MB` +
    (r.storedMB != null ? `, repository ${r.storedMB.toFixed(1)} MB (+${r.addedMB.toFixed(1)})` : '') + (incomplete ? ', INCOMPLETE (exit 3)' : ''));
  return { ...r, storedB };
}

/** The corpus sequence of one run: first (sysvol), day later and unchanged (sysvol2), restore, check. */
function corpusRun(ctx, tool, run, m) {
  const base = fresh(path.join(ctx.work, `${tool}-corpus`));
  const t = makeTool(ctx, tool, base, [ctx.mnt]);
  try {
    if (!initTool(ctx, tool, t, m, 'first')) return;
    mount(ctx, ctx.trees.sysvol.image);
    const first = step(ctx, tool, m, 'first', t.backup, { bytes: ctx.trees.sysvol.bytes, repo: t.repo });
    if (!first) return;
    mount(ctx, ctx.trees.sysvol2.image);
    const later = step(ctx, tool, m, 'later', t.backup, { bytes: ctx.trees.sysvol2.bytes, repo: t.repo, previous: first.storedB });
    if (!later) return;
    const same = step(ctx, tool, m, 'unchanged', t.backup, { bytes: ctx.trees.sysvol2.bytes, repo: t.repo, previous: later.storedB });
    if (!same) return;
    // The quick corpus patches binaries below the file system (their size and times stay): no
    // tool can see that change, so its restore is checked by the listing only.
    restoreAndCheck(ctx, tool, run, m, 'restore', t, ctx.mnt, ctx.trees.sysvol2.bytes, base, !ctx.o.quick);
  } finally {
    unmount(ctx);
    if (!ctx.o.keep) fs.rmSync(base, { recursive: true, force: true });
  }
}

/** The small-files sequence of one run: first, unchanged, restore, check. */
function smallRun(ctx, tool, run, m) {
  const { h } = ctx;
  const base = fresh(path.join(ctx.work, `${tool}-small`));
  const root = ctx.small.root;
  const t = makeTool(ctx, tool, base, [root]);
  try {
    if (!initTool(ctx, tool, t, m, 'smallFirst')) return;
    h.sh(`tar -cf - -C ${h.q(root)} . > /dev/null`); // the tree warm in the page cache, for every tool alike
    const first = step(ctx, tool, m, 'smallFirst', t.backup, { bytes: ctx.small.bytes, repo: t.repo });
    if (!first) return;
    const same = step(ctx, tool, m, 'smallUnchanged', t.backup, { bytes: ctx.small.bytes, repo: t.repo, previous: first.storedB });
    if (!same) return;
    restoreAndCheck(ctx, tool, run, m, 'smallRestore', t, root, ctx.small.bytes, base, true);
  } finally {
    if (!ctx.o.keep) fs.rmSync(base, { recursive: true, force: true });
  }
}

function initTool(ctx, tool, t, m, firstStep) {
  const r = t.init();
  if (r.ok) return true;
  if (tool === 'cairn') ctx.failures++;
  const error = (r.stderr || r.stdout).trim().split('\n').slice(-3).join('\n');
  ctx.h.log(`files: ${tool} init FAILED (exit ${r.status}): ${error}`);
  m[firstStep].push({ failed: true, status: r.status, error: `init: ${error}`.slice(-500) });
  return false;
}

/**
 * Restores the latest snapshot into a new, empty ext4 file system (a loop-mounted image made for
 * this restore), then checks it against `original` (not timed). A folder on the shared disk is
 * not a fair start: after the previous run's restored tree was deleted there, ext4's scan of
 * recently deleted inodes made later restores nearly twice as slow as the first.
 */
function restoreAndCheck(ctx, tool, run, m, name, t, original, bytes, base, contents) {
  const to = fresh(path.join(base, 'restored'));
  const image = path.join(base, 'restored.img');
  mountEmptyFileSystem(ctx.h, image, to, bytes);
  readRepository(ctx.h, t.repo);
  try {
    const r = step(ctx, tool, m, name, () => t.restore(to), { bytes });
    if (!r) return;
    // Every tool restores a path under its absolute snapshot path (borg: relative to where it extracts).
    const v = verifyTree(ctx.h, original, path.join(to, original), contents && run === 1);
    const rec = m[name].at(-1);
    Object.assign(rec, { verified: v.ok, verifiedBy: v.method, verifyDetail: v.detail });
    if (!v.ok && tool === 'cairn') ctx.failures++;
    ctx.h.log(`files: ${tool} ${LABEL[name]}: ${v.ok ? 'OK' : 'DIFFERS'} (${v.method}): ${v.detail}`);
  } finally {
    ctx.h.sh(`umount ${ctx.h.q(to)}`, { capture: true });
    fs.rmSync(image, { force: true });
    fs.rmSync(to, { recursive: true, force: true });
  }
}

/**
 * Reads every file of a repository once (not timed), so that every tool's restore starts from
 * the same page cache, as every backup does from a source read once. restic and borg write their
 * packs through the page cache, which still holds them when the restore follows; cairn's local
 * target writes them with O_DIRECT, so without this its restores alone read the repository from
 * the disk (in the probe of December 6, 10.98 s against 8.77 s for the corpus). The volume part
 * (bench.mjs) reads cairn's repository with it too; `h` needs `sh` and `q`.
 */
export function readRepository(h, repo) {
  const r = h.sh(`find ${h.q(repo)} -type f -print0 | xargs -0 -r cat > /dev/null`, { capture: true });
  if (r.status !== 0) throw new Error(`reading the repository ${repo} failed: ${r.stderr.trim()}`);
}

/** A sparse image of twice `bytes` plus 1 GiB, `mkfs.ext4`, mounted at `at` (a loop device the kernel frees on umount). */
function mountEmptyFileSystem(h, image, at, bytes) {
  const size = Math.ceil((2 * bytes) / 2 ** 20) + 1024;
  fs.rmSync(image, { force: true });
  const r = h.sh(`truncate -s ${size}M ${h.q(image)} && mkfs.ext4 -q -F ${h.q(image)} && mount -o loop ${h.q(image)} ${h.q(at)}`, { capture: true });
  if (r.status !== 0) throw new Error(`an empty ext4 file system for the restore (${image} at ${at}) failed: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------- checks
/**
 * A listing of a tree, one line per entry below the root: type, mode, owner, link count, size
 * (not for folders: ext4 folder sizes depend on their history), mtime with nanoseconds, path,
 * symlink target. Sorted by bytes.
 */
function listing(h, root) {
  const out = h.sh(`cd ${h.q(root)} && find . -mindepth 1 -printf '%y %m %U:%G %n %s %T@ %P -> %l\\n' | LC_ALL=C sort`, { capture: true }).stdout;
  return out.split('\n').filter(Boolean).map((l) => (l[0] === 'd' ? l.replace(/^(d \S+ \S+ \S+) \S+/, '$1 -') : l));
}

/** {ok, method, detail}: listings equal, and with `contents` every file compared (diff -r). */
function verifyTree(h, original, restored, contents) {
  if (!fs.existsSync(restored)) return { ok: false, method: 'listing', detail: `${restored} does not exist` };
  const a = listing(h, original);
  const b = listing(h, restored);
  const inB = new Set(b);
  const inA = new Set(a);
  const missing = a.filter((l) => !inB.has(l));
  const extra = b.filter((l) => !inA.has(l));
  const method = contents ? 'listing + diff -r' : 'listing';
  if (missing.length || extra.length) {
    return { ok: false, method, detail: `${missing.length} of ${a.length} entries differ or are missing, ${extra.length} unexpected; ` +
      `e.g. ${missing.slice(0, 2).join(' | ')} ≠ ${extra.slice(0, 2).join(' | ')}` };
  }
  if (contents) {
    const d = h.sh(`diff -r --no-dereference -q ${h.q(original)} ${h.q(restored)}`, { capture: true });
    if (d.status !== 0) {
      const lines = d.stdout.trim().split('\n');
      return { ok: false, method, detail: `diff -r: ${lines.length} difference(s), e.g. ${lines.slice(0, 2).join(' | ')}${d.stderr.trim().slice(0, 200)}` };
    }
  }
  return { ok: true, method, detail: `${a.length} entries equal${contents ? ', contents identical' : ''}` };
}

// ---------------------------------------------------------------------------- rows, goals, text
/** One row per tool and step, medians over the runs that succeeded. */
function filesRows(ctx, per) {
  const { h } = ctx;
  const rows = [];
  for (const tool of Object.keys(per)) {
    for (const [k, label] of FILES_STEPS) {
      const all = per[tool][k];
      if (!all.length) continue;
      const ok = all.filter((x) => !x.failed);
      const note = [];
      const failed = all.filter((x) => x.failed);
      if (failed.length) note.push(`FAILED in ${failed.length}/${all.length} runs: ${failed[0].error.split('\n').pop().slice(0, 100)}`);
      if (ok.some((x) => x.incomplete)) note.push('INCOMPLETE (exit 3)');
      const checked = ok.filter((x) => x.verified !== undefined);
      if (checked.length) {
        const bad = checked.filter((x) => !x.verified);
        note.push(bad.length ? `DIFFERS in ${bad.length}/${checked.length}: ${bad[0].verifyDetail.slice(0, 160)}`
          : `${checked.some((x) => x.verifiedBy.includes('diff')) ? 'listing + diff -r' : 'listing'} equal (${checked[0].verifyDetail.split(' entries')[0]} entries)`);
      }
      if (ok.length > 1) note.push(`median of ${ok.length}`);
      const med = (f) => h.median(ok.map(f));
      rows.push({ tool, key: k, step: label, wall: med((x) => x.wall), mbps: med((x) => x.mbps), rssMB: med((x) => x.rssMB),
        addedMB: med((x) => x.addedMB), storedMB: med((x) => x.storedMB), note: note.join('; ') });
    }
  }
  return rows;
}

/** Issue 15's goals from the rows: cairn ÷ restic per step, stored ÷ restic's, cairn's largest peak RSS. */
export function filesGoals(rows) {
  const get = (tool, k) => rows.find((r) => r.tool === tool && r.key === k && r.wall != null) ?? null;
  const ratio = (a, b) => (a != null && b != null && b > 0 ? a / b : null);
  const time = {};
  for (const [k, goal] of Object.entries(TIME_GOALS)) {
    const c = get('cairn', k); const r = get('restic', k);
    time[k] = { cairnS: c?.wall ?? null, resticS: r?.wall ?? null, ratio: ratio(c?.wall, r?.wall), goal };
  }
  const stored = {};
  for (const k of ['first', 'later', 'smallFirst']) {
    const c = get('cairn', k); const r = get('restic', k);
    stored[k] = { cairnMB: c?.storedMB ?? null, resticMB: r?.storedMB ?? null, ratio: ratio(c?.storedMB, r?.storedMB), goal: 1 };
  }
  const rss = rows.filter((r) => r.tool === 'cairn' && r.rssMB != null);
  const top = rss.reduce((a, b) => (b.rssMB > (a?.rssMB ?? -1) ? b : a), null);
  return { time, stored, rss: { cairnMaxMB: top?.rssMB ?? null, step: top?.step ?? null, goal: RSS_GOAL_MB } };
}

export function filesGoalsText(g) {
  const v = (x, d = 2) => (x == null ? 'n/a' : x.toFixed(d));
  const verdict = (x, goal) => (x == null ? '' : x <= goal + 1e-9 ? '  met' : '  NOT met');
  const lines = ['Goals (issue 15), cairn files against restic (median against median):'];
  for (const [k, t] of Object.entries(g.time)) {
    lines.push(`  ${`${LABEL[k]} time:`.padEnd(36)} cairn ${v(t.cairnS)} s / restic ${v(t.resticS)} s = ${v(t.ratio, 3)}   (goal <= ${t.goal})${verdict(t.ratio, t.goal)}`);
  }
  for (const [k, s] of Object.entries(g.stored)) {
    lines.push(`  ${`stored after ${LABEL[k]}:`.padEnd(36)} cairn ${v(s.cairnMB, 1)} MB / restic ${v(s.resticMB, 1)} MB = ${v(s.ratio, 3)}   (goal <= 1)${verdict(s.ratio, 1)}`);
  }
  lines.push(`  ${'peak RSS (largest step):'.padEnd(36)} cairn ${v(g.rss.cairnMaxMB, 0)} MB (${g.rss.step ?? 'n/a'})   (goal <= ${g.rss.goal} MB)${verdict(g.rss.cairnMaxMB, g.rss.goal)}`);
  return lines.join('\n');
}

export function filesTable(rows) {
  const fmt = (v, d) => (v == null ? '' : d === 0 ? String(Math.round(v)) : v.toFixed(d));
  const head = ['tool', 'step', 'wall s', 'MB/s', 'RSS MB', 'added MB', 'stored MB', 'note'];
  const body = rows.map((r) => [r.tool, r.step, fmt(r.wall, 2), fmt(r.mbps, 0), fmt(r.rssMB, 0), fmt(r.addedMB, 1), fmt(r.storedMB, 1), r.note]);
  const w = head.map((x, i) => Math.max(x.length, ...body.map((b) => b[i].length)));
  const right = new Set([2, 3, 4, 5, 6]);
  const line = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(Math.min(n, 60))).join('  '), ...body.map(line)].join('\n');
}

export function filesLegend(s) {
  const mb = (b) => (b / 1048576).toFixed(0);
  const tree = (t) => `${t.entries} entries, ${t.files} files, ${mb(t.bytes)} MB by path, ${mb(t.uniqueBytes)} MB without hard links`;
  return `Files: the files of sysvol.img (${tree(s.corpus.sysvol)}) and sysvol2.img (${tree(s.corpus.sysvol2)}), ` +
    `each mounted read-only at ${s.corpus.sysvol.mountPoint}; ` +
    `the small tree ${s.smallTree.root} (${s.smallTree.files} files, ${mb(s.smallTree.bytes)} MB). MB/s = bytes of regular files / wall. ` +
    `added/stored = growth/size of the repository (du -sb). Compression: cairn ${s.compression.cairn}, restic ${s.compression.restic}, borg ${s.compression.borg}.`;
}
