import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { runInThisContext } from 'node:vm';
import { Ajv, standaloneCode, type Options, type ValidateFunction } from '../vendor.js';
import { CORE_PACKAGE_ROOT } from '../version.js';

/**
 * Validators compiled once and kept between commands. A job file is checked against a schema
 * made of the enabled plugins' schemas, so the build cannot compile it ahead (as it does the
 * fixed schemas, precompiled.ts); compiling it cost every command's start about 50 ms
 * (`cairn snapshots` 0.47 → 0.42 s with the cache, medians of twelve). The first command compiles it and writes Ajv's
 * standalone code for it, named by the digest of the schema, the options and Ajv's version;
 * later ones load that file instead. A file is used only if the process's user owns it, nobody
 * else may write it, and it carries the digest it is named by; anything else, or any error, and
 * the schema is compiled as before.
 */
export class ValidatorCache {
  /** `folder`: where the files go (see cacheFolder); undefined: nothing is kept, every schema is compiled. */
  constructor(private readonly folder: string | undefined) {}

  /** `check`: throws for a schema that must not be compiled; not run when a kept validator is used, since one is kept only for a schema that passed. */
  compile(schema: object, options: Options, check: (schema: object) => void = () => undefined): ValidateFunction {
    if (this.folder === undefined) {
      check(schema);
      return new Ajv(options).compile(schema);
    }
    ajvVersion ??= requireFromCore('ajv/package.json').version as string;
    const digest = createHash('sha256').update(JSON.stringify([CACHE_FORMAT, ajvVersion, schema, options])).digest('hex');
    const file = join(this.folder, 'validators', `${digest}.cjs`);
    const cached = loadValidator(file, digest);
    if (cached) return cached;
    check(schema);
    const ajv = new Ajv({ ...options, code: { ...options.code, source: true } });
    const validate = ajv.compile(schema);
    keep(file, `${standaloneCode(ajv, validate)}\nmodule.exports.digest = ${JSON.stringify(digest)};\n`);
    forgetOld(join(file, '..'), file);
    return validate;
  }
}

/** A kept file not written for this long goes when another is written (the plugins or cairn changed): it is compiled again if still needed. */
const KEPT_FOR_MS = 30 * 24 * 3600 * 1000;

/** Changes when what a cached file holds does, so files of an older cairn are not taken for current. */
const CACHE_FORMAT = 1;

const requireFromCore = createRequire(join(CORE_PACKAGE_ROOT, 'package.json'));
/** Read when a schema is first looked up, not when every command loads this module. */
let ajvVersion: string | undefined;

/**
 * `CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else `$HOME/.cache/cairn` (where restic keeps
 * its cache); undefined when none is set to an absolute path, or `CAIRN_CACHE_DIR` is empty.
 */
export function cacheFolder(env: NodeJS.ProcessEnv): string | undefined {
  const own = env.CAIRN_CACHE_DIR;
  if (own !== undefined) return isAbsolute(own) ? own : undefined;
  if (env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME)) return join(env.XDG_CACHE_HOME, 'cairn');
  if (env.HOME && isAbsolute(env.HOME)) return join(env.HOME, '.cache', 'cairn');
  return undefined;
}

/** The validator a kept file holds, if it can be trusted and is the one asked for. */
function loadValidator(file: string, digest: string): ValidateFunction | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined; // not kept yet (or unreadable): compiled instead
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile() || stat.uid !== process.geteuid?.() || (stat.mode & 0o022) !== 0) return undefined;
    const module = { exports: {} as unknown };
    // As Node's loader runs a CommonJS file; `require` resolves Ajv's runtime helpers from core.
    const run = runInThisContext(`(function (exports, require, module) {${readFileSync(fd, 'utf8')}\n})`, { filename: file });
    run(module.exports, requireFromCore, module);
    const validate = module.exports as ValidateFunction & { digest?: unknown };
    return typeof validate === 'function' && validate.digest === digest ? validate : undefined;
  } catch {
    return undefined; // damaged or from elsewhere: compiling is always right
  } finally {
    closeSync(fd);
  }
}

/** Writes under a temporary name and renames, so a command starting meanwhile never reads half a file; a failure only means the next command compiles again. */
function keep(file: string, code: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    writeFileSync(temporary, code, { mode: 0o600, flag: 'wx' });
    renameSync(temporary, file);
  } catch {
    try {
      rmSync(temporary, { force: true });
    } catch {
      // its folder is not one (ENOTDIR): nothing was written
    }
  }
}

/** Removes the folder's kept files older than KEPT_FOR_MS besides `current`, so the folder does not grow with every change of plugins or cairn. */
function forgetOld(folder: string, current: string): void {
  try {
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      if (path !== current && name.endsWith('.cjs') && Date.now() - statSync(path).mtimeMs > KEPT_FOR_MS) rmSync(path, { force: true });
    }
  } catch {
    // a file that went meanwhile, or a folder that cannot be read: tried again after the next compile
  }
}
