import { readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { PasswordSourceError } from '../errors.js';
import { Environment } from '../services.js';
import type { SecretRef } from '../target.js';

/** Reads the secrets a job names, from the environment the core was given. */
@injectable()
export class SecretReader {
  constructor(@inject(Environment) private readonly environment: Environment) {}

  /** `what` names the secret in errors; relative files and commands run in `baseDir` (default: the working folder). */
  read(ref: SecretRef, what: string, baseDir = this.environment.cwd): Promise<string> {
    return readSecret(ref, what, baseDir, this.environment.env);
  }
}

/** Reads a secret from an environment variable, a file, or a command's standard output. */
export async function readSecret(ref: SecretRef, what: string, baseDir: string, env: NodeJS.ProcessEnv): Promise<string> {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') throw new PasswordSourceError(`The ${what} comes from the environment variable ${ref.env}, which is not set`);
    return value;
  }
  if ('file' in ref) {
    const path = resolve(baseDir, ref.file);
    try {
      return stripNewline(await readFile(path, 'utf8'));
    } catch (err) {
      throw new PasswordSourceError(`Cannot read the ${what} from ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  return readCommandSecret(ref.command, what, baseDir);
}

async function readCommandSecret(argv: string[], what: string, baseDir: string): Promise<string> {
  const [command, ...args] = argv;
  const output = await new Promise<string>((resolvePromise, reject) => {
    const child = spawn(command!, args, { cwd: baseDir, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => reject(new PasswordSourceError(`Cannot run the ${what} command ${command}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      if (code === 0) resolvePromise(Buffer.concat(out).toString('utf8'));
      else reject(new PasswordSourceError(`The ${what} command ${command} exited with ${code}: ${Buffer.concat(err).toString('utf8').trim()}`));
    });
  });
  const secret = stripNewline(output);
  if (secret === '') throw new PasswordSourceError(`The ${what} command ${command} printed nothing`);
  return secret;
}

function stripNewline(text: string): string {
  return text.replace(/\r?\n$/, '');
}
