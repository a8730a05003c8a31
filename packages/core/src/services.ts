import type { IDisposable } from './lifecycle.js';
import type { TargetFactory } from './target.js';
import type { SourceFactory } from './source.js';
import type { CodecRegistration } from './codec.js';

/*
 * Service identifiers for the inversify container. Each is a symbol and an interface of
 * the same name; inject with `@inject(Logger)`, never `new` a service from another package.
 */

export const Logger = Symbol('Logger');
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Replaceable time source, so that scheduling and lock expiry are testable. */
export const Clock = Symbol('Clock');
export interface Clock {
  now(): Date;
}

interface Registry<T> {
  /** Throws on a duplicate key. Dispose the result to unregister. */
  register(type: string, value: T): IDisposable;
  get(type: string): T | undefined;
  types(): string[];
}

export const TargetRegistry = Symbol('TargetRegistry');
export interface TargetRegistry extends Registry<TargetFactory> {}

export const SourceRegistry = Symbol('SourceRegistry');
export interface SourceRegistry extends Registry<SourceFactory> {}

export const CodecRegistry = Symbol('CodecRegistry');
export interface CodecRegistry {
  /** Throws when the name or the header id is taken. */
  register(codec: CodecRegistration): IDisposable;
  byName(name: string): CodecRegistration | undefined;
  byHeaderId(id: number): CodecRegistration | undefined;
  all(): CodecRegistration[];
}
