#!/usr/bin/env node
// cairn benchmark: cairn side by side with zstd (and restic, borg, partclone when
// installed) on the shared benchmark volumes. Measurement only: no assertions on
// timings. Exits non-zero only when a cairn step fails or a restore is not identical.
//
//   pnpm bench                      full corpus (2 x 4 GiB ext4, built on first use)
//   pnpm bench --quick              small generated corpus (512 MiB), for fast iteration
//   pnpm bench --runs 3             repeat the cairn steps, report medians
//   pnpm bench --no-remote          skip the Ceph RGW (S3) and SFTP (sshd, restic sftp:) part
//   pnpm bench --only-lifecycle     only forget + prune after 10 versions (cairn and restic)
//   pnpm bench --only-files         only the files part (bench/files.bench.mjs: cairn, restic, borg)
//   pnpm bench --only-variants      only the LVM+XFS and Btrfs variants (bench/variants.bench.mjs)
//   pnpm bench --only-scale         only the scale part (bench/scale.bench.mjs; --scale adds it)
//   pnpm bench --help               all options
//
// Units: MB = 2^20 bytes (MiB), as `du -m` and ../shared/bench/peers.sh use;
// MB/s = image size / wall time. Results: bench/results/<date>.json.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FILES_TOOLS, filesGoalsText, filesLegend, filesPart, filesTable, readRepository } from './files.bench.mjs';
import { VARIANTS, variantsGoalsText, variantsPart } from './variants.bench.mjs';
import { scaleGoalsText, scalePart } from './scale.bench.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CAIRN = path.join(ROOT, 'packages/core/bin/cairn.js');
const MB = 1024 * 1024;

// ---------------------------------------------------------------------------- options
const USAGE = `usage: node bench/bench.mjs [options]   (pnpm bench -- [options])

  --quick            a small generated corpus (512 MiB ext4 with random + system files)
                     instead of the shared 2 x 4 GiB one
  --runs N           repeat the cairn steps N times and report medians (default 1)
  --peer-runs N      run restic, borg and partclone (peers.sh) N times and report medians
                     (default: as --runs), so that goal ratios compare median with median
  --mode M[,M...]    cairn volume mode(s) to measure: used, exact (default used,exact;
                     the first one is the one compared with the goals and the remote targets)
  --level L          zstd level for cairn (default 3, as the zstd peer)
  --corpus DIR       where the corpus is built/cached (default /tmp/cairn-corpus,
                     /tmp/cairn-corpus-quick with --quick)
  --work DIR         scratch space for repositories and restores (default <repo>/.bench)
  --no-peers         measure cairn only (no zstd, partclone, restic, borg)
  --no-remote        skip the remote targets: cairn to a local Ceph RGW (S3) and to a local
                     OpenSSH sshd (SFTP), and restic's SFTP backend, all on sysvol(2).img
  --no-lifecycle     skip the lifecycle step: 10 versions of a changing copy of the volume
                     backed up by cairn (first --mode) and restic, then cairn forget
                     --keep-last 3 + cairn prune next to restic forget --keep-last 3 --prune
                     (times, repository size before and after; the newest snapshot restored)
                     --runs times (restic too; the history is rebuilt in every run)
  --only-lifecycle   run only the lifecycle step (restic too unless --no-peers)
  --no-files         skip the files part (bench/files.bench.mjs): the files of sysvol.img and
                     sysvol2.img (mounted read-only, one after the other at one mount point) and
                     a tree of small files, backed up (first, day later, unchanged) and restored
                     by cairn (a \`files\` job), restic and borg; needs root (mount)
  --only-files       run only the files part
  --no-variants      skip the variants part (bench/variants.bench.mjs, issue 17): the corpus
                     volume's files on an LVM2 disk as RHEL lays it out (VG rhel, XFS root LV,
                     swap LV) and on a Btrfs with Fedora's subvolumes, each disk filled with
                     random data first (built once by bench/variants.sh next to the corpus; root);
                     cairn (first --mode) full, incr, restore (checked: fsck, LVM metadata, swap
                     header, every file) next to restic and partclone.xfs/btrfs | zstd -T2 -3
  --only-variants    run only the variants part
  --variants V[,V]   which variants (default ${VARIANTS.join(',')})
  --variant-peers P  peers of the variants part (default restic,partclone; their sizes do not
                     change from run to run, so a median of restic's times may skip partclone)
  --files-tools T    tools of the files part (default cairn,restic,borg; cairn with --no-peers)
  --small-files N    files in the small-files tree (default 100000, 10000 with --quick); the tree
                     is generated once into /tmp/cairn-smallfiles-N (or --small-dir DIR)
  --scale            add the scale part (bench/scale.bench.mjs, issue 18; root; about 45 GB of
                     disk and half an hour): --scale-data GiB of files on an ext4 volume their
                     size and on a sparse --scale-disk GiB ext4 disk, each backed up and
                     restored cold (goal: the large disk <= 2x the small volume's times), index
                     memory per TB (goal <= 64 MB); --scale-snapshots backups into one repository,
                     then snapshots (goal < 1 s), check, restore and backup timed there
  --only-scale       run only the scale part
  --scale-data G     GiB of files for the scale part (default 10)
  --scale-disk G     size of its sparse disk in GiB (default 2048)
  --scale-snapshots N  snapshots of its many-snapshots repository (default 1000)
  --no-setup         skip scripts/setup.sh (dependencies, build)
  --no-boot          skip the boot step: the Debian test system booted by \`cairn boot\` (QEMU on
                     \`cairn serve\`) against QEMU on the image file (bench/boot.bench.mjs; the
                     first run builds the disk, about 3 minutes)
  --keep             keep the repositories in the work folder afterwards
  --out FILE         results JSON (default bench/results/<date>[-quick].json)

The shared scripts are found at <repo>/../shared/bench/, else $CAIRN_SHARED/bench/.`;

function parseArgs(argv) {
  const o = { quick: false, runs: 1, modes: ['used', 'exact'], level: 3, peers: true, remote: true, lifecycle: true, onlyLifecycle: false, setup: true, keep: false,
    files: true, onlyFiles: false, variantsPart: true, onlyVariants: false, scale: false, onlyScale: false, scaleData: 10, scaleDisk: 2048, scaleSnapshots: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) die(`${a} needs a value\n\n${USAGE}`, 2);
      return v;
    };
    const name = a.split('=')[0];
    switch (name) {
      case '--': break;
      case '--quick': o.quick = true; break;
      case '--runs': o.runs = Number(val()); break;
      case '--peer-runs': o.peerRuns = Number(val()); break;
      case '--mode': case '--modes': o.modes = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--level': o.level = Number(val()); break;
      case '--corpus': o.corpus = path.resolve(val()); break;
      case '--work': o.work = path.resolve(val()); break;
      case '--out': o.out = path.resolve(val()); break;
      case '--no-peers': o.peers = false; break;
      case '--no-remote': o.remote = false; break;
      case '--no-lifecycle': o.lifecycle = false; break;
      case '--only-lifecycle': o.onlyLifecycle = true; break;
      case '--no-files': o.files = false; break;
      case '--only-files': o.onlyFiles = true; break;
      case '--no-variants': o.variantsPart = false; break;
      case '--only-variants': o.onlyVariants = true; break;
      case '--variants': o.variants = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--variant-peers': o.variantPeers = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--files-tools': o.filesTools = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--small-files': o.smallFiles = Number(val()); break;
      case '--small-dir': o.smallDir = path.resolve(val()); break;
      case '--scale': o.scale = true; break;
      case '--only-scale': o.scale = o.onlyScale = true; break;
      case '--scale-data': o.scaleData = Number(val()); break;
      case '--scale-disk': o.scaleDisk = Number(val()); break;
      case '--scale-snapshots': o.scaleSnapshots = Number(val()); break;
      case '--no-setup': o.setup = false; break;
      case '--no-boot': o.boot = false; break;
      case '--keep': o.keep = true; break;
      case '-h': case '--help': console.log(USAGE); process.exit(0);
      default: die(`unknown option ${a}\n\n${USAGE}`, 2);
    }
  }
  if (!Number.isInteger(o.runs) || o.runs < 1) die('--runs must be a positive integer', 2);
  o.peerRuns ??= o.runs;
  if (!Number.isInteger(o.peerRuns) || o.peerRuns < 1) die('--peer-runs must be a positive integer', 2);
  if (!Number.isInteger(o.level)) die('--level must be an integer', 2);
  const badMode = o.modes.find((m) => m !== 'used' && m !== 'exact');
  if (badMode || !o.modes.length) die(`--mode: unknown mode ${badMode ?? '(none)'}; use used, exact or both`, 2);
  if (o.onlyLifecycle && !o.lifecycle) die('--only-lifecycle and --no-lifecycle exclude each other', 2);
  if (o.onlyFiles && !o.files) die('--only-files and --no-files exclude each other', 2);
  if (o.onlyFiles && o.onlyLifecycle) die('--only-files and --only-lifecycle exclude each other', 2);
  if (o.onlyVariants && !o.variantsPart) die('--only-variants and --no-variants exclude each other', 2);
  if (o.onlyVariants && (o.onlyFiles || o.onlyLifecycle)) die('--only-variants excludes --only-files and --only-lifecycle', 2);
  const badVariant = (o.variants ?? VARIANTS).find((v) => !VARIANTS.includes(v));
  const badPeer = (o.variantPeers ?? []).find((p) => p !== 'restic' && p !== 'partclone');
  if (badPeer) die(`--variant-peers: unknown peer ${badPeer}; use restic, partclone`, 2);
  if (badVariant || o.variants?.length === 0) die(`--variants: unknown variant ${badVariant ?? '(none)'}; use ${VARIANTS.join(', ')}`, 2);
  o.filesTools ??= o.peers ? FILES_TOOLS : ['cairn'];
  const badTool = o.filesTools.find((t) => !FILES_TOOLS.includes(t));
  if (badTool || !o.filesTools.length) die(`--files-tools: unknown tool ${badTool ?? '(none)'}; use ${FILES_TOOLS.join(', ')}`, 2);
  o.smallFiles ??= o.quick ? 10000 : 100000;
  if (!Number.isInteger(o.smallFiles) || o.smallFiles < 100) die('--small-files must be an integer >= 100', 2);
  if (o.onlyFiles) o.lifecycle = o.remote = o.boot = false;
  if (o.onlyLifecycle) o.files = false;
  if (o.onlyFiles || o.onlyLifecycle) o.variantsPart = false;
  if (o.onlyVariants) o.files = o.lifecycle = o.remote = o.boot = false;
  if ([o.scaleData, o.scaleDisk, o.scaleSnapshots].some((n) => !Number.isInteger(n) || n < 1)) die('--scale-data, --scale-disk and --scale-snapshots take positive integers', 2);
  if (o.scaleDisk < 2 * o.scaleData) die('--scale-disk must be at least twice --scale-data', 2);
  if (o.onlyScale && (o.onlyVariants || o.onlyFiles || o.onlyLifecycle)) die('--only-scale excludes the other --only options', 2);
  if (o.onlyScale) o.files = o.lifecycle = o.remote = o.boot = o.variantsPart = false;
  o.corpus ??= o.quick ? '/tmp/cairn-corpus-quick' : '/tmp/cairn-corpus';
  o.work ??= path.join(ROOT, '.bench');
  return o;
}

