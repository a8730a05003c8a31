import type { IDisposable } from './lifecycle.js';
import type { TargetFactory } from './target.js';
import type { SourceFactory } from './source.js';
import type { CodecRegistration } from './codec.js';
import type { NotifierFactory } from './notify.js';
import type { Progress } from './pipeline/progress.js';

/*
 * Service identifiers for the inversify container. Each is a symbol and an interface of
 * the same name; inject with `@inject(Logger)`, never `new` a service from another package.
 * The bindings are made in one place, `core-module.ts`. The symbols are registered ones
 * (`Symbol.for`), so that a plugin that ends up with a second copy of @cairn/core (or a test
 * that runs core from source and a plugin from its build) still names the same services.
 */

export const Logger = Symbol.for('cairn.Logger');
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Replaceable time source, so that scheduling and lock expiry are testable. */
export const Clock = Symbol.for('cairn.Clock');
export interface Clock {
  now(): Date;
}

/** The process's surroundings as the core may see them: never `process.env` or `process.cwd()` directly. */
export const Environment = Symbol.for('cairn.Environment');
export interface Environment {
  readonly env: NodeJS.ProcessEnv;
  /** Folder that relative paths given on the command line are resolved against. */
  readonly cwd: string;
  /** Where the output of commands the core runs for the user (the job's hooks) goes. */
  readonly stderr: NodeJS.WritableStream;
}

/** Makes the progress display of one long operation (a bar on a terminal, nothing when piped). */
export const ProgressFactory = Symbol.for('cairn.ProgressFactory');
export interface ProgressFactory {
  create(): Progress;
}

interface Registry<T> {
  /** Throws on a duplicate key. Dispose the result to unregister. */
  register(type: string, value: T): IDisposable;
  get(type: string): T | undefined;
  types(): string[];
}

export const TargetRegistry = Symbol.for('cairn.TargetRegistry');
export interface TargetRegistry extends Registry<TargetFactory> {}

export const SourceRegistry = Symbol.for('cairn.SourceRegistry');
export interface SourceRegistry extends Registry<SourceFactory> {}

/** Notifier types (`webhook`, `email`, …) contributed by plugins, for the job's `notify` entries. */
export const NotifierRegistry = Symbol.for('cairn.NotifierRegistry');
export interface NotifierRegistry extends Registry<NotifierFactory> {}

export const CodecRegistry = Symbol.for('cairn.CodecRegistry');
export interface CodecRegistry {
  /** Throws when the name or the header id is taken. */
  register(codec: CodecRegistration): IDisposable;
  byName(name: string): CodecRegistration | undefined;
  byHeaderId(id: number): CodecRegistration | undefined;
  all(): CodecRegistration[];
}
