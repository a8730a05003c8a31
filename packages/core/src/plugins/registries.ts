import { injectable } from '../vendor.js';
import type { CodecRegistration } from '../codec.js';
import { toDisposable, type IDisposable } from '../lifecycle.js';
import type { CodecRegistry, NotifierRegistry, SourceRegistry, TargetRegistry } from '../services.js';
import type { NotifierFactory } from '../notify.js';
import type { SourceFactory } from '../source.js';
import type { TargetFactory } from '../target.js';

class KeyedRegistry<T> {
  readonly #entries = new Map<string, T>();
  constructor(private readonly what: string) {}

  register(type: string, value: T): IDisposable {
    if (this.#entries.has(type)) throw new Error(`Duplicate ${this.what} "${type}"`);
    this.#entries.set(type, value);
    return toDisposable(() => {
      if (this.#entries.get(type) === value) this.#entries.delete(type);
    });
  }

  get(type: string): T | undefined {
    return this.#entries.get(type);
  }

  types(): string[] {
    return [...this.#entries.keys()];
  }
}

@injectable()
export class DefaultTargetRegistry extends KeyedRegistry<TargetFactory> implements TargetRegistry {
  constructor() {
    super('target type');
  }
}

@injectable()
export class DefaultSourceRegistry extends KeyedRegistry<SourceFactory> implements SourceRegistry {
  constructor() {
    super('source type');
  }
}

@injectable()
export class DefaultNotifierRegistry extends KeyedRegistry<NotifierFactory> implements NotifierRegistry {
  constructor() {
    super('notifier type');
  }
}

@injectable()
export class DefaultCodecRegistry implements CodecRegistry {
  readonly #byName = new Map<string, CodecRegistration>();
  readonly #byId = new Map<number, CodecRegistration>();

  register(codec: CodecRegistration): IDisposable {
    if (!Number.isInteger(codec.headerId) || codec.headerId < 0 || codec.headerId > 255) {
      throw new Error(`Codec "${codec.name}" has header id ${codec.headerId}; it must be an integer 0–255`);
    }
    if (this.#byName.has(codec.name)) throw new Error(`Duplicate codec "${codec.name}"`);
    const holder = this.#byId.get(codec.headerId);
    if (holder) throw new Error(`Codec "${codec.name}" wants header id ${codec.headerId}, already used by "${holder.name}"`);
    this.#byName.set(codec.name, codec);
    this.#byId.set(codec.headerId, codec);
    return toDisposable(() => {
      this.#byName.delete(codec.name);
      this.#byId.delete(codec.headerId);
    });
  }

  byName(name: string): CodecRegistration | undefined {
    return this.#byName.get(name);
  }

  byHeaderId(id: number): CodecRegistration | undefined {
    return this.#byId.get(id);
  }

  all(): CodecRegistration[] {
    return [...this.#byName.values()];
  }
}