// ---------------------------------------------------------------------------- helpers
function die(msg, code = 1) {
  console.error(`bench: ${msg}`);
  process.exit(code);
}
const log = (msg) => console.log(`bench: ${msg}`);

/** Runs a shell command; output to the terminal unless captured. Returns {status, stdout, stderr}. */
function sh(cmd, { capture = false, env, cwd } = {}) {
  const r = spawnSync('bash', ['-c', cmd], {
    stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    encoding: 'utf8',
    maxBuffer: 256 * MB,
    env: env ? { ...process.env, ...env } : process.env,
    cwd,
  });
  if (r.error) throw r.error;
  return { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const q = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;
const has = (cmd) => sh(`command -v ${q(cmd)}`, { capture: true }).status === 0;
const dpkgInstalled = (p) =>
  sh(`dpkg-query -W -f='\${Status}' ${q(p)} 2>/dev/null`, { capture: true }).stdout === 'install ok installed';
const duBytes = (p) => (fs.existsSync(p) ? Number(sh(`du -sb ${q(p)}`, { capture: true }).stdout.split(/\s/)[0]) : 0);
const allocBytes = (p) => Number(sh(`du -sB1 ${q(p)}`, { capture: true }).stdout.split(/\s/)[0]);

let aptUpdated = false;
/** Installs Debian packages one by one; returns the ones that could not be installed. */
function aptEnsure(pkgs) {
  const missing = pkgs.filter((p) => !dpkgInstalled(p));
  if (!missing.length) return [];
  if (!has('apt-get')) return missing;
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    log(`apt-get update (missing: ${missing.join(' ')})`);
    sh('apt-get update -q >/dev/null', { env });
    aptUpdated = true;
  }
  const failed = [];
  for (const p of missing) {
    const r = sh(`apt-get install -y -q --no-install-recommends ${q(p)}`, { capture: true, env });
    if (r.status === 0) log(`installed ${p}`);
    else {
      failed.push(p);
      log(`could not install ${p}: ${(r.stderr.trim().split('\n').pop() || 'apt-get failed')}`);
    }
  }
  return failed;
}

/**
 * Runs argv under /usr/bin/time; returns {ok, wall, rssKiB, stdout, stderr}.
 * The page cache is left as it is; dirty data from the previous step is synced first.
 */
function timed(argv, { env, cwd } = {}) {
  sh('sync');
  const tfile = path.join(os.tmpdir(), `cairn-bench-time.${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', '-o', tfile, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    maxBuffer: 256 * MB,
    env: env ? { ...process.env, ...env } : process.env,
    cwd,
  });
  if (r.error || !fs.existsSync(tfile)) die(`could not run ${argv[0]} under /usr/bin/time: ${r.error?.message ?? r.stderr}`);
  const lines = fs.readFileSync(tfile, 'utf8').trim().split('\n');
  fs.rmSync(tfile, { force: true });
  const [wall, rss, user, sys] = lines.at(-1).split(' ').map(Number);
  return { ok: r.status === 0, status: r.status, wall, rssKiB: rss, cpuS: user + sys, stdout: r.stdout, stderr: r.stderr };
}

/** bench/verify-restore.sh: {ok, method, line, stderr}. */
function verifyRestore(mode, restored, original) {
  const r = sh(`bash ${q(path.join(ROOT, 'bench/verify-restore.sh'))} ${q(mode)} ${q(restored)} ${q(original)}`, { capture: true });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  const method = line.replace(/^(OK|FAILED) /, '').replace(/ \(.*\)$/, '').replace(/:.*/, '') || 'verify-restore.sh';
  return { ok: r.status === 0, method, line, stderr: r.stderr };
}

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function findShared(file) {
  const candidates = [path.resolve(ROOT, '..', 'shared', 'bench', file)];
  if (process.env.CAIRN_SHARED) candidates.push(path.resolve(process.env.CAIRN_SHARED, 'bench', file), path.resolve(process.env.CAIRN_SHARED, file));
  return candidates.find((c) => fs.existsSync(c)) ?? null;
}

function stamp() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

// ---------------------------------------------------------------------------- corpus
function buildSharedCorpus(dir) {
  const script = findShared('corpus.sh');
  if (!script) die(`../shared/bench/corpus.sh not found next to the repository; set CAIRN_SHARED to the shared folder`);
  if (fs.existsSync(path.join(dir, 'sysvol2.img'))) {
    log(`corpus: reusing ${dir}`);
    return script;
  }
  if (process.getuid?.() !== 0) die('building the corpus needs root (corpus.sh uses loop devices and mount)');
  log(`corpus: building with ${script} in ${dir} (2 x 4 GiB sparse; this takes a few minutes)`);
  const r = sh(`bash ${q(script)} ${q(dir)}`);
  if (r.status !== 0) die(`corpus.sh failed (exit ${r.status}); remove ${dir} and try again`);
  return script;
}

/**
 * The --quick corpus, without loop devices: a 512 MiB ext4 (4 KiB blocks) whose free space
 * holds stale random data, made with mkfs.ext4 -d from system files and random data; then
 * sysvol2.img, the same volume after "a day of use" edited in place with debugfs: a new
 * file, files patched in place at their own blocks, files deleted.
 */
function buildQuickCorpus(dir) {
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) {
    log(`corpus: reusing ${dir}`);
    return;
  }
  log(`corpus: generating the quick corpus in ${dir}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'sysvol.img');
  const img2 = path.join(dir, 'sysvol2.img');
  const stage = path.join(dir, 'stage');
  const run = (what, cmd) => {
    const r = sh(cmd, { capture: true });
    if (r.status !== 0) die(`quick corpus: ${what} failed:\n${r.stderr || r.stdout}`);
    return r.stdout;
  };
  // ~200 MiB of files: documentation (text), some binaries, random data (photos).
  run('staging files', `set -e
    mkdir -p ${q(stage)}/usr/share ${q(stage)}/usr/bin ${q(stage)}/home/user ${q(stage)}/var/empty
    cp -a /usr/share/doc ${q(stage)}/usr/share/ 2>/dev/null || true
    cp -a /usr/libexec ${q(stage)}/usr/ 2>/dev/null || true
    total=0
    for f in $(find /usr/bin -maxdepth 1 -type f -size +1k | sort); do
      cp -a "$f" ${q(stage)}/usr/bin/ && total=$((total + $(stat -c %s "$f")))
      [ $total -lt $((60 * 1024 * 1024)) ] || break
    done
    head -c 24M /dev/urandom > ${q(stage)}/home/user/photos.bin`);
  // Stale random data everywhere first; mkfs must not discard it (for a file, a discard punches holes).
  run('stale data', `head -c 512M /dev/urandom > ${q(img)}`);
  run('mkfs.ext4 -d', `mkfs.ext4 -q -F -b 4096 -E nodiscard -L sysvol -d ${q(stage)} ${q(img)}`);
  run('copy', `cp --sparse=always ${q(img)} ${q(img2)}`);
  // A day of use.
  run('new file', `head -c 8M /dev/urandom > ${q(dir)}/new-download.bin`);
  const bins = run('list', `cd ${q(stage)} && find usr/bin -type f -size +1k | sort | head -100`).split('\n').filter(Boolean);
  const docs = run('list', `cd ${q(stage)} && find usr/share/doc -type f | sort`).split('\n').filter((f) => /^[\w./+-]+$/.test(f));
  const doomed = docs.filter((_, i) => i % 30 === 0); // ~3% of the documentation files
  const cmds = [
    'cd /home/user',
    `write ${dir}/new-download.bin new-download.bin`,
    ...doomed.map((f) => `rm /${f}`),
  ];
  fs.writeFileSync(path.join(dir, 'debugfs.cmds'), cmds.join('\n') + '\n');
  run('debugfs edits', `debugfs -w -f ${q(dir)}/debugfs.cmds ${q(img2)}`);
  // Patch binaries in place, at their own first block (as `dd conv=notrunc` on a mounted fs).
  const patch = bins
    .map((f) => `b=$(debugfs -R ${q(`bmap /${f} 0`)} ${q(img2)} 2>/dev/null); [ -n "$b" ] && [ "$b" != 0 ] && printf patched | dd of=${q(img2)} bs=1 seek=$((b * 4096 + 100)) conv=notrunc status=none`)
    .join('\n');
  run('patching binaries', patch);
  run('e2fsck sysvol.img', `e2fsck -fn ${q(img)}`);
  run('e2fsck sysvol2.img', `e2fsck -fn ${q(img2)}`);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.rmSync(path.join(dir, 'new-download.bin'), { force: true });
  fs.writeFileSync(done, `quick corpus: new 8 MiB file, ${bins.length} binaries patched, ${doomed.length} files deleted\n`);
  log(`corpus: ${fs.readFileSync(done, 'utf8').trim()}`);
}

// ---------------------------------------------------------------------------- measurements
const rows = []; // {tool, step, wall, mbps, rssMB, addedMB, storedMB, note, runs?}
let failures = 0;

function row(r) {
  rows.push({ tool: r.tool, step: r.step, wall: null, mbps: null, rssMB: null, addedMB: null, storedMB: null, note: '', ...r });
}

function cairnRuns(o, images, mode) {
  const tool = `cairn ${mode}`;
  const base = path.join(o.work, `cairn-${mode}`);
  const env = { CAIRN_PASSWORD: 'bench' };
  const steps = ['init', 'full', 'incr', 'restore', 'restoreFull1', 'delta', 'served', 'unchanged'];
  const per = Object.fromEntries(steps.map((s) => [s, []]));
  const identical = [];
  for (let run = 1; run <= o.runs; run++) {
    log(`${tool}: run ${run}/${o.runs}`);
    fs.rmSync(base, { recursive: true, force: true });
    fs.mkdirSync(base, { recursive: true });
    const repo = path.join(base, 'repo');
    const job = (name, image) => {
      const file = path.join(base, name);
      fs.writeFileSync(file, JSON.stringify({
        name: 'bench',
        source: { type: 'volume', path: image, mode },
        compression: { type: 'zstd', level: o.level },
        target: { type: 'local', path: repo },
        password: { env: 'CAIRN_PASSWORD' },
      }, null, 2));
      return file;
    };
    const job1 = job('sysvol.json', images.sysvol.path);
    const job2 = job('sysvol2.json', images.sysvol2.path);
    const restored = path.join(base, 'restored.img');
    sh(`cat ${q(images.sysvol.path)} ${q(images.sysvol2.path)} > /dev/null`); // warm the page cache, as peers.sh does

    const plan = [
      ['init', ['init', job1], null],
      ['full', ['backup', job1, '--json'], images.sysvol.size],
      ['incr', ['backup', job2, '--json'], images.sysvol2.size],
      ['restore', ['restore', job2, 'latest', '--to', restored, '--json'], images.sysvol2.size],
      ['unchanged', ['backup', job2, '--json'], images.sysvol2.size],
    ];
    let fullSnapshot = null;
    for (const [step, args, bytes] of plan) {
      if (step === 'unchanged') {
        deltaRun({ job: job1, snapshot: fullSnapshot, base, env, images, mode }, per);
        servedRun(job2, base, env, images.sysvol2.size, per.served);
      }
      if (step === 'restore') readRepository({ sh, q }, repo); // as the peers' are still in the page cache
      const t = timed(['node', CAIRN, ...args], { env, cwd: base });
      if (!t.ok) {
        failures++;
        log(`${tool} ${step} FAILED (exit ${t.status}): ${(t.stderr || t.stdout).trim().split('\n').slice(-5).join('\n')}`);
        per[step].push({ failed: true, error: (t.stderr || t.stdout).trim().slice(-500) });
        break;
      }
      let json = null;
      if (args.includes('--json')) {
        try { json = JSON.parse(t.stdout); } catch { /* a human message; fine */ }
      }
      if (step === 'full') fullSnapshot = json?.snapshot ?? null;
      const m = {
        wall: t.wall,
        rssMB: t.rssKiB / 1024,
        cpuS: t.cpuS,
        mbps: bytes ? bytes / MB / Math.max(t.wall, 0.01) : null,
        addedMB: typeof json?.bytesAdded === 'number' ? json.bytesAdded / MB : null,
        storedMB: step === 'restore' ? null : duBytes(repo) / MB,
        durationMs: json?.durationMs ?? null,
      };
      if (step === 'restore') {
        // exact: the restored image must equal the source byte for byte. used restores unused
        // space as zeros, so: e2fsck -fn, then every file compared (bench/verify-restore.sh).
        const v = verifyRestore(mode, restored, images.sysvol2.path);
        m.identical = v.ok;
        m.verifiedBy = v.method;
        m.verifyDetail = v.line;
        identical.push(m.identical);
        if (!m.identical) { failures++; log(`${tool}: restored image FAILED ${m.verifiedBy}: ${v.line}\n${v.stderr.trim().split('\n').slice(-5).join('\n')}`); }
        m.restoredAllocatedMB = allocBytes(restored) / MB;
        fs.rmSync(restored, { force: true });
      }
      per[step].push(m);
      log(`${tool} ${step}: ${t.wall.toFixed(2)} s, rss ${Math.round(m.rssMB)} MB` +
        (m.addedMB != null ? `, added ${m.addedMB.toFixed(1)} MB` : '') +
        (m.storedMB != null ? `, repository ${m.storedMB.toFixed(1)} MB` : '') +
        (m.identical != null ? `, ${m.verifiedBy} ${m.identical ? 'OK' : 'FAILED'}` : ''));
    }
    if (!o.keep) fs.rmSync(base, { recursive: true, force: true });
  }
  const label = {
    init: 'init',
    full: 'full (sysvol)',
    incr: 'incr (sysvol2)',
    restore: 'restore latest',
    restoreFull1: 'restore sysvol (full)',
    delta: 'delta restore sysvol onto sysvol2',
    served: 'nbdcopy of cairn serve',
    unchanged: 'unchanged re-backup',
  };
  for (const s of steps) {
    const ok = per[s].filter((m) => !m.failed);
    if (!per[s].length) continue;
    const note = [];
    if (per[s].some((m) => m.failed)) note.push(`FAILED in ${per[s].filter((m) => m.failed).length}/${per[s].length} runs`);
    if (s === 'restore') {
      const ok = identical.length && identical.every(Boolean);
      const files = per[s].find((m) => m.verifyDetail)?.verifyDetail?.match(/\((\d+) files identical\)/)?.[1];
      note.push(mode === 'exact' ? (ok ? 'cmp identical' : 'cmp DIFFERS')
        : ok ? `e2fsck clean, ${files ?? 'all'} files identical (free space zeroed)` : 'e2fsck or file comparison FAILED');
    }
    if (s === 'delta' && ok.length) {
      const r = (k) => median(ok.map((m) => m[k]));
      note.push(`${r('timeRatio')?.toFixed(2)}x the full restore's time (goal <= 0.5); written (/proc) ${r('writtenRatio')?.toFixed(2)}x and fetched ${r('fetchedRatio')?.toFixed(2)}x the ${r('differingMB')?.toFixed(0)} MB of differing chunks (goal <= 1.1); ${ok.every((m) => m.identical) ? 'identical to the full restore' : 'DIFFERS'}`);
    }
    if (o.runs > 1 && ok.length) note.push(`median of ${ok.length}`);
    row({
      tool, step: label[s],
      wall: median(ok.map((m) => m.wall)),
      mbps: median(ok.map((m) => m.mbps)),
      rssMB: median(ok.map((m) => m.rssMB)),
      cpuS: median(ok.map((m) => m.cpuS)),
      addedMB: median(ok.map((m) => m.addedMB)),
      storedMB: median(ok.map((m) => m.storedMB)),
      note: note.join(', '),
      runs: per[s],
    });
  }
}

/**
 * Rollback (issue 18): the sysvol snapshot restored onto a copy of the sysvol2 image, by delta,
 * against a full restore of the same snapshot to a new file. Bytes written come from the
 * kernel's count for the process (/proc/self/io, bench/io-report.mjs), and are compared, like
 * the bytes fetched, with the chunks that differ between the two results, counted here by
 * reading both files (goals: time ≤ 0.5× the full restore; written and fetched ≤ 1.1× the
 * differing chunks). The result must equal the full restore byte for byte.
 */
function deltaRun({ job, snapshot, base, env, images, mode }, per) {
  if (!snapshot) return;
  const full = path.join(base, 'restored-sysvol.img');
  const target = path.join(base, 'delta.img');
  const ioFile = path.join(base, 'delta-io.json');
  const restoreTimed = (to, extra = []) => timed(['node', '--import', path.join(ROOT, 'bench/io-report.mjs'), CAIRN, 'restore', job, snapshot, '--to', to, '--json', ...extra], { env: { ...env, CAIRN_BENCH_IO: ioFile }, cwd: base });
  readRepository({ sh, q }, path.join(base, 'repo'));
  const f = restoreTimed(full);
  if (!f.ok) { failures++; per.restoreFull1.push({ failed: true, error: f.stderr.trim().slice(-500) }); return; }
  per.restoreFull1.push({ wall: f.wall, rssMB: f.rssKiB / 1024, mbps: images.sysvol.size / MB / Math.max(f.wall, 0.01) });
  sh(`cp --sparse=always ${q(images.sysvol2.path)} ${q(target)}`);
  const chunkSize = JSON.parse(sh(`node ${q(CAIRN)} show ${q(job)} ${snapshot} --json`, { capture: true, env, cwd: base }).stdout).chunkSize ?? 4 * MB;
  const differing = differingBytes(full, target, chunkSize);
  const t = restoreTimed(target, ['--force']);
  if (!t.ok) { failures++; log(`cairn ${mode} delta restore FAILED: ${t.stderr.trim().slice(-300)}`); per.delta.push({ failed: true, error: t.stderr.trim().slice(-500) }); return; }
  const json = JSON.parse(t.stdout);
  const io = JSON.parse(fs.readFileSync(ioFile, 'utf8'));
  const same = sh(`cmp ${q(full)} ${q(target)}`, { capture: true }).status === 0;
  if (!same) failures++;
  const m = { wall: t.wall, rssMB: t.rssKiB / 1024, mbps: images.sysvol.size / MB / Math.max(t.wall, 0.01), delta: json.delta,
    differingMB: differing / MB, writtenMB: io.write_bytes / MB, reportedWrittenMB: json.bytesWritten / MB, fetchedMB: json.bytesFetched / MB,
    timeRatio: t.wall / f.wall, writtenRatio: differing ? io.write_bytes / differing : null, fetchedRatio: differing ? json.bytesFetched / differing : null, identical: same };
  per.delta.push(m);
  log(`cairn ${mode} delta restore: ${t.wall.toFixed(2)} s (full ${f.wall.toFixed(2)} s), chunks differing ${m.differingMB.toFixed(1)} MB, ` +
    `written ${m.writtenMB.toFixed(1)} MB (/proc), fetched ${m.fetchedMB.toFixed(1)} MB, ${same ? 'identical to the full restore' : 'DIFFERS from the full restore'}`);
  fs.rmSync(full, { force: true });
  fs.rmSync(target, { force: true });
}

/** Bytes of the chunks (at chunkSize) in which two files of one size differ. */
function differingBytes(a, b, chunkSize) {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  const ba = Buffer.alloc(chunkSize);
  const bb = Buffer.alloc(chunkSize);
  let differing = 0;
  try {
    for (let at = 0; ; at += chunkSize) {
      const n = fs.readSync(fa, ba, 0, chunkSize, at);
      if (n === 0) break;
      fs.readSync(fb, bb, 0, chunkSize, at);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) differing += n;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
  return differing;
}

/**
 * `cairn serve` of the latest snapshot, read whole by libnbd's nbdcopy into nothing (`null:`):
 * what a client of the NBD export gets, against `restore`'s throughput (issue 16: ≥ 0.8×).
 */
function servedRun(job, base, env, bytes, out) {
  const socket = path.join(base, 'nbd.sock');
  const server = spawn('node', [CAIRN, 'serve', job, 'latest', '--socket', socket], { env: { ...process.env, ...env }, cwd: base, stdio: 'ignore' });
  for (let i = 0; i < 600 && !fs.existsSync(socket); i++) sh('sleep 0.1');
  const t = timed(['nbdcopy', `nbd+unix:///?socket=${socket}`, 'null:']);
  server.kill('SIGTERM');
  if (!t.ok) {
    failures++;
    log(`cairn serve + nbdcopy FAILED (exit ${t.status}): ${t.stderr.trim().split('\n').slice(-3).join('\n')}`);
    out.push({ failed: true, error: t.stderr.trim().slice(-500) });
    return;
  }
  // The time and memory are the client's (nbdcopy); the server started before the clock.
  out.push({ wall: t.wall, rssMB: null, mbps: bytes / MB / Math.max(t.wall, 0.01) });
  log(`cairn serve + nbdcopy: ${t.wall.toFixed(2)} s (${(bytes / MB / t.wall).toFixed(0)} MB/s)`);
}

/** bench/boot.bench.mjs: seconds to the test system's marker line, from cairn boot and from QEMU on the image file. */
function bootRuns(o) {
  const out = path.join(o.work, 'boot.json');
  log('boot: the Debian test system from cairn boot and from its image file (bench/boot.bench.mjs)');
  const r = spawnSync('node', [path.join(ROOT, 'bench/boot.bench.mjs'), '--runs', String(o.runs), '--out', out], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    failures++;
    log(`boot step FAILED (exit ${r.status})`);
    return null;
  }
  return JSON.parse(fs.readFileSync(out, 'utf8')).summary;
}

function zstdPeer(o, images) {
  const dir = path.join(o.work, 'zstd');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const full = path.join(dir, 'full.zst');
  const incr = path.join(dir, 'incr.zst');
  const restored = path.join(dir, 'restored.img');
  sh(`cat ${q(images.sysvol.path)} ${q(images.sysvol2.path)} > /dev/null`);
  const z = (step, cmd, bytes, stored, extra = {}) => {
    const t = timed(['bash', '-c', cmd]);
    if (!t.ok) {
      row({ tool: 'zstd -T2 -3', step, note: `FAILED: ${t.stderr.trim().split('\n').pop()}` });
      return false;
    }
    row({ tool: 'zstd -T2 -3', step, wall: t.wall, mbps: bytes / MB / Math.max(t.wall, 0.01), rssMB: t.rssKiB / 1024, ...stored(), ...extra });
    log(`zstd ${step}: ${t.wall.toFixed(2)} s`);
    return true;
  };
  log('zstd: compressing both images, then decompressing the second');
  z('full (sysvol)', `zstd -q -T2 -3 -c ${q(images.sysvol.path)} > ${q(full)}`, images.sysvol.size,
    () => ({ addedMB: duBytes(full) / MB, storedMB: duBytes(full) / MB }));
  z('incr (sysvol2)', `zstd -q -T2 -3 -c ${q(images.sysvol2.path)} > ${q(incr)}`, images.sysvol2.size,
    () => ({ addedMB: duBytes(incr) / MB, storedMB: (duBytes(full) + duBytes(incr)) / MB, note: 'no dedup: a whole new file' }));
  if (fs.existsSync(incr)) {
    z('restore latest', `zstd -q -d -c ${q(incr)} > ${q(restored)}`, images.sysvol2.size, () => ({}));
    const c = sh(`cmp ${q(restored)} ${q(images.sysvol2.path)}`, { capture: true });
    rows.at(-1).note = c.status === 0 ? 'decompress; cmp identical' : 'decompress; cmp DIFFERS';
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Runs ../shared/bench/peers.sh `o.peerRuns` times and turns its lines into rows, with the
 * median wall time, RSS and size of each step (its own zstd lines are skipped: measured above).
 * A single run of restic varied by 10 % on this shared machine, so goal ratios compare
 * medians with medians.
 */
function sharedPeers(o, available) {
  const script = findShared('peers.sh');
  if (!script) { log('peers.sh not found; skipping restic/borg/partclone'); return; }
  const work = path.join(o.work, 'peers');
  const names = { partclone: 'partclone|zstd', restic: 'restic', borg: 'borg' };
  const stepLabel = { full: 'full (sysvol)', incr: 'incr (sysvol2)', restore: 'restore latest' };
  /** peer → step → measurements of each run; peer → restore verdicts of each run. */
  const measured = {};
  const verdicts = {};
  const failures = {};
  for (let run = 1; run <= o.peerRuns; run++) {
    log(`peers: running ${script} for ${available.join(', ')}${o.peerRuns > 1 ? `, run ${run}/${o.peerRuns}` : ''} (this takes a while on the full corpus)`);
    const r = spawnSync('bash', [script, o.corpus, work], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * MB });
    const out = r.stdout ?? '';
    process.stdout.write(out.split('\n').filter(Boolean).map((l) => `  peers.sh| ${l}\n`).join(''));
    for (const line of out.split('\n')) {
      const verdict = line.match(/^(\S+) restore (identical|DIFFERS)/);
      if (verdict) (verdicts[verdict[1]] ??= []).push(verdict[2]);
      let m = line.match(/^(\S+)\s+(\S+)\s+wall\s+([\d.]+) s\s+rss\s+(\d+) MB\s+stored\s+(\d*) MB/);
      if (m && m[1] in names && available.includes(m[1])) {
        const [, peer, step, wall, rss, stored] = m;
        ((measured[peer] ??= {})[step] ??= []).push({ wall: Number(wall), rssMB: Number(rss), storedMB: stored === '' ? null : Number(stored) });
      } else if ((m = line.match(/^(\S+)\s+(\S+)\s+FAILED:\s*(.*)$/)) && m[1] in names) {
        (failures[m[1]] ??= {})[m[2]] = m[3];
      }
    }
    if (r.status !== 0) log(`peers.sh exited with ${r.status}`);
  }

  const sizeOf = (step) => (step === 'full' ? o.images.sysvol.size : o.images.sysvol2.size);
  for (const peer of Object.keys(names).filter((p) => available.includes(p))) {
    const tool = names[peer];
    let previousStored = 0;
    for (const step of ['full', 'incr', 'restore']) {
      const runs = measured[peer]?.[step] ?? [];
      const failed = failures[peer]?.[step];
      if (runs.length === 0) {
        if (failed !== undefined) row({ tool, step: stepLabel[step], note: `FAILED: ${failed.slice(0, 120)}` });
        continue;
      }
      const wall = median(runs.map((x) => x.wall));
      const note = [];
      const rowData = { tool, step: stepLabel[step], wall, mbps: sizeOf(step) / MB / Math.max(wall, 0.01), rssMB: median(runs.map((x) => x.rssMB)) };
      if (step !== 'restore') {
        const storedMB = median(runs.map((x) => x.storedMB));
        rowData.storedMB = storedMB;
        rowData.addedMB = storedMB == null ? null : storedMB - previousStored;
        previousStored = storedMB ?? previousStored;
        if (peer === 'partclone') note.push('partclone.ext4 -c | zstd -T2 -3 (used blocks)');
      } else {
        note.push(`of ${peer === 'partclone' ? 'full (sysvol)' : 'incr (sysvol2)'}`);
        const v = verdicts[peer] ?? [];
        if (v.length) note.push(`cmp ${v.includes('DIFFERS') ? 'DIFFERS' : 'identical'}`);
        if (peer === 'partclone') rowData.mbps = o.images.sysvol.size / MB / Math.max(wall, 0.01);
      }
      if (runs.length > 1) note.push(`median of ${runs.length}`);
      if (failed !== undefined) note.push(`${o.peerRuns - runs.length} run(s) FAILED: ${failed.slice(0, 80)}`);
      rowData.note = note.join('; ');
      row(rowData);
    }
  }
  if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
}

/**
 * peers.sh times partclone's full image and restore only; the incremental (sysvol2) is measured
 * here the same way (partclone has no incremental: a whole new used-block image), stored =
 * full + this file. The row goes right after partclone's full row.
 */
function partcloneIncr(o) {
  const full = rows.find((r) => r.tool === 'partclone|zstd' && r.step === 'full (sysvol)' && r.wall != null);
  if (!full) return;
  const dir = path.join(o.work, 'partclone-incr');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const out = path.join(dir, 'incr.pc.zst');
  sh(`cat ${q(o.images.sysvol2.path)} > /dev/null`);
  const t = timed(['bash', '-c', `partclone.ext4 -q -c -s ${q(o.images.sysvol2.path)} -o - | zstd -q -T2 -3 > ${q(out)}`]);
  const r = { tool: 'partclone|zstd', step: 'incr (sysvol2)' };
  if (!t.ok) r.note = `FAILED: ${t.stderr.trim().split('\n').pop()}`;
  else {
    const added = duBytes(out) / MB;
    Object.assign(r, { wall: t.wall, mbps: o.images.sysvol2.size / MB / Math.max(t.wall, 0.01), rssMB: t.rssKiB / 1024,
      addedMB: added, storedMB: (full.storedMB ?? 0) + added, note: 'no incremental: a whole new image (measured by bench.mjs)' });
    log(`partclone incr: ${t.wall.toFixed(2)} s, ${added.toFixed(1)} MB`);
  }
  rows.splice(rows.indexOf(full) + 1, 0, { wall: null, mbps: null, rssMB: null, addedMB: null, storedMB: null, note: '', ...r });
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------- remote targets
/**
 * cairn (first --mode) to a local Ceph RGW and to a local OpenSSH sshd, and restic's SFTP
 * backend on the same sshd: bench/remote.bench-run.test.ts run by vitest with
 * bench/vitest.config.ts (it imports the test harnesses test/s3/servers.ts and @cairn/target-sftp/testing).
 * Its results file becomes rows of the same table; a summary compares each with the local target.
 */
function remoteRuns(o, mode) {
  const dir = path.join(o.work, 'remote');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const cfgFile = path.join(dir, 'config.json');
  const outFile = path.join(dir, 'results.json');
  const restic = o.peers && has('restic');
  fs.writeFileSync(cfgFile, JSON.stringify({
    images: { sysvol: o.images.sysvol.path, sysvol2: o.images.sysvol2.path }, mode, level: o.level,
    work: path.join(dir, 'work'), out: outFile, s3: true, sftp: true, restic,
  }, null, 2));
  const vitest = path.join(ROOT, 'node_modules/.bin/vitest');
  const cmd = `${q(vitest)} run --config ${q(path.join(ROOT, 'bench/vitest.config.ts'))}`;
  log(`remote: CAIRN_BENCH_REMOTE=${cfgFile} ${cmd}`);
  const r = spawnSync('bash', ['-c', cmd], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 64 * MB,
    env: { ...process.env, CAIRN_BENCH_REMOTE: cfgFile, FORCE_COLOR: '0', NO_COLOR: '1' },
  });
  process.stdout.write((r.stdout ?? '').split('\n').filter((l) => l.startsWith('bench remote:') || /✓|×|FAIL|Error/.test(l)).map((l) => `  ${l}\n`).join(''));
  let res = null;
  try { res = JSON.parse(fs.readFileSync(outFile, 'utf8')); } catch { /* below */ }
  if (!res) {
    failures++;
    log(`remote: no results (vitest exit ${r.status}):\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15).join('\n')}`);
    row({ tool: `cairn ${mode}`, step: 'remote targets', note: `FAILED: vitest exit ${r.status}, no results` });
    if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
    return { error: `vitest exit ${r.status}` };
  }
  if (r.status !== 0) log(`remote: vitest exited with ${r.status}`);
  const label = { init: 'init', full: 'full (sysvol)', incr: 'incr (sysvol2)', restore: 'restore latest' };
  const bytes = { full: o.images.sysvol.size, incr: o.images.sysvol2.size, restore: o.images.sysvol2.size };
  for (const t of res.targets) {
    const tool = `${t.tool} → ${t.target}`;
    if (t.error && !Object.keys(t.steps).length) {
      if (t.tool.startsWith('cairn') && !/not installed/.test(t.error)) failures++;
      row({ tool, step: 'all', note: `${/not installed/.test(t.error) ? 'skipped' : 'FAILED'}: ${t.error.split('\n')[0].slice(0, 140)}` });
      continue;
    }
    for (const [step, m] of Object.entries(t.steps)) {
      const note = [];
      if (m.failed) { note.push(`FAILED: ${(m.error ?? '').split('\n').filter(Boolean).pop()?.slice(0, 140) ?? ''}`); if (t.tool.startsWith('cairn')) failures++; }
      if (step === 'restore' && !m.failed) {
        note.push(m.verified ? `${m.verifiedBy} OK` : `${m.verifiedBy} FAILED`);
        if (!m.verified && t.tool.startsWith('cairn')) failures++;
      }
      if (m.serverCpuS != null) note.push(`${m.cpuS?.toFixed(1)} CPU-s here, ${m.serverCpuS.toFixed(1)} in the server`);
      row({ tool, step: label[step] ?? step, wall: m.wall ?? null, rssMB: m.rssMB ?? null, storedMB: m.storedMB ?? null, addedMB: m.addedMB ?? null,
        cpuS: m.cpuS ?? null, serverCpuS: m.serverCpuS ?? null,
        mbps: bytes[step] && m.wall != null && !m.failed ? bytes[step] / MB / Math.max(m.wall, 0.01) : null, note: note.join(', ') });
    }
    if (t.error) row({ tool, step: 'error', note: `FAILED: ${t.error.split('\n')[0].slice(0, 140)}` });
  }
  if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
  return res;
}

// ---------------------------------------------------------------------------- lifecycle
/**
 * The lifecycle step: 10 versions of one working copy of the volume (o.work/lifecycle/volume.img;
 * the corpus is never modified), each backed up by cairn (first --mode) and by restic (the whole
 * image from stdin, as peers.sh does); then both keep the last 3 (`cairn forget --keep-last 3` and
 * `cairn prune`; `restic forget --keep-last 3 --prune`). Version 1 is sysvol.img, version 2
 * sysvol2.img (corpus.sh's day of use); versions 3-10 each add one seeded day of use (dayOfUse).
 * The history is rebuilt in every one of the --runs runs.
 */
const LIFE = { versions: 10, keep: 3, downloadMB: 24, logMBPerDay: 2, upgrades: 20, inPlaceBlocks: 32 };
const LIFE_HISTORY = `${LIFE.versions} versions: sysvol.img, sysvol2.img, then ${LIFE.versions - 2} seeded days of use ` +
  `written with debugfs, each: a new ${LIFE.downloadMB} MiB download (random), the one of two days before deleted, ` +
  `an application log grown by ${LIFE.logMBPerDay} MiB (rewritten), ${LIFE.upgrades} binaries of /usr/bin upgraded ` +
  `(new file with a few patched bytes at new blocks, old one deleted), ${LIFE.inPlaceBlocks} 4 KiB blocks of ` +
  '/home/user/photos.bin overwritten in place';

/** A small seeded PRNG (mulberry32): the same seed gives the same day of use on every machine. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n seeded pseudo-random (incompressible) bytes: the AES-128-CTR keystream of a key made from the seed. */
function seededBytes(seed, n) {
  const key = crypto.createHash('sha256').update(`cairn bench ${seed}`).digest().subarray(0, 16);
  const c = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

/** The first `bytes` of an application log that grows every day: the same lines whatever the length. */
function seededLog(bytes) {
  const rnd = prng(1);
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const lines = [];
  for (let i = 0, n = 0; n < bytes; i++) {
    const line = `${new Date(Date.UTC(2026, 0, 1) + i * 250).toISOString()} app[${1000 + (i % 7)}]: ` +
      `${pick(['GET', 'POST', 'PUT'])} ${pick(['/api/items', '/api/users', '/login', '/static/app.js'])} ` +
      `${pick([200, 200, 200, 304, 404, 500])} ${Math.floor(rnd() * 5000)} ms user=${Math.floor(rnd() * 300)}\n`;
    lines.push(line);
    n += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

const pickDistinct = (xs, n, rnd) => {
  const chosen = new Set();
  while (chosen.size < Math.min(n, xs.length)) chosen.add(xs[Math.floor(rnd() * xs.length)]);
  return [...chosen];
};
const dq = (s) => `"${s}"`; // a host path in a debugfs command

/** Runs debugfs commands on an image (read-write with write: true); returns stdout; throws on any error message. */
function debugfs(img, cmds, { write = false, dir }) {
  const file = path.join(dir, 'debugfs.cmds');
  fs.writeFileSync(file, cmds.join('\n') + '\n');
  const r = sh(`debugfs ${write ? '-w ' : ''}-f ${q(file)} ${q(img)}`, { capture: true });
  const errors = r.stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l));
  if (r.status !== 0 || errors.length) throw new Error(`debugfs on ${img}: ${errors.slice(0, 3).join(' | ') || `exit ${r.status}`}`);
  return r.stdout;
}

/** Regular files of a folder of the image with their sizes: [{name, size}]. */
function listFiles(img, folder, dir) {
  return debugfs(img, [`ls -p ${folder}`], { dir }).split('\n').map((l) => l.split('/'))
    .filter((f) => f[2]?.startsWith('100') && /^[\w.+-]+$/.test(f[5])).map((f) => ({ name: f[5], size: Number(f[6]) }));
}

/**
 * A package upgrade: binaries of /usr/bin rewritten as new files (a few patched bytes) at new
 * blocks, the old ones deleted, as dpkg does (write beside, rename over). Returns debugfs commands.
 */
function upgradeCommands(img, rnd, tmp) {
  const bins = listFiles(img, '/usr/bin', tmp).filter((f) => f.size >= 8192 && f.size <= 4 * MB).map((f) => f.name);
  const chosen = pickDistinct(bins, LIFE.upgrades, rnd);
  debugfs(img, chosen.map((f) => `dump /usr/bin/${f} ${dq(path.join(tmp, f))}`), { dir: tmp });
  for (const f of chosen) {
    const file = path.join(tmp, f);
    const data = fs.readFileSync(file);
    for (let i = 0; i < 8; i++) data.set(seededBytes(`${f} ${rnd()}`, 16), Math.floor(rnd() * (data.length - 16)));
    fs.writeFileSync(file, data, { mode: 0o755 });
  }
  return ['cd /usr/bin', ...chosen.flatMap((f) => [`write ${dq(path.join(tmp, f))} .${f}.new`, `rm ${f}`, `ln .${f}.new ${f}`, `unlink .${f}.new`])];
}

/** A database edited in place: random 4 KiB pieces of /home/user/photos.bin overwritten where they lie. */
function editInPlace(img, rnd, day, tmp) {
  const bs = Number(debugfs(img, ['stats'], { dir: tmp }).match(/Block size:\s+(\d+)/)[1]);
  const photos = listFiles(img, '/home/user', tmp).find((f) => f.name === 'photos.bin');
  if (!photos) throw new Error('/home/user/photos.bin is not in the corpus volume');
  const blocks = pickDistinct([...Array(Math.floor(photos.size / bs)).keys()], LIFE.inPlaceBlocks, rnd);
  const out = debugfs(img, blocks.map((b) => `bmap /home/user/photos.bin ${b}`), { dir: tmp });
  const physical = out.split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number);
  if (physical.length !== blocks.length) throw new Error(`debugfs bmap: ${physical.length} of ${blocks.length} blocks`);
  const fd = fs.openSync(img, 'r+');
  try {
    physical.forEach((p, i) => fs.writeSync(fd, seededBytes(`photos ${day} ${i}`, 4096), 0, 4096, p * bs));
  } finally { fs.closeSync(fd); }
}

/** One seeded day of use (versions 3 and later), written into the image with debugfs (no mount, no root). */
function dayOfUse(img, day, tmp) {
  const rnd = prng(day);
  const download = path.join(tmp, 'download.bin');
  const log = path.join(tmp, 'app.log');
  fs.writeFileSync(download, seededBytes(`download ${day}`, LIFE.downloadMB * MB));
  fs.writeFileSync(log, seededLog(day * LIFE.logMBPerDay * MB));
  const cmds = ['cd /home/user', `write ${dq(download)} download-${day}.bin`];
  if (day - 2 >= 3) cmds.push(`rm download-${day - 2}.bin`);
  if (day > 3) cmds.push('rm app.log');
  cmds.push(`write ${dq(log)} app.log`, ...upgradeCommands(img, rnd, tmp));
  debugfs(img, cmds, { write: true, dir: tmp });
  editInPlace(img, rnd, day, tmp);
}

/** Makes version `day` (1-based) of the working copy. */
function makeVersion(o, img, day, tmp) {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  if (day <= 2) {
    const src = day === 1 ? o.images.sysvol.path : o.images.sysvol2.path;
    if (sh(`cp --sparse=always ${q(src)} ${q(img)}`).status !== 0) throw new Error(`could not copy ${src}`);
  } else dayOfUse(img, day, tmp);
  fs.rmSync(tmp, { recursive: true, force: true });
}

const dayTime = (day) => new Date(Date.UTC(2026, 0, day, 2)); // the snapshot of version `day`, one a day

/** cairn on the working copy: one job, every step timed; a failed step throws. */
function cairnLife(o, dir, img, mode) {
  const repo = path.join(dir, 'cairn-repo');
  const job = path.join(dir, 'job.json');
  fs.writeFileSync(job, JSON.stringify({
    name: 'lifecycle', source: { type: 'volume', path: img, mode }, compression: { type: 'zstd', level: o.level },
    target: { type: 'local', path: repo }, password: { env: 'CAIRN_PASSWORD' },
  }, null, 2));
  const run = (step, ...args) => {
    const t = timed(['node', CAIRN, ...args], { env: { CAIRN_PASSWORD: 'bench' }, cwd: dir });
    if (!t.ok) throw new Error(`cairn ${step} failed (exit ${t.status}): ${(t.stderr || t.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    let json = null;
    try { json = JSON.parse(t.stdout); } catch { /* not --json */ }
    return { wall: t.wall, rssMB: t.rssKiB / 1024, json };
  };
  return {
    repo,
    init: () => run('init', 'init', job),
    backup: (day) => run(`backup of version ${day}`, 'backup', job, '--json', '--time', dayTime(day).toISOString()),
    forget: () => run('forget', 'forget', job, '--keep-last', String(LIFE.keep), '--json'),
    prune: () => run('prune', 'prune', job, '--json'),
    restore: (to) => run('restore', 'restore', job, 'latest', '--to', to, '--json'),
  };
}

/** restic on the same working copy, the image from stdin as in peers.sh; a failed step throws. */
function resticLife(dir, img) {
  const repo = path.join(dir, 'restic-repo');
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(dir, 'restic-cache') };
  const run = (step, args, quiet = true) => {
    const t = timed(['bash', '-c', `restic ${quiet ? '-q ' : ''}-r ${q(repo)} ${args}`], { env });
    if (!t.ok) throw new Error(`restic ${step} failed (exit ${t.status}): ${t.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    return { wall: t.wall, rssMB: t.rssKiB / 1024, stdout: t.stdout };
  };
  const time = (day) => dayTime(day).toISOString().replace('T', ' ').slice(0, 19);
  return {
    repo,
    init: () => run('init', 'init'),
    backup: (day) => run(`backup of version ${day}`, `backup --stdin --stdin-filename sysvol.img --time ${q(time(day))} < ${q(img)}`),
    forgetPrune: () => { // with prune's own figures: "to repack: 123 blobs / 45.6 MiB", ...
      const { stdout, ...t } = run('forget --prune', `forget --keep-last ${LIFE.keep} --prune`, false);
      const stats = stdout.split('\n').map((l) => l.match(/^(to repack|this removes|to delete|total prune|remaining|unused size after prune):\s+(.*)$/)).filter(Boolean);
      return { ...t, prune: Object.fromEntries(stats.map((m) => [m[1], m[2].trim()])) };
    },
    dumpIdentical: () => sh(`restic -q -r ${q(repo)} dump latest sysvol.img | cmp - ${q(img)}`, { capture: true, env }).status === 0,
  };
}

/** cairn forget, then prune, sizes around both, then the newest snapshot restored and verified (throws if it differs). */
function cairnForgetPrune(cairn, m, img, mode, dir) {
  m.beforeB = duBytes(cairn.repo);
  const f = cairn.forget();
  m.forget = { wall: f.wall, rssMB: f.rssMB, removed: f.json?.removed?.length ?? null };
  m.afterForgetB = duBytes(cairn.repo);
  const p = cairn.prune();
  m.prune = { wall: p.wall, rssMB: p.rssMB, result: p.json };
  m.afterB = duBytes(cairn.repo);
  log(`lifecycle cairn: forget ${f.wall.toFixed(2)} s, prune ${p.wall.toFixed(2)} s; repository ` +
    `${(m.beforeB / MB).toFixed(1)} → ${(m.afterB / MB).toFixed(1)} MB`);
  const restored = path.join(dir, 'restored.img');
  cairn.restore(restored);
  const v = verifyRestore(mode, restored, img);
  fs.rmSync(restored, { force: true });
  m.verified = { ok: v.ok, method: v.method, line: v.line };
  if (!v.ok) throw new Error(`the newest snapshot after prune: ${v.line}\n${v.stderr.trim().split('\n').slice(-5).join('\n')}`);
  log(`lifecycle cairn: newest snapshot after prune restored, ${v.line}`);
}

function resticForgetPrune(restic, m, img) {
  m.beforeB = duBytes(restic.repo);
  m.forgetPrune = restic.forgetPrune();
  m.afterB = duBytes(restic.repo);
  m.identical = restic.dumpIdentical();
  log(`lifecycle restic: forget --prune ${m.forgetPrune.wall.toFixed(2)} s; repository ` +
    `${(m.beforeB / MB).toFixed(1)} → ${(m.afterB / MB).toFixed(1)} MB; dump latest ${m.identical ? 'identical' : 'DIFFERS'}`);
}

/** One run: the history, backed up by both tools version by version, then forget and prune. */
function lifecycleRun(o, mode, withRestic, dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'volume.img');
  const cairn = cairnLife(o, dir, img, mode);
  const restic = withRestic ? resticLife(dir, img) : null;
  const m = { cairn: { backups: [] }, restic: restic ? { backups: [] } : null };
  const soft = (fn) => { // a restic failure is noted, and restic left out of the rest of the run
    if (!restic || m.restic.error) return;
    try { fn(); } catch (e) { m.restic.error = e.message; log(`lifecycle restic: ${e.message}`); }
  };
  cairn.init();
  soft(() => restic.init());
  for (let day = 1; day <= LIFE.versions; day++) {
    makeVersion(o, img, day, path.join(dir, 'tmp'));
    sh(`cat ${q(img)} > /dev/null`); // warm the page cache, as peers.sh does
    const b = cairn.backup(day);
    m.cairn.backups.push({ wall: b.wall, addedMB: (b.json?.bytesAdded ?? NaN) / MB, storedMB: duBytes(cairn.repo) / MB });
    soft(() => { const { stdout, ...t } = restic.backup(day); m.restic.backups.push({ ...t, storedMB: duBytes(restic.repo) / MB }); });
    const said = (x) => `${x.wall.toFixed(2)} s, repository ${x.storedMB.toFixed(1)} MB`;
    log(`lifecycle version ${day}/${LIFE.versions}: cairn ${said(m.cairn.backups[day - 1])}` +
      (m.restic?.backups[day - 1] ? `; restic ${said(m.restic.backups[day - 1])}` : ''));
  }
  cairnForgetPrune(cairn, m.cairn, img, mode, dir);
  soft(() => resticForgetPrune(restic, m.restic, img));
  return m;
}

/** The lifecycle step, --runs times; returns the summary for the results (rows are added too). */
function lifecycle(o, mode, withRestic) {
  const dir = path.join(o.work, 'lifecycle');
  const runs = [];
  for (let run = 1; run <= o.runs; run++) {
    log(`lifecycle: run ${run}/${o.runs}, cairn ${mode}${withRestic ? ' and restic' : ''}: ${LIFE_HISTORY}`);
    try {
      runs.push({ run, ...lifecycleRun(o, mode, withRestic, dir) });
    } catch (e) {
      failures++;
      log(`lifecycle: FAILED: ${e.message}`);
      runs.push({ run, error: e.message });
    }
  }
  if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
  const summary = lifecycleSummary(runs, mode);
  lifecycleRows(summary);
  return summary;
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/** Medians over the runs that succeeded (restic: over the runs where restic did). */
function lifecycleSummary(runs, mode) {
  const ok = runs.filter((r) => !r.error);
  const med = (rs, f) => median(rs.map(f));
  const common = (rs, t) => ({
    runs: rs.length,
    backupsS: med(rs, (r) => sum(r[t].backups.map((b) => b.wall))),
    firstBackupS: med(rs, (r) => r[t].backups[0].wall),
    laterBackupS: med(rs, (r) => median(r[t].backups.slice(1).map((b) => b.wall))),
    beforeMB: med(rs, (r) => r[t].beforeB / MB),
    afterMB: med(rs, (r) => r[t].afterB / MB),
    freedMB: med(rs, (r) => (r[t].beforeB - r[t].afterB) / MB),
    laterAddedMB: med(rs, (r) => median(r[t].backups.slice(1).map((b, i) => b.storedMB - r[t].backups[i].storedMB))),
  });
  const cairn = !ok.length ? null : {
    ...common(ok, 'cairn'),
    forgetS: med(ok, (r) => r.cairn.forget.wall),
    forgetRssMB: med(ok, (r) => r.cairn.forget.rssMB),
    pruneS: med(ok, (r) => r.cairn.prune.wall),
    forgetPruneS: med(ok, (r) => r.cairn.forget.wall + r.cairn.prune.wall),
    pruneRssMB: med(ok, (r) => r.cairn.prune.rssMB),
    afterForgetMB: med(ok, (r) => r.cairn.afterForgetB / MB),
    pruneBytesFreedMB: med(ok, (r) => (r.cairn.prune.result?.bytesFreed ?? NaN) / MB),
    pruneBytesWrittenMB: med(ok, (r) => (r.cairn.prune.result?.bytesWritten ?? NaN) / MB),
    prunePacks: Object.fromEntries(['stored', 'unused', 'repacked'].map((k) => [k, med(ok, (r) => r.cairn.prune.result?.packs?.[k] ?? NaN)])),
    verified: ok.every((r) => r.cairn.verified.ok) ? ok[0].cairn.verified.method : 'FAILED',
  };
  const rok = ok.filter((r) => r.restic && !r.restic.error);
  const restic = !rok.length ? null : {
    ...common(rok, 'restic'),
    forgetPruneS: med(rok, (r) => r.restic.forgetPrune.wall),
    forgetPruneRssMB: med(rok, (r) => r.restic.forgetPrune.rssMB),
    dumpIdentical: rok.every((r) => r.restic.identical),
    prune: rok.at(-1).restic.forgetPrune.prune, // restic's own figures, of the last run
  };
  const resticError = ok.find((r) => r.restic?.error)?.restic.error ?? null;
  const ratio = cairn && restic ? cairn.forgetPruneS / restic.forgetPruneS : null;
  return { mode, versions: LIFE.versions, keepLast: LIFE.keep, history: LIFE_HISTORY, historyBuilt: 'once per run',
    cairn, restic, resticError, forgetPruneRatio: ratio, runs };
}

function lifecycleRows(s) {
  const tool = `cairn ${s.mode}`;
  const n = (rs) => (rs > 1 ? `, median of ${rs}` : '');
  const failed = s.runs.filter((r) => r.error);
  if (failed.length) row({ tool, step: 'lifecycle', note: `FAILED in ${failed.length}/${s.runs.length} runs: ${failed[0].error.split('\n')[0].slice(0, 140)}` });
  const backups = (t, x) => row({ tool: t, step: `lifecycle: ${LIFE.versions} backups`, wall: x.backupsS, storedMB: x.beforeMB,
    note: `first ${fmt(x.firstBackupS, 2)} s, then ${fmt(x.laterBackupS, 2)} s and +${fmt(x.laterAddedMB, 1)} MB each${n(x.runs)}` });
  const c = s.cairn;
  if (c) {
    backups(tool, c);
    row({ tool, step: `lifecycle: forget --keep-last ${LIFE.keep}`, wall: c.forgetS, rssMB: c.forgetRssMB, addedMB: c.afterForgetMB - c.beforeMB, storedMB: c.afterForgetMB,
      note: `${LIFE.versions - LIFE.keep} snapshots removed${n(c.runs)}` });
    const p = c.prunePacks;
    row({ tool, step: 'lifecycle: prune', wall: c.pruneS, rssMB: c.pruneRssMB, addedMB: c.afterMB - c.afterForgetMB, storedMB: c.afterMB,
      note: `bytesFreed ${fmt(c.pruneBytesFreedMB, 1)} MB${p ? `; packs ${fmt(p.stored, 0)}: ${fmt(p.unused, 0)} unused deleted, ${fmt(p.repacked, 0)} repacked` : ''} ` +
        `(${fmt(c.pruneBytesWrittenMB, 1)} MB written)${n(c.runs)}` });
    row({ tool, step: 'lifecycle: forget + prune', wall: c.forgetPruneS, addedMB: -c.freedMB, storedMB: c.afterMB,
      note: `freed ${fmt(c.freedMB, 1)} MB; newest snapshot restored: ${c.verified}${n(c.runs)}` });
  }
  const r = s.restic;
  if (r) {
    backups('restic', r);
    row({ tool: 'restic', step: `lifecycle: forget --prune`, wall: r.forgetPruneS, rssMB: r.forgetPruneRssMB, addedMB: -r.freedMB, storedMB: r.afterMB,
      note: `forget --keep-last ${LIFE.keep} --prune; freed ${fmt(r.freedMB, 1)} MB; packs to repack ${r.prune?.['to repack'] ?? 'n/a'} (last run); ` +
        `dump latest: cmp ${r.dumpIdentical ? 'identical' : 'DIFFERS'}${n(r.runs)}` });
  } else if (s.resticError) row({ tool: 'restic', step: 'lifecycle', note: `FAILED: ${s.resticError.slice(0, 140)}` });
}

function lifecycleText(s) {
  const c = s.cairn ?? {};
  const r = s.restic ?? {};
  const f = (x, d = 1, unit = '') => (x == null || Number.isNaN(x) ? 'n/a' : `${x.toFixed(d)}${unit}`);
  const pct = (x) => (x.freedMB == null ? '' : ` (${f((100 * x.freedMB) / x.beforeMB, 0)} %)`);
  const lines = [`Lifecycle: ${s.history}; then keep the last ${s.keepLast} (median of the runs; history rebuilt in every run):`,
    `  ${''.padEnd(26)}${`cairn ${s.mode}`.padEnd(24)}restic`];
  const line = (label, a, b = '') => lines.push(`  ${label.padEnd(26)}${a.padEnd(24)}${b}`);
  line(`${s.versions} backups`, f(c.backupsS, 2, ' s'), f(r.backupsS, 2, ' s'));
  const each = (x) => `${f(x.laterBackupS, 2, ' s')}, +${f(x.laterAddedMB, 1, ' MB')}`;
  line(`each of versions 2-${s.versions}`, each(c), each(r));
  line(`forget --keep-last ${s.keepLast}`, f(c.forgetS, 2, ' s'), '');
  line('prune', f(c.pruneS, 2, ' s'), '');
  line('forget + prune', f(c.forgetPruneS, 2, ' s'), `${f(r.forgetPruneS, 2, ' s')} (forget --prune)`);
  line('repository before', f(c.beforeMB, 1, ' MB'), f(r.beforeMB, 1, ' MB'));
  line('repository after', f(c.afterMB, 1, ' MB'), f(r.afterMB, 1, ' MB'));
  line('freed', f(c.freedMB, 1, ' MB') + pct(c), f(r.freedMB, 1, ' MB') + pct(r));
  if (s.forgetPruneRatio != null) lines.push(`  forget + prune time, cairn / restic: ${s.forgetPruneRatio.toFixed(2)}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------- goals
const find = (tool, step) => rows.find((r) => r.tool === tool && r.step === step && r.wall != null) ?? null;
const STEPS = [['full', 'full (sysvol)'], ['incr', 'incr (sysvol2)'], ['restore', 'restore latest']];

/** Issue 3's goals, from the rows: cairn used stored ÷ partclone stored ≤ 1; cairn ÷ restic wall ≤ 1/3. */
function goals(mode) {
  const tool = `cairn ${mode}`;
  const ratio = (a, b) => (a != null && b != null && b > 0 ? a / b : null);
  const g = { mode, stored: {}, time: {} };
  for (const [k, step] of STEPS.slice(0, 2)) {
    const c = find(tool, step); const p = find('partclone|zstd', step);
    g.stored[k] = { cairnMB: c?.storedMB ?? null, partcloneMB: p?.storedMB ?? null, ratio: ratio(c?.storedMB, p?.storedMB), goal: 1 };
  }
  for (const [k, step] of STEPS) {
    const c = find(tool, step); const r = find('restic', step);
    g.time[k] = { cairnS: c?.wall ?? null, resticS: r?.wall ?? null, ratio: ratio(c?.wall, r?.wall), goal: 1 / 3 };
  }
  const served = find(tool, 'nbdcopy of cairn serve'); const restored = find(tool, 'restore latest');
  g.served = { serveMBps: served?.mbps ?? null, restoreMBps: restored?.mbps ?? null, ratio: ratio(served?.mbps, restored?.mbps), goal: 0.8 };
  return g;
}

function goalsText(g) {
  const v = (x, d = 2) => (x == null ? 'n/a' : x.toFixed(d));
  const verdict = (x, goal) => (x == null ? '' : x <= goal + 1e-9 ? '  met' : '  NOT met');
  const lines = [`Goals (issue 3), cairn ${g.mode}:`];
  lines.push(`  stored after full:  cairn ${v(g.stored.full.cairnMB, 1)} MB / partclone|zstd ${v(g.stored.full.partcloneMB, 1)} MB = ${v(g.stored.full.ratio, 3)}   (goal <= 1)${verdict(g.stored.full.ratio, 1)}`);
  lines.push(`  stored after incr:  cairn ${v(g.stored.incr.cairnMB, 1)} MB / partclone|zstd full+incr ${v(g.stored.incr.partcloneMB, 1)} MB = ${v(g.stored.incr.ratio, 3)}   (goal <= 1)${verdict(g.stored.incr.ratio, 1)}`);
  for (const [k] of STEPS) {
    const t = g.time[k];
    lines.push(`  ${`${k} time:`.padEnd(19)} cairn ${v(t.cairnS)} s / restic ${v(t.resticS)} s = ${v(t.ratio, 3)}   (goal <= 0.33)${verdict(t.ratio, 1 / 3)}`);
  }
  const s = g.served;
  if (s) lines.push(`  serve (issue 16):  nbdcopy ${v(s.serveMBps, 0)} MB/s / restore ${v(s.restoreMBps, 0)} MB/s = ${v(s.ratio, 3)}   (goal >= 0.8)${s.ratio == null ? '' : s.ratio >= s.goal ? '  met' : '  NOT met'}`);
  return lines.join('\n');
}

/** Remote vs local throughput (MB/s of image size) per step, for the notes of issues 4 and 5. */
function remoteSummary(mode) {
  const local = `cairn ${mode}`;
  const out = [];
  const targets = [...new Set(rows.filter((r) => r.tool.includes(' → ')).map((r) => r.tool))];
  for (const tool of targets) {
    const base = tool.startsWith('restic') ? 'restic' : local;
    const e = { tool, versus: `${base} (local)`, steps: {} };
    for (const [k, step] of STEPS) {
      const r = find(tool, step); const l = find(base, step);
      e.steps[k] = { wall: r?.wall ?? null, mbps: r?.mbps ?? null, localWall: l?.wall ?? null, localMbps: l?.mbps ?? null,
        ratio: r?.mbps && l?.mbps ? r.mbps / l.mbps : null, ...cpuCeiling(r, l) };
    }
    out.push(e);
  }
  return out;
}

/**
 * What the machine's cores allow a remote step at most, from the CPU time it took: the loopback
 * server runs on the same cores as cairn, so the step cannot take less than (cairn's CPU-seconds
 * + the server's) / cores. `ceiling` is the local time over that floor: the best ratio to local
 * this machine permits for the work the run did (1 when the cores are not the limit).
 */
function cpuCeiling(remote, local) {
  if (remote?.cpuS == null || remote?.serverCpuS == null || !local?.wall) return {};
  const floor = (remote.cpuS + remote.serverCpuS) / os.cpus().length;
  return { cpuS: remote.cpuS, serverCpuS: remote.serverCpuS, localCpuS: local.cpuS ?? null, floorS: floor, ceiling: Math.min(1, local.wall / floor) };
}

function remoteText(summary) {
  if (!summary.length) return '';
  const f = (x, d = 0) => (x == null ? 'n/a' : x.toFixed(d));
  const lines = ['Remote targets vs local (MB/s of image size; ratio = remote / local throughput):'];
  for (const e of summary) {
    const parts = STEPS.map(([k]) => { const s = e.steps[k]; return `${k} ${f(s.mbps)} vs ${f(s.localMbps)} (${f(s.ratio, 2)}${s.ceiling != null ? `, at most ${f(s.ceiling, 2)}` : ''})`; });
    lines.push(`  ${e.tool.padEnd(34)} vs ${e.versus.padEnd(20)} ${parts.join('   ')}`);
  }
  lines.push(`  "at most": the local time over (the tool's CPU-seconds + the server's) / ${os.cpus().length} cores, the fastest the shared cores allow for that work.`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------- output
function fmt(v, digits) {
  if (v == null) return '';
  return digits === 0 ? String(Math.round(v)) : v.toFixed(digits);
}

function table() {
  const head = ['tool', 'step', 'wall s', 'MB/s', 'RSS MB', 'added MB', 'stored MB', 'note'];
  const body = rows.map((r) => [r.tool, r.step, fmt(r.wall, 2), fmt(r.mbps, 0), fmt(r.rssMB, 0),
    fmt(r.addedMB, r.addedMB != null && r.addedMB < 10 ? 3 : 1), fmt(r.storedMB, 1), r.note]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const right = new Set([2, 3, 4, 5, 6]);
  const line = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  return [line(head), w.map((n, i) => (i === w.length - 1 ? '-'.repeat(Math.max(4, n)) : '-'.repeat(n))).join('  '), ...body.map(line)].join('\n');
}

function versions() {
  const v = (cmd) => sh(`${cmd} 2>&1 | head -1`, { capture: true }).stdout.trim() || null;
  return {
    node: process.version,
    cairnCommit: sh(`git -C ${q(ROOT)} rev-parse HEAD 2>/dev/null`, { capture: true }).stdout.trim() || null,
    zstd: has('zstd') ? v('zstd --version') : null,
    restic: has('restic') ? v('restic version') : null,
    borg: has('borg') ? v('borg --version') : null,
    partclone: has('partclone.ext4') ? v('partclone.ext4 -v') : null,
    radosgw: has('radosgw') ? v('radosgw --version') : null,
    openssh: has('ssh') ? v('ssh -V') : null,
  };
}

// ---------------------------------------------------------------------------- files
/** The files part (bench/files.bench.mjs) with the tools that are installed; null when it cannot run. */
function runFiles(o, peers) {
  if (process.getuid?.() !== 0) { log('files: skipped (mounting the corpus images needs root)'); return null; }
  const missing = o.filesTools.filter((t) => t !== 'cairn' && !peers.includes(t));
  if (missing.length) log(`files: continuing without ${missing.join(', ')} (not installed, or --no-peers)`);
  const tools = o.filesTools.filter((t) => !missing.includes(t));
  try {
    return filesPart({ ...o, filesTools: tools }, { sh, q, timed, median, log, duBytes, MB, CAIRN });
  } catch (e) {
    failures++;
    log(`files: FAILED: ${e.stack ?? e.message}`);
    return null;
  }
}

// ---------------------------------------------------------------------------- variants
/** The variants part (bench/variants.bench.mjs): its rows join the table; null when it cannot run. */
function runVariants(o, peers) {
  if (process.getuid?.() !== 0) { log('variants: skipped (building and checking them needs root: loop devices, mount)'); return null; }
  try {
    const peerTools = peers.filter((p) => (o.variantPeers ?? ['restic', 'partclone']).includes(p));
    const v = variantsPart({ ...o, peerTools }, { sh, q, timed, median, log, duBytes, allocBytes, MB, CAIRN, ROOT });
    rows.push(...v.rows.map((r) => ({ wall: null, mbps: null, rssMB: null, addedMB: null, storedMB: null, note: '', ...r })));
    failures += v.failures;
    return v.summary;
  } catch (e) {
    failures++;
    log(`variants: FAILED: ${e.stack ?? e.message}`);
    return null;
  }
}

// ---------------------------------------------------------------------------- scale
/** The scale part (bench/scale.bench.mjs): its rows join the table; null when it cannot run. */
function runScale(o) {
  if (process.getuid?.() !== 0) { log('scale: skipped (it needs root: loop mounts, dropping caches)'); return null; }
  try {
    const s = scalePart(o, { sh, q, timed, median, log, duBytes, allocBytes, MB, CAIRN, ROOT });
    rows.push(...s.rows.map((r) => ({ mbps: null, addedMB: null, storedMB: null, ...r })));
    failures += s.failures;
    return s.summary;
  } catch (e) {
    failures++;
    log(`scale: FAILED: ${e.stack ?? e.message}`);
    return null;
  }
}

// ---------------------------------------------------------------------------- main
function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.setup) {
    log('scripts/setup.sh (dependencies and build)');
    if (sh(`bash ${q(path.join(ROOT, 'scripts/setup.sh'))}`).status !== 0) die('scripts/setup.sh failed');
  }
  if (!fs.existsSync(path.join(ROOT, 'packages/core/dist/cli/main.js'))) die('cairn is not built; run bash scripts/setup.sh');

  const needed = aptEnsure(['time', 'e2fsprogs', 'zstd']);
  if (needed.length) die(`required packages missing: ${needed.join(' ')}`);
  let peers = [];
  if (o.peers) {
    const unavailable = aptEnsure(o.onlyLifecycle ? ['restic'] : ['restic', 'borgbackup', 'partclone']);
    const status = { restic: has('restic'), borg: has('borg'), partclone: has('partclone.ext4') };
    peers = Object.keys(status).filter((k) => status[k]);
    if (unavailable.length) log(`continuing without: ${unavailable.join(' ')}`);
  }

  fs.mkdirSync(o.work, { recursive: true });
  if (o.quick) buildQuickCorpus(o.corpus);
  else buildSharedCorpus(o.corpus);
  const image = (name) => {
    const p = path.join(o.corpus, name);
    if (!fs.existsSync(p)) die(`${p} is missing; remove ${o.corpus} and run again`);
    return { path: p, size: fs.statSync(p).size, allocated: allocBytes(p) };
  };
  o.images = { sysvol: image('sysvol.img'), sysvol2: image('sysvol2.img') };
  for (const [k, v] of Object.entries(o.images)) {
    log(`${k}.img: ${(v.size / MB).toFixed(0)} MB, ${(v.allocated / MB).toFixed(0)} MB allocated`);
  }

  const started = Date.now();
  const loadAtStart = os.loadavg();
  if (loadAtStart[0] > 0.5 * os.cpus().length) {
    log(`note: load average is ${loadAtStart[0].toFixed(1)} on ${os.cpus().length} cores; other work on this machine will skew the timings`);
  }
  if (!o.onlyLifecycle && !o.onlyFiles && !o.onlyVariants && !o.onlyScale) {
    for (const mode of o.modes) cairnRuns(o, o.images, mode);
    if (o.peers) {
      zstdPeer(o, o.images);
      if (peers.length) sharedPeers(o, peers);
      else log('restic, borg and partclone are not installed; skipping peers.sh');
      if (peers.includes('partclone')) partcloneIncr(o);
    }
  }
  const files = o.files ? runFiles(o, peers) : null;
  const variants = o.variantsPart ? runVariants(o, peers) : null;
  const life = o.lifecycle ? lifecycle(o, o.modes[0], peers.includes('restic')) : null;
  let remote = null;
  if (o.remote && !o.onlyLifecycle) remote = remoteRuns(o, o.modes[0]);
  const boot = o.boot !== false && !o.onlyLifecycle && !o.quick ? bootRuns(o) : null;
  const scale = o.scale ? runScale(o) : null;
  const goal = o.onlyLifecycle || o.onlyFiles || o.onlyVariants || o.onlyScale ? null : goals(o.modes[0]);
  const remoteCmp = remoteSummary(o.modes[0]);

  const title = `cairn bench — ${o.quick ? 'quick corpus' : 'shared corpus'} ${o.corpus} ` +
    `(sysvol.img ${(o.images.sysvol.size / MB).toFixed(0)} MB), ${os.cpus().length} cores, ` +
    `${o.runs} cairn run(s), zstd level ${o.level}`;
  console.log(`\n${title}`);
  if (rows.length) console.log(`\n${table()}\n\n` + 'MB = 2^20 bytes. MB/s = image size / wall. added = bytes this step added to the repository ' +
    '(cairn: bytesAdded from --json; peers: growth of the repository). stored = repository size on disk ' +
    'after the step (du; S3: sum of object sizes). RSS = peak resident set size of the process (/usr/bin/time %M). ' +
    'Restores write a file. "tool → target" rows: the same volume backed up to a local Ceph RGW (S3) or a local OpenSSH sshd (SFTP). ' +
    '"lifecycle" rows: a copy of the volume through 10 versions, then keep the last 3; their added = change of the repository size (du -sb; negative: freed).');
  if (goal) console.log(`\n${goalsText(goal)}`);
  if (variants) console.log(`\n${variantsGoalsText(variants)}`);
  if (scale) console.log(`\n${scaleGoalsText(scale)}`);
  if (files?.summary) console.log(`\n${filesTable(files.rows)}\n\n${filesLegend(files.summary)}\n\n${filesGoalsText(files.summary.goals)}`);
  if (life) console.log(`\n${lifecycleText(life)}`);
  if (remoteCmp.length) console.log(`\n${remoteText(remoteCmp)}`);
  if (boot) console.log(`\nBoot (issue 16), ${boot.accel}, median of ${boot.runs}: cairn boot ${boot.cairnMarkerS.toFixed(1)} s / QEMU on the image file ${boot.directMarkerS.toFixed(1)} s = ${boot.ratio.toFixed(2)}   (goal <= 1.5)${boot.ratio <= 1.5 ? '  met' : '  NOT met'}`);

  const out = o.out ?? path.join(ROOT, 'bench', 'results', `${stamp()}${o.quick ? '-quick' : ''}${o.onlyLifecycle ? '-lifecycle' : ''}${o.onlyFiles ? '-files' : ''}${o.onlyVariants ? '-variants' : ''}${o.onlyScale ? '-scale' : ''}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({
    date: new Date().toISOString(),
    title,
    options: { quick: o.quick, runs: o.runs, peerRuns: o.peerRuns, modes: o.modes, level: o.level, peers: o.peers, remote: o.remote,
      lifecycle: o.lifecycle, onlyLifecycle: o.onlyLifecycle, files: o.files, onlyFiles: o.onlyFiles, filesTools: o.filesTools, smallFiles: o.smallFiles,
      variantsPart: o.variantsPart, onlyVariants: o.onlyVariants, variants: o.variantsPart ? (o.variants ?? VARIANTS) : [], variantPeers: o.variantPeers ?? null,
      scale: o.scale, ...(o.scale && { scaleData: o.scaleData, scaleDisk: o.scaleDisk, scaleSnapshots: o.scaleSnapshots }) },
    machine: {
      cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, memMB: Math.round(os.totalmem() / MB),
      kernel: os.release(), loadAvgAtStart: loadAtStart, loadAvgAtEnd: os.loadavg(), ...versions(),
    },
    corpus: { dir: o.corpus, images: o.images },
    units: { MB: 1048576, wall: 's', mbps: 'MB/s of image size', rssMB: 'peak RSS' },
    durationS: Math.round((Date.now() - started) / 1000),
    goals: goal,
    lifecycle: life,
    files: files ? { ...files.summary, rows: files.rows } : null,
    variants,
    scale,
    remote: remote ? { comparison: remoteCmp, ...remote } : null,
    boot,
    rows,
  }, null, 2) + '\n');
  if (files?.failures) failures += files.failures;
  console.log(`\nsaved ${path.relative(process.cwd(), out) || out}`);
  if (failures) {
    console.error(`bench: ${failures} cairn failure(s); see the notes above`);
    process.exitCode = 1;
  }
}

main();
