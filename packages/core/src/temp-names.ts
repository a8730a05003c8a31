import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * Temporary names for objects a target writes before renaming them into place:
 * `.tmp-<host>-<pid>-<random>`. The name says which process of which host wrote it, so a
 * leftover of a process of this host that is gone can be removed at once (see
 * Target.removeLeftovers), while another host's is left to age.
 */
export const TEMP_PREFIX = '.tmp-';
const TEMP_NAME = /^\.tmp-([a-z0-9_]+)-(\d+)-[0-9a-f]{16}$/;
const HOST_TAG = hostTag();

/** A fresh temporary name for a put by process `pid` of this host. */
export function tempName(pid = process.pid): string {
  return `${TEMP_PREFIX}${HOST_TAG}-${pid}-${randomHex()}`;
}

/** Random bytes for names, drawn 4 KiB at a time: a system call per name cost a restore of 60,000 files 0.4 s. */
let randomPool = Buffer.alloc(0);
let randomAt = 0;

/** 16 random hex digits. */
function randomHex(): string {
  if (randomAt + 8 > randomPool.length) {
    randomPool = randomBytes(4096);
    randomAt = 0;
  }
  randomAt += 8;
  return randomPool.toString('hex', randomAt - 8, randomAt);
}

/** Whether a temporary file (its base name) was written by a process of this host that no longer runs. */
export function tempWriterIsGone(name: string): boolean {
  const match = TEMP_NAME.exec(name);
  if (!match || match[1] !== HOST_TAG) return false;
  try {
    process.kill(Number(match[2]), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * This host: its name plus a hash of /etc/machine-id when there is one, since many machines
 * write to one server and host names alone (`ubuntu`, `raspberrypi`) are often shared.
 */
function hostTag(): string {
  const name = hostname().toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 32) || 'host';
  let machineId = '';
  try {
    machineId = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    // No machine id (some containers): the host name alone.
  }
  return machineId ? `${name}_${createHash('sha256').update(machineId).digest('hex').slice(0, 8)}` : name;
}
