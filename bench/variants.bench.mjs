// The variants part of `pnpm bench` (issue 17): the corpus volume's files on the system disks
// Linux installers make, backed up by cairn next to restic and partclone | zstd -3.
//
//   lvmxfs  a whole-disk LVM2 PV as RHEL lays it out: VG rhel, LV root (XFS, the size of
//           sysvol.img), LV swap (256 MiB), unallocated extents; built by bench/variants.sh
//   btrfs   a Btrfs the size of sysvol.img with Fedora's subvolumes root and home
//
// Both are made from the files of sysvol.img ("full") and sysvol2.img ("incr": the same disk a
// day later) on disks filled with random data first, so free space holds stale data as on the
// corpus volume; they are cached next to the corpus (variants.sh rebuilds only what is missing).
// Per variant and run, into fresh repositories:
//   cairn    init, backup of the first image (full), of the second (incr), restore latest to a
//            file, checked untimed by bench/verify-variant.sh (fsck, LVM metadata, swap header,
//            every file's content and metadata); a failed step or check fails the bench
//   restic   backup --stdin of each image file (as peers.sh does for the corpus), dump latest
//            (checked untimed with cmp)
//   partclone.xfs (the root LV through a read-only loop device at its offset) or
//            partclone.btrfs (the image) -c | zstd -q -T2 -3, of each image: no incrementals,
//            so stored after incr = both files
// Goals (issue 17): cairn's stored size / partclone | zstd -3's <= 1.0; cairn's time / restic's
// <= 0.3. Time and peak RSS from /usr/bin/time (%e, %M), stored = `du -sb`, MB = 2^20 bytes.
import fs from 'node:fs';
import path from 'node:path';

export const VARIANTS = ['lvmxfs', 'btrfs'];
const TITLE = { lvmxfs: 'LVM+XFS', btrfs: 'Btrfs' };
const PARTCLONE = { lvmxfs: 'partclone.xfs', btrfs: 'partclone.btrfs' };
const STEPS = ['full', 'incr', 'restore'];
export const VARIANT_GOALS = { stored: 1.0, time: 0.3 };

/**
 * Runs the variants part. `h` holds bench.mjs's helpers ({sh, q, timed, median, log, duBytes,
 * allocBytes, MB, CAIRN, ROOT}). Returns {summary, rows, failures} (failures: cairn's).
 */
export function variantsPart(o, h) {
  const ctx = { o, h, failures: 0, work: path.join(o.work, 'variants') };
  const kinds = o.variants ?? VARIANTS;
  buildVariants(ctx, kinds);
  const summary = { variants: {}, runs: o.runs, peerRuns: o.peerRuns, level: o.level, mode: o.modes[0], goals: VARIANT_GOALS };
  const rows = [];
  for (const kind of kinds) {
    const v = variantImages(ctx, kind);
    const cairn = cairnVariant(ctx, v);
    const restic = o.peers && o.peerTools.includes('restic') ? resticVariant(ctx, v) : null;
    const partclone = o.peers && o.peerTools.includes('partclone') ? partcloneVariant(ctx, v) : null;
    const s = { title: TITLE[kind], images: v.images, layout: v.layout, mapping: cairn.mapping, cairn: cairn.steps, restic, partclone };
    s.goals = variantGoals(s);
    summary.variants[kind] = s;
    rows.push(...variantRows(ctx, kind, s));
  }
  if (!o.keep) fs.rmSync(ctx.work, { recursive: true, force: true });
  return { summary, rows, failures: ctx.failures };
}

// ---------------------------------------------------------------------------- images
function buildVariants(ctx, kinds) {
  const { o, h } = ctx;
  const script = path.join(h.ROOT, 'bench/variants.sh');
  const missing = kinds.filter((k) => !fs.existsSync(path.join(o.corpus, `${k}.done`)));
  if (missing.length && process.getuid?.() !== 0) throw new Error('building the variants needs root (loop devices, mount)');
  if (missing.length) h.log(`variants: building ${missing.join(', ')} in ${o.corpus} (bench/variants.sh; a few minutes)`);
  const r = h.sh(`bash ${h.q(script)} ${h.q(o.corpus)} ${kinds.join(' ')}`);
  if (r.status !== 0) throw new Error(`bench/variants.sh failed (exit ${r.status})`);
}

