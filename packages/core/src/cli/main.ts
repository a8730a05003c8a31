import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { yargs, type Argv } from '../vendor.js';
import { CairnError, ExitCode, UsageError } from '../errors.js';
import { Engine, type LoadedJob } from '../engine.js';
import type { Logger } from '../services.js';
import { ProgressBar, formatBytes } from './progress-bar.js';
import { readSecret } from '../job/secrets.js';
import type { SecretRef } from '../target.js';
import type { SnapshotManifest } from '../repository/snapshot.js';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CORE_VERSION: string = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;
/** plugins.json of the cairn installation (the workspace root). */
const DEFAULT_PLUGINS_FILE = resolve(PACKAGE_ROOT, '../../plugins.json');

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

interface GlobalOptions {
  json: boolean;
  plugins?: string;
  verbose: boolean;
}

function parser(args: string[]): Argv<GlobalOptions> {
  return yargs(args)
    .scriptName('cairn')
    .usage('$0 <command> [options]\n\nSystem images of volumes and disks, deduplicated, compressed and encrypted.')
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output on stdout' })
    .option('plugins', { type: 'string', describe: 'The plugins.json to use (default: $CAIRN_PLUGINS, else the installation\'s)' })
    .option('verbose', { type: 'boolean', default: false, describe: 'Log debug messages' })
    // Job paths and snapshot ids are text: a prefix such as 4982076e05 must not become the
    // number 498207600000. Options declared as numbers are still parsed as numbers.
    .parserConfiguration({ 'parse-numbers': false, 'parse-positional-numbers': false })
    .command('init <job>', 'Create the repository the job\'s target points at')
    .command('backup <job>', 'Run the job once: image the source into the repository')
    .command('snapshots <job>', 'List the snapshots in the job\'s repository')
    .command('restore <job> <snapshot>', 'Restore a snapshot (an id, a prefix of one, or latest) to a file or block device', (y) =>
      y
        .option('to', { type: 'string', demandOption: true, describe: 'Image file or block device to write' })
        .option('force', { type: 'boolean', default: false, describe: 'Overwrite an existing file or device' })
        .option('partition', { type: 'number', describe: 'Restore only this partition (its number, as in /dev/sda2) of a disk snapshot' })
        .option('zero-unused', { type: 'boolean', default: false, describe: 'On a block device, write zeros over unused blocks instead of leaving them as they are' })
        .option('size', { type: 'string', describe: 'Make the restored image file this large (bytes, or with K/M/G/T suffix): a larger virtual disk; a GPT is moved to the new end' }),
    )
    .command('show <job> <snapshot>', 'Show a snapshot: its layout, partitions, filesystems, used and total bytes')
    .command('check <job>', 'Verify the repository structure, or every byte with --read-data', (y) =>
      y.option('read-data', { type: 'boolean', default: false, describe: 'Read, decrypt and verify every pack' }),
    )
    .command('key <action> <job>', 'Manage the passwords that open the repository: list, add', (y) =>
      y
        .positional('action', { choices: ['list', 'add'] as const })
        .option('new-password-env', { type: 'string', describe: 'add: environment variable holding the new password' })
        .option('new-password-file', { type: 'string', describe: 'add: file holding the new password' }),
    )
    .command('validate <job>', 'Check a job file against the merged schema')
    .command('schema', 'Print the job file JSON Schema, with every enabled plugin\'s settings')
    .command('plugins', 'List the enabled plugins, their contributions and state')
    .demandCommand(1, 'Name a command; see --help')
    .strict()
    .exitProcess(false)
    .version(CORE_VERSION)
    .help()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .epilogue('Exit codes: 0 ok, 1 failed, 2 bad usage or job file, 10 no repository, 11 locked, 12 wrong password, 13 damage found.') as Argv<GlobalOptions>;
}

