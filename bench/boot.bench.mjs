#!/usr/bin/env node
// Boot time of the Debian test system (test/fixtures/debian-vm) from `cairn boot` (QEMU on
// `cairn serve` with an overlay) against QEMU booting the same image file directly (with
// snapshot=on, so the file is not changed). Measurement only; the goal is boot <= 1.5x direct.
//
//   node bench/boot.bench.mjs [--runs N] [--accel tcg|kvm] [--out FILE]
//
// Times: from starting the command to the guest's marker line on the serial console
// (CAIRN-BOOT-OK, printed by a unit late in the boot), and to QEMU's exit after the guest's
// poweroff. Results: bench/results/<date>T<time>-boot.json.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CAIRN = path.join(ROOT, 'packages/core/bin/cairn.js');
const MARKER = /CAIRN-BOOT-OK boot \d+ uptime ([\d.]+)\r?\n/;
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

function parseArgs(argv) {
  const options = { runs: 3, accel: 'tcg', out: path.join(ROOT, 'bench/results', `${new Date().toISOString().replaceAll(':', '').slice(0, 17)}-boot.json`) };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--runs') options.runs = Number(argv[++i]);
    else if (argv[i] === '--accel') options.accel = argv[++i];
    else if (argv[i] === '--out') options.out = path.resolve(argv[++i]);
    else throw new Error(`unknown option ${argv[i]} (see the comment at the top of ${fileURLToPath(import.meta.url)})`);
  }
  return options;
}

function must(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status}):\n${result.stderr}`);
  return result.stdout;
}

/** Runs a command until it exits; the seconds to the marker on its stdout and to its exit. */
function timeBoot(command, args, env) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let seen = '';
    let marker;
    let uptime;
    child.stdout.on('data', (data) => {
      seen = (seen + data.toString('utf8')).slice(-4096);
      const match = marker === undefined && MARKER.exec(seen);
      if (match) [marker, uptime] = [seconds(), Number(match[1])];
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 || marker === undefined) reject(new Error(`${command} ended with exit code ${code}${marker === undefined ? ' before the marker' : ''}:\n${seen}`));
      else resolve({ marker, exit: seconds(), guestUptime: uptime });
    });
  });
}

function directBoot(disk, accel, work) {
  const vars = path.join(work, 'OVMF_VARS.fd');
  copyFileSync(OVMF_VARS, vars);
  const args = ['-machine', 'q35', '-accel', accel, '-m', '1G', '-smp', '2', ...(accel === 'kvm' ? ['-cpu', 'host'] : []), '-nographic'];
  args.push('-drive', `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,file=${vars}`);
  args.push('-drive', `file=${disk},format=raw,if=virtio,cache=writeback,snapshot=on`, '-nic', 'none');
  return timeBoot('qemu-system-x86_64', args, {});
}

function cairnBoot(job, accel, work) {
  return timeBoot(process.execPath, [CAIRN, 'boot', job, 'latest', '--accel', accel, '--memory', '1G', '--cpus', '2', '--network', 'none'], { CAIRN_PASSWORD: 'bench', TMPDIR: work });
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const disk = must('bash', [path.join(ROOT, 'test/fixtures/debian-vm/build.sh')], { stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const work = mkdtempSync(path.join(tmpdir(), 'cairn-boot-bench-'));
  try {
    const job = path.join(work, 'job.json');
    const target = { type: 'local', path: path.join(work, 'repo') };
    writeFileSync(job, JSON.stringify({ name: 'debian-vm', source: { type: 'volume', path: disk, mode: 'used' }, compression: { type: 'zstd', level: 3 }, target, password: { env: 'CAIRN_PASSWORD' } }));
    const env = { ...process.env, CAIRN_PASSWORD: 'bench' };
    must(process.execPath, [CAIRN, 'init', job], { env });
    must(process.execPath, [CAIRN, 'backup', job], { env });
    const runs = { direct: [], cairn: [] };
    for (let i = 0; i < options.runs; i++) {
      runs.direct.push(await directBoot(disk, options.accel, work));
      runs.cairn.push(await cairnBoot(job, options.accel, work));
      console.log(`run ${i + 1}: direct ${runs.direct[i].marker.toFixed(1)} s, cairn boot ${runs.cairn[i].marker.toFixed(1)} s (to the marker)`);
    }
    const summary = { accel: options.accel, runs: options.runs, directMarkerS: median(runs.direct.map((r) => r.marker)), cairnMarkerS: median(runs.cairn.map((r) => r.marker)) };
    summary.ratio = summary.cairnMarkerS / summary.directMarkerS;
    console.log(`boot to the marker (median of ${options.runs}, ${options.accel}): direct ${summary.directMarkerS.toFixed(1)} s, cairn boot ${summary.cairnMarkerS.toFixed(1)} s: ${summary.ratio.toFixed(2)}x (goal <= 1.5x)`);
    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, JSON.stringify({ date: new Date().toISOString(), disk, summary, runs }, null, 2) + '\n');
    console.log(`results: ${options.out}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`boot bench: ${err.message}`);
  process.exitCode = 1;
});