function variantImages(ctx, kind) {
  const { o, h } = ctx;
  const image = (name) => {
    const p = path.join(o.corpus, name);
    return { path: p, size: fs.statSync(p).size, allocated: h.allocBytes(p) };
  };
  const v = { kind, images: { full: image(`${kind}.img`), incr: image(`${kind}2.img`) }, layout: null };
  if (kind === 'lvmxfs') {
    const [rootOffset, rootSize, swapOffset, swapSize] = fs.readFileSync(path.join(o.corpus, 'lvmxfs.layout'), 'utf8').trim().split(/\s+/).map(Number);
    v.layout = { rootOffset, rootSize, swapOffset, swapSize };
  }
  for (const [k, i] of Object.entries(v.images)) h.log(`variants: ${kind} ${k} ${path.basename(i.path)}: ${(i.size / h.MB).toFixed(0)} MB`);
  return v;
}

const warm = (ctx, v) => ctx.h.sh(`cat ${ctx.h.q(v.images.full.path)} ${ctx.h.q(v.images.incr.path)} > /dev/null`);
const fresh = (dir) => { fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir, { recursive: true }); };
const lastLines = (s, n = 3) => (s ?? '').trim().split('\n').slice(-n).join(' | ');

// ---------------------------------------------------------------------------- cairn
function cairnVariant(ctx, v) {
  const { o, h } = ctx;
  const mode = o.modes[0];
  const per = { init: [], full: [], incr: [], restore: [] };
  let mapping = null;
  for (let run = 1; run <= o.runs; run++) {
    h.log(`variants: ${v.kind}: cairn ${mode}, run ${run}/${o.runs}`);
    const base = path.join(ctx.work, `${v.kind}-cairn`);
    fresh(base);
    const repo = path.join(base, 'repo');
    const job = (name, image) => {
      const file = path.join(base, `${name}.json`);
      fs.writeFileSync(file, JSON.stringify({ name: `bench-${v.kind}`, source: { type: 'volume', path: image, mode },
        compression: { type: 'zstd', level: o.level }, target: { type: 'local', path: repo }, password: { env: 'CAIRN_PASSWORD' } }, null, 2));
      return file;
    };
    const jobs = { full: job('full', v.images.full.path), incr: job('incr', v.images.incr.path) };
    const restored = path.join(base, 'restored.img');
    warm(ctx, v);
    const plan = [['init', ['init', jobs.full]], ['full', ['backup', jobs.full, '--json']], ['incr', ['backup', jobs.incr, '--json']],
      ['restore', ['restore', jobs.incr, 'latest', '--to', restored, '--json']]];
    for (const [step, args] of plan) {
      const m = cairnStep(ctx, v, step, args, base);
      per[step].push(m);
      if (m.failed) break;
      if (step !== 'restore') m.storedMB = h.duBytes(repo) / h.MB;
      if (step === 'full' && !mapping) mapping = snapshotMapping(ctx, jobs.full, base);
      if (step === 'restore') verifyRestored(ctx, v, restored, m);
      h.log(`variants: ${v.kind}: cairn ${step}: ${m.wall.toFixed(2)} s` + (m.storedMB != null ? `, repository ${m.storedMB.toFixed(1)} MB` : '') +
        (m.verified != null ? `, ${m.verified ? 'verified' : 'check FAILED'}` : ''));
    }
    if (!o.keep) fs.rmSync(base, { recursive: true, force: true });
  }
  return { steps: per, mapping };
}

function cairnStep(ctx, v, step, args, cwd) {
  const { h } = ctx;
  const t = h.timed(['node', h.CAIRN, ...args], { env: { CAIRN_PASSWORD: 'bench' }, cwd });
  if (!t.ok) {
    ctx.failures++;
    h.log(`variants: ${v.kind}: cairn ${step} FAILED (exit ${t.status}): ${lastLines(t.stderr || t.stdout, 5)}`);
    return { failed: true, error: (t.stderr || t.stdout).trim().slice(-500) };
  }
  let json = null;
  try { json = JSON.parse(t.stdout); } catch { /* init prints a sentence */ }
  const bytes = step === 'full' ? v.images.full.size : v.images.incr.size;
  return { wall: t.wall, rssMB: t.rssKiB / 1024, mbps: step === 'init' ? null : bytes / h.MB / Math.max(t.wall, 0.01),
    addedMB: typeof json?.bytesAdded === 'number' ? json.bytesAdded / h.MB : null, warnings: t.stderr.trim() || undefined };
}