/** Runs the CLI; returns the exit code and never calls process.exit. */
export async function main(args: string[], io: CliIo): Promise<number> {
  let helpOutput = '';
  let argv: Record<string, any>;
  try {
    argv = await parser(args)
      .fail((message, err) => {
        throw new UsageError(message ?? err?.message ?? 'bad usage');
      })
      .parseAsync(args, {}, (_err, _argv, output) => {
        helpOutput = output;
      });
  } catch (err) {
    io.stderr.write(`cairn: ${(err as Error).message}\nRun cairn --help for usage.\n`);
    return ExitCode.usage;
  }
  if (helpOutput) {
    io.stdout.write(helpOutput + '\n');
    return ExitCode.ok;
  }

  const json: boolean = argv.json;
  const logger = makeLogger(io, argv.verbose);
  const interactive = !json && Boolean(io.stderr.isTTY);
  let engine: Engine | undefined;
  try {
    engine = await Engine.create({
      pluginsFile: argv.plugins ?? io.env.CAIRN_PLUGINS ?? DEFAULT_PLUGINS_FILE,
      coreVersion: CORE_VERSION,
      env: io.env,
      logger,
      progress: interactive ? () => new ProgressBar(io.stderr as NodeJS.WriteStream) : undefined,
    });
    return await runCommand(String(argv._[0]), argv, engine, io, json);
  } catch (err) {
    return reportError(err, io, json);
  } finally {
    await engine?.dispose().catch(() => undefined);
  }
}

