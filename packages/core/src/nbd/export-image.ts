import { mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ImageExportError, InterruptedError, UsageError } from '../errors.js';
import type { VolumeLayout } from '../source.js';
import { runTool } from './processes.js';
import { startNbdServer, stopNbdServer, type NbdServerRequest } from './nbd-server-process.js';
import { volumeParts } from './mount.js';

/*
 * `cairn export`: a snapshot as a virtual disk file for a hypervisor or a cloud import,
 * written by `qemu-img convert` reading the snapshot's NBD export, sparse where the image
 * holds zeros. The file appears under its name only when complete.
 */

export const EXPORT_FORMATS = ['raw', 'qcow2', 'vhdx', 'vmdk'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportRequest {
  snapshot: string;
  layout: VolumeLayout;
  format: ExportFormat;
  /** The file to write, an absolute path. */
  to: string;
  force: boolean;
  /** Export only this partition. */
  partition?: number;
  server: Omit<NbdServerRequest, 'socket' | 'stateDir'>;
}

export interface ExportResult {
  snapshot: string;
  format: ExportFormat;
  destination: string;
  partition?: number;
  /** Bytes of the disk the file holds. */
  virtualSize: number;
  /** Bytes the file takes on disk. */
  allocatedBytes: number;
}

/**
 * Writes the snapshot (or one partition of it) to `request.to` in the format asked for. When
 * `interrupt` fires, qemu-img and the server are stopped, the partial file removed, and an
 * InterruptedError thrown: the server is a detached process, which would otherwise outlive us.
 */
export async function exportImage(request: ExportRequest, interrupt?: AbortSignal): Promise<ExportResult> {
  const region = request.partition === undefined ? { offset: 0, size: request.layout.size } : volumeParts(request.layout, request.partition)[0]!;
  await checkDestination(request.to, request.force);
  const stateDir = await mkdtemp(join(tmpdir(), 'cairn-export-'));
  const server = await startNbdServer({ ...request.server, socket: join(stateDir, 'nbd.sock'), stateDir }).catch(async (err) => {
    await rm(stateDir, { recursive: true, force: true });
    throw err;
  });
  const partial = join(dirname(request.to), `.${basename(request.to)}.cairn-export-${process.pid}`);
  try {
    await convert(server.socket, region, request.format, partial, interrupt);
    await rename(partial, request.to);
  } finally {
    await rm(partial, { force: true });
    await stopNbdServer(server);
    await rm(stateDir, { recursive: true, force: true });
  }
  const written = await stat(request.to);
  return {
    snapshot: request.snapshot,
    format: request.format,
    destination: request.to,
    ...(request.partition !== undefined && { partition: request.partition }),
    virtualSize: region.size,
    allocatedBytes: written.blocks * 512,
  };
}

/** Refuses a destination that exists (unless `force`) or that is not a regular file. */
async function checkDestination(to: string, force: boolean): Promise<void> {
  const existing = await stat(to).catch(() => undefined);
  if (!existing) return;
  if (!existing.isFile()) throw new UsageError(`--to ${to} exists and is not a regular file; cairn export writes image files only`);
  if (!force) throw new ImageExportError(`${to} exists; add --force to replace it`);
}

/** qemu-img's option syntax doubles a comma inside a value. */
function optionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/**
 * The NBD export read as raw bytes from `offset` for `size` bytes (a partition of the disk);
 * writes to `to` in `format`, skipping zeros (-S: sparse).
 */
async function convert(socket: string, region: { offset: number; size: number }, format: ExportFormat, to: string, interrupt?: AbortSignal): Promise<void> {
  const source = `driver=raw,offset=${region.offset},size=${region.size},file.driver=nbd,file.server.type=unix,file.server.path=${optionValue(socket)}`;
  const result = await runTool('qemu-img', ['convert', '--image-opts', source, '-O', format, '-S', '4k', to], { ...(interrupt && { signal: interrupt }) });
  if (interrupt?.aborted) throw new InterruptedError(String(interrupt.reason));
  if (result.exitCode !== 0) throw new ImageExportError(`qemu-img convert to ${format} failed: ${result.stderr.trim()}`);
}