/** How cairn mapped the disk: the snapshot's layout from `cairn show --json`, without long lists. */
function snapshotMapping(ctx, job, cwd) {
  const r = ctx.h.sh(`node ${ctx.h.q(ctx.h.CAIRN)} show ${ctx.h.q(job)} latest --json`, { capture: true, env: { CAIRN_PASSWORD: 'bench' }, cwd });
  try {
    const layout = JSON.parse(r.stdout).layout;
    return JSON.parse(JSON.stringify(layout, (k, x) => (Array.isArray(x) && x.length > 16 ? `[${x.length} items]` : x)));
  } catch {
    return { error: lastLines(r.stderr || r.stdout) };
  }
}

function verifyRestored(ctx, v, restored, m) {
  const { h } = ctx;
  const r = h.sh(`bash ${h.q(path.join(h.ROOT, 'bench/verify-variant.sh'))} ${v.kind} ${h.q(restored)} ${h.q(v.images.incr.path)}`, { capture: true });
  m.verified = r.status === 0;
  m.verifyDetail = r.stdout.trim().split('\n').at(-1) ?? '';
  m.restoredAllocatedMB = h.allocBytes(restored) / h.MB;
  if (!m.verified) {
    ctx.failures++;
    h.log(`variants: ${v.kind}: restored image ${m.verifyDetail}\n${lastLines(r.stderr, 8)}`);
  }
  fs.rmSync(restored, { force: true });
}

// ---------------------------------------------------------------------------- peers
function resticVariant(ctx, v) {
  const { o, h } = ctx;
  const per = { full: [], incr: [], restore: [] };
  const env = { RESTIC_PASSWORD: 'bench' };
  for (let run = 1; run <= o.peerRuns; run++) {
    h.log(`variants: ${v.kind}: restic, run ${run}/${o.peerRuns}`);
    const base = path.join(ctx.work, `${v.kind}-restic`);
    fresh(base);
    const repo = path.join(base, 'repo');
    const restored = path.join(base, 'restored.img');
    if (h.sh(`restic -q -r ${h.q(repo)} init`, { capture: true, env }).status !== 0) { per.full.push({ failed: true, error: 'restic init failed' }); break; }
    warm(ctx, v);
    const plan = [
      ['full', `restic -q -r ${h.q(repo)} backup --stdin --stdin-filename ${v.kind}.img < ${h.q(v.images.full.path)}`, v.images.full.size],
      ['incr', `restic -q -r ${h.q(repo)} backup --stdin --stdin-filename ${v.kind}.img < ${h.q(v.images.incr.path)}`, v.images.incr.size],
      ['restore', `restic -q -r ${h.q(repo)} dump latest ${v.kind}.img > ${h.q(restored)}`, v.images.incr.size],
    ];
    for (const [step, cmd, bytes] of plan) {
      const t = h.timed(['bash', '-c', cmd], { env });
      if (!t.ok) { per[step].push({ failed: true, error: lastLines(t.stderr) }); break; }
      const m = { wall: t.wall, rssMB: t.rssKiB / 1024, mbps: bytes / h.MB / Math.max(t.wall, 0.01) };
      if (step !== 'restore') m.storedMB = h.duBytes(repo) / h.MB;
      else m.identical = h.sh(`cmp -s ${h.q(restored)} ${h.q(v.images.incr.path)}`).status === 0;
      per[step].push(m);
      h.log(`variants: ${v.kind}: restic ${step}: ${t.wall.toFixed(2)} s` + (m.storedMB != null ? `, repository ${m.storedMB.toFixed(1)} MB` : `, cmp ${m.identical ? 'identical' : 'DIFFERS'}`));
    }
    if (!o.keep) fs.rmSync(base, { recursive: true, force: true });
  }
  return per;
}