async function runCommand(command: string, argv: Record<string, any>, engine: Engine, io: CliIo, json: boolean): Promise<number> {
  const out = (value: unknown, text: () => string) => io.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text());
  switch (command) {
    case 'schema':
      io.stdout.write(JSON.stringify(engine.validator.schema, null, 2) + '\n');
      return ExitCode.ok;
    case 'plugins': {
      const plugins = engine.host.plugins.map((p) => ({
        id: p.id,
        version: p.version ?? null,
        folder: p.folder ?? null,
        state: p.state,
        contributes: p.contributions.map((c) => `${c.point.replace(/s$/, '')}:${c.type}`),
        activationEvents: p.activationEvents,
        problems: p.problems,
      }));
      out(plugins, () =>
        plugins
          .map((p) => `${p.id} ${p.version ?? ''}  ${p.state}  ${p.contributes.join(', ')}${p.problems.length ? `\n  ${p.problems.join('\n  ')}` : ''}\n`)
          .join(''),
      );
      return plugins.some((p) => p.state === 'failed') ? ExitCode.usage : ExitCode.ok;
    }
  }

  const job = await engine.loadJob(argv.job);
  switch (command) {
    case 'validate':
      out({ valid: true, job: job.info.file }, () => `${job.info.file} is valid\n`);
      return ExitCode.ok;
    case 'init': {
      const result = await engine.init(job);
      out(result, () => `Created repository ${result.id.slice(0, 12)} at ${result.location}\n`);
      return ExitCode.ok;
    }
    case 'backup': {
      const result = await engine.backup(job);
      const { stats } = result.manifest;
      out(
        {
          snapshot: result.snapshot,
          time: result.manifest.time,
          size: result.manifest.size,
          bytesRead: result.bytesRead,
          bytesAdded: result.bytesAdded,
          chunks: { data: stats.dataChunks, new: stats.newChunks, zero: stats.zeroChunks, unused: stats.unusedChunks },
          durationMs: stats.durationMs,
          imageDigest: result.manifest.imageDigest,
        },
        () =>
          `Snapshot ${result.snapshot.slice(0, 12)} saved: read ${formatBytes(result.bytesRead)} of ${formatBytes(result.manifest.size)}, ` +
          `added ${formatBytes(result.bytesAdded)} to the repository (${stats.newChunks} new of ${stats.dataChunks} data chunks) in ${(stats.durationMs / 1000).toFixed(1)} s\n`,
      );
      return ExitCode.ok;
    }
    case 'snapshots': {
      const snapshots = await engine.snapshots(job);
      const rows = snapshots.map(({ id, manifest: m, objectSize }) => ({
        id,
        time: m.time,
        hostname: m.hostname,
        job: m.job,
        source: m.source,
        size: m.size,
        imageDigest: m.imageDigest,
        layout: m.layout,
        bytesAdded: m.stats.bytesAdded + objectSize,
      }));
      out(rows, () =>
        rows.length === 0
          ? 'No snapshots yet\n'
          : ['ID            TIME                      HOST            SIZE        SOURCE', ...rows.map((r) => `${r.id.slice(0, 12)}  ${r.time}  ${r.hostname.padEnd(14).slice(0, 14)}  ${formatBytes(r.size).padEnd(10)}  ${r.source.path}`)].join('\n') + '\n',
      );
      return ExitCode.ok;
    }
    case 'restore': {
      const result = await engine.restore(job, String(argv.snapshot), argv.to, {
        force: argv.force,
        zeroUnused: argv.zeroUnused,
        ...(argv.partition !== undefined && { partition: checkedPartition(argv.partition) }),
        ...(argv.size !== undefined && { size: parseSize(String(argv.size)) }),
      });
      const what = result.partition === undefined ? 'snapshot' : `partition ${result.partition} of snapshot`;
      const verified = result.imageDigest ? `${result.imageDigest.algorithm} of the image verified` : 'every chunk verified';
      out(result, () => `Restored ${what} ${result.snapshot.slice(0, 12)} to ${result.destination} (${formatBytes(result.bytesWritten)}); ${verified}\n`);
      return ExitCode.ok;
    }
    case 'show': {
      const { id, manifest, objectSize } = await engine.show(job, String(argv.snapshot));
      const { chunkMaps: _maps, ...rest } = manifest;
      const bytesAdded = manifest.stats.bytesAdded + objectSize;
      out({ id, ...rest, bytesAdded }, () => describeSnapshot(id, manifest, bytesAdded));
      return ExitCode.ok;
    }
    case 'check': {
      const report = await engine.check(job, argv.readData);
      out(report, () => {
        const lines = [`Checked ${report.snapshots} snapshot(s), ${report.packs} pack(s), ${report.blobs} blob(s)${report.readData ? `, read ${formatBytes(report.bytesRead)}` : ' (structure only; --read-data reads every byte)'}`];
        if (report.unreferencedPacks.length) lines.push(`${report.unreferencedPacks.length} pack(s) are not in any index (left by an interrupted backup; harmless)`);
        for (const p of report.problems) lines.push(`DAMAGE ${p.object}: ${p.message}${p.snapshots.length ? `; affects snapshot(s) ${p.snapshots.map((s) => s.slice(0, 12)).join(', ')}` : ''}`);
        lines.push(report.problems.length ? `${report.problems.length} problem(s) found` : 'No problems found');
        return lines.join('\n') + '\n';
      });
      return report.problems.length > 0 ? ExitCode.damage : ExitCode.ok;
    }
    case 'key':
      return keyCommand(argv, engine, job, io, json);
  }
  throw new UsageError(`Unknown command ${command}`);
}

async function keyCommand(argv: Record<string, any>, engine: Engine, job: LoadedJob, io: CliIo, json: boolean): Promise<number> {
  return engine.withRepository(job, async (repository) => {
    if (argv.action === 'list') {
      const keys = await repository.listKeys();
      io.stdout.write(json ? JSON.stringify(keys, null, 2) + '\n' : keys.map((k) => `${k.current ? '*' : ' '} ${k.id.slice(0, 12)}  ${k.created}  ${k.username}@${k.hostname}`).join('\n') + '\n');
      return ExitCode.ok;
    }
    const ref: SecretRef | undefined = argv.newPasswordEnv ? { env: argv.newPasswordEnv } : argv.newPasswordFile ? { file: argv.newPasswordFile } : undefined;
    if (!ref) throw new UsageError('key add needs --new-password-env VAR or --new-password-file FILE');
    const id = await repository.addPassword(await readSecret(ref, 'new password', process.cwd(), io.env));
    io.stdout.write(json ? JSON.stringify({ id }) + '\n' : `Added key ${id.slice(0, 12)}\n`);
    return ExitCode.ok;
  });
}