/** partclone -c | zstd -3 of each image's filesystem (XFS: the root LV through a read-only loop device at its offset). */
function partcloneVariant(ctx, v) {
  const { o, h } = ctx;
  const per = { full: [], incr: [] };
  const tool = PARTCLONE[v.kind];
  for (let run = 1; run <= o.peerRuns; run++) {
    h.log(`variants: ${v.kind}: ${tool} | zstd, run ${run}/${o.peerRuns}`);
    const base = path.join(ctx.work, `${v.kind}-partclone`);
    fresh(base);
    warm(ctx, v);
    let stored = 0;
    for (const step of ['full', 'incr']) {
      const image = v.images[step];
      const out = path.join(base, `${step}.pc.zst`);
      const dev = v.layout ? attachReadOnly(h, image.path, v.layout.rootOffset, v.layout.rootSize) : null;
      const t = h.timed(['bash', '-c', `${tool} -q -c -s ${h.q(dev ?? image.path)} -o - | zstd -q -T2 -3 > ${h.q(out)}`]);
      if (dev) h.sh(`losetup -d ${h.q(dev)}`);
      if (!t.ok) { per[step].push({ failed: true, error: lastLines(t.stderr) }); break; }
      const added = h.duBytes(out) / h.MB;
      stored += added;
      per[step].push({ wall: t.wall, rssMB: t.rssKiB / 1024, mbps: image.size / h.MB / Math.max(t.wall, 0.01), addedMB: added, storedMB: stored });
      h.log(`variants: ${v.kind}: ${tool} ${step}: ${t.wall.toFixed(2)} s, ${added.toFixed(1)} MB`);
    }
    if (!o.keep) fs.rmSync(base, { recursive: true, force: true });
  }
  return per;
}