function checkedPartition(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new UsageError(`--partition must be a partition number (1, 2, …), not ${value}`);
  return value;
}

/** `1073741824`, `512M`, `20G`, `1.5T` (binary units). */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(text.trim());
  if (!match) throw new UsageError(`--size must be a number of bytes, optionally with K, M, G or T: not "${text}"`);
  const factor = 1024 ** ' KMGT'.indexOf((match[2] || ' ').toUpperCase());
  return Math.round(Number(match[1]) * factor);
}

function describeSnapshot(id: string, m: SnapshotManifest, bytesAdded: number): string {
  const layout = m.layout;
  const lines = [
    `snapshot   ${id}`,
    `time       ${m.time}  (host ${m.hostname}, job ${m.job})`,
    `source     ${m.source.type} ${m.source.path} (${layout.kind})`,
    `size       ${formatBytes(m.size)} (${m.size} bytes), sector ${layout.sectorSize} bytes, chunks of ${formatBytes(m.chunkSize)}`,
    `table      ${layout.partitionTable.type}${layout.partitionTable.diskId ? ` (disk id ${layout.partitionTable.diskId})` : ''}`,
    `mode       ${layout.mode}${layout.filesystem ? `, filesystem ${layout.filesystem}` : ''}`,
    `digest     ${m.imageDigest.algorithm} ${m.imageDigest.hex}`,
    `stored     ${formatBytes(bytesAdded)} added by this run; ${m.stats.dataChunks} data, ${m.stats.zeroChunks} zero, ${m.stats.unusedChunks} unused chunks`,
  ];
  if (layout.note) lines.push(`note       ${layout.note}`);
  if (layout.partitions.length > 0) {
    lines.push('', '  #  START          SIZE        FILESYSTEM  MODE   USED        NAME/TYPE');
    for (const p of layout.partitions) {
      lines.push(
        `${String(p.index).padStart(3)}  ${String(p.offset).padEnd(13)}  ${formatBytes(p.size).padEnd(10)}  ${(p.filesystem ?? '-').padEnd(10)}  ${p.mode.padEnd(5)}  ${(p.usedBytes !== undefined ? formatBytes(p.usedBytes) : '-').padEnd(10)}  ${p.name || p.type || ''}`,
      );
      if (p.note) lines.push(`     note: ${p.note}`);
    }
  }
  return lines.join('\n') + '\n';
}

function reportError(err: unknown, io: CliIo, json: boolean): number {
  if (err instanceof CairnError) {
    io.stderr.write(json ? JSON.stringify({ error: { code: err.code, message: err.message } }) + '\n' : `cairn: ${err.message}\n`);
    return err.exitCode;
  }
  // Not raised on purpose: a bug or an unexpected system error. Say so, with the details.
  const error = err as NodeJS.ErrnoException;
  io.stderr.write(
    json
      ? JSON.stringify({ error: { code: error?.code ?? 'CAIRN_INTERNAL', message: String(error?.message ?? err) } }) + '\n'
      : `cairn: ${error?.message ?? err}\n${io.env.CAIRN_DEBUG ? `${error?.stack}\n` : ''}`,
  );
  return ExitCode.failed;
}

function makeLogger(io: CliIo, verbose: boolean): Logger {
  const write = (level: string) => (message: string) => io.stderr.write(`cairn: ${level}${message}\n`);
  return {
    debug: verbose ? write('') : () => undefined,
    info: verbose ? write('') : () => undefined,
    warn: write('warning: '),
    error: write('error: '),
  };
}