function attachReadOnly(h, file, offset, size) {
  const r = h.sh(`losetup -r -f --show -o ${offset} --sizelimit ${size} ${h.q(file)}`, { capture: true });
  if (r.status !== 0) throw new Error(`losetup of ${file} at ${offset}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------- goals and rows
const medianOf = (runs, key) => {
  const ok = (runs ?? []).filter((m) => !m.failed);
  const v = ok.map((m) => m[key]).filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const i = v.length >> 1;
  return v.length % 2 ? v[i] : (v[i - 1] + v[i]) / 2;
};
const ratio = (a, b) => (a != null && b != null && b > 0 ? a / b : null);

function variantGoals(s) {
  const g = { stored: {}, time: {} };
  for (const k of ['full', 'incr']) {
    const c = medianOf(s.cairn[k], 'storedMB'); const p = medianOf(s.partclone?.[k], 'storedMB');
    g.stored[k] = { cairnMB: c, partcloneMB: p, ratio: ratio(c, p), goal: VARIANT_GOALS.stored };
  }
  for (const k of STEPS) {
    const c = medianOf(s.cairn[k], 'wall'); const r = medianOf(s.restic?.[k], 'wall');
    g.time[k] = { cairnS: c, resticS: r, ratio: ratio(c, r), goal: VARIANT_GOALS.time };
  }
  return g;
}

const STEP_LABEL = { init: 'init', full: 'full', incr: 'incr (day later)', restore: 'restore latest' };

/** Rows for bench.mjs's table ({tool, step, wall, mbps, rssMB, addedMB, storedMB, note, runs}). */
function variantRows(ctx, kind, s) {
  const out = [];
  const add = (tool, step, runs, note = []) => {
    if (!runs?.length) return;
    const ok = runs.filter((m) => !m.failed);
    if (ok.length < runs.length) note.unshift(`FAILED in ${runs.length - ok.length}/${runs.length} runs: ${(runs.find((m) => m.failed).error ?? '').split('\n').pop().slice(0, 100)}`);
    if (ok.length > 1) note.push(`median of ${ok.length}`);
    out.push({ tool, step: `${TITLE[kind]}: ${STEP_LABEL[step]}`, wall: medianOf(runs, 'wall'), mbps: medianOf(runs, 'mbps'), rssMB: medianOf(runs, 'rssMB'),
      addedMB: medianOf(runs, 'addedMB'), storedMB: medianOf(runs, 'storedMB'), note: note.join('; '), runs });
  };
  const tool = `cairn ${ctx.o.modes[0]}`;
  for (const step of ['init', 'full', 'incr', 'restore']) {
    const note = [];
    if (step === 'full') note.push(mappingText(s.mapping));
    if (step === 'restore') {
      const r = s.cairn.restore.filter((m) => !m.failed);
      if (r.length) note.push(r.every((m) => m.verified) ? r[0].verifyDetail.replace(/^OK /, '') : 'check FAILED');
    }
    add(tool, step, s.cairn[step], note);
  }
  if (s.restic) {
    for (const step of STEPS) {
      const note = [];
      if (step === 'restore') note.push(s.restic.restore.every((m) => m.failed || m.identical) ? 'dump; cmp identical' : 'dump; cmp DIFFERS');
      else note.push('backup --stdin of the image file');
      add('restic', step, s.restic[step], note);
    }
  }
  if (s.partclone) {
    const what = kind === 'lvmxfs' ? 'root LV only (loop at its offset)' : 'the image';
    add(`${PARTCLONE[kind]}|zstd`, 'full', s.partclone.full, [`-c | zstd -T2 -3 of ${what}`]);
    add(`${PARTCLONE[kind]}|zstd`, 'incr', s.partclone.incr, ['no incremental: a whole new image; stored = both']);
  }
  return out;
}

/** How cairn stored the disk, from the snapshot's layout: the filesystem and mode, and each LV's on an LVM disk. */
function mappingText(m) {
  if (!m) return '';
  if (m.error) return `cairn show failed: ${m.error.slice(0, 80)}`;
  const mib = (b) => (typeof b === 'number' ? ` ${(b / 1048576).toFixed(b < 1048576 ? 3 : 0)} MiB` : '');
  const lvs = Array.isArray(m.lvm?.logicalVolumes)
    ? ` [VG ${m.lvm.vg?.name}: ${m.lvm.logicalVolumes.map((lv) => `${lv.name} ${lv.filesystem ?? '?'} ${lv.mode}${mib(lv.usedBytes)}${lv.note ? ` (${lv.note})` : ''}`).join(', ')}]`
    : '';
  return `mapped: ${m.filesystem ?? 'n/a'} ${m.mode ?? 'n/a'}${lvs}${m.note ? ` (${m.note})` : ''}`;
}

export function variantsGoalsText(summary) {
  const v = (x, d = 2) => (x == null ? 'n/a' : x.toFixed(d));
  const verdict = (x, goal) => (x == null ? '' : x <= goal + 1e-9 ? '  met' : '  NOT met');
  const lines = [`Goals (issue 17), cairn ${summary.mode}, variants of the corpus volume:`];
  for (const s of Object.values(summary.variants)) {
    const g = s.goals;
    const pc = s.title === 'LVM+XFS' ? 'partclone.xfs|zstd' : 'partclone.btrfs|zstd';
    lines.push(`  ${s.title}: ${mappingText(s.mapping)}`);
    lines.push(`    stored after full:  cairn ${v(g.stored.full.cairnMB, 1)} MB / ${pc} ${v(g.stored.full.partcloneMB, 1)} MB = ${v(g.stored.full.ratio, 3)}   (goal <= ${VARIANT_GOALS.stored})${verdict(g.stored.full.ratio, VARIANT_GOALS.stored)}`);
    lines.push(`    stored after incr:  cairn ${v(g.stored.incr.cairnMB, 1)} MB / ${pc} full+incr ${v(g.stored.incr.partcloneMB, 1)} MB = ${v(g.stored.incr.ratio, 3)}   (goal <= ${VARIANT_GOALS.stored})${verdict(g.stored.incr.ratio, VARIANT_GOALS.stored)}`);
    for (const k of STEPS) {
      const t = g.time[k];
      lines.push(`    ${`${k} time:`.padEnd(19)} cairn ${v(t.cairnS)} s / restic ${v(t.resticS)} s = ${v(t.ratio, 3)}   (goal <= ${VARIANT_GOALS.time})${verdict(t.ratio, VARIANT_GOALS.time)}`);
    }
  }
  return lines.join('\n');
}
