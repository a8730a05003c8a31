import { randomBytes } from 'node:crypto';
import type { ByteRange, Leftovers, ObjectWriter, Target } from '../target.js';
import { DamageError, RepositoryExistsError, RepositoryNotFoundError, SnapshotNotFoundError } from '../errors.js';
import { SEAL_OVERHEAD, newMasterKey, open, seal, sha256, useNativeCipher, type MasterKey } from '../crypto/crypto.js';
import { FORMAT_VERSION, Keys, decodeIndex, idFromKey, isObjectId, type IndexedPack } from './format.js';
import { decodeManifest, encodeManifest, type AnySnapshotManifest } from './snapshot.js';
import { DEFAULT_CDC, DEFAULT_CHUNK_SIZE, DEFAULT_PACK_SIZE, FILE_SNAPSHOTS_VERSION, decodeConfig, imageDigestForVersion, blobIdSchemeForVersion, encodeConfig, type RepositoryConfig } from './config.js';
import { Keyring, type KeyInfo, type StoredConfig } from './keyring.js';
import { BlobIndex, type DamagedObject, type IndexPurpose } from './blob-index.js';
import { loadMarks } from './marks.js';

export { blobIdSchemeOf, packIdSchemeOf, imageDigestOf, cdcParametersOf, DEFAULT_CHUNK_SIZE, DEFAULT_PACK_SIZE, type RepositoryConfig } from './config.js';
export { BlobIndex, type BlobLocation, type DamagedObject, type IndexPurpose } from './blob-index.js';

/** A pack being written: an ObjectWriter committed under the pack's id. */
export type PackWriter = Omit<ObjectWriter, 'commit'> & { commit(id: string): Promise<void> };

export interface SnapshotSummary {
  id: string;
  manifest: AnySnapshotManifest;
  /** Bytes of the snapshot object itself. */
  objectSize: number;
}

/** Kinds of small sealed objects, each named by the hash of its sealed bytes. */
export type SealedKind = 'index' | 'snapshots' | 'locks' | 'marks';

const SEALED_KEY: Record<SealedKind, (id: string) => string> = { index: Keys.index, snapshots: Keys.snapshot, locks: Keys.lock, marks: Keys.mark };

/** A pack as the target lists it. */
export interface StoredPack {
  id: string;
  size: number;
}

/** Puts in flight for a target that does not say (see Target.concurrentPuts). */
const DEFAULT_CONCURRENT_PUTS = 3;

/**
 * A repository on a target: its config, keys, packs, index, snapshots and locks. Everything
 * stored goes through here, so no other module knows the target or how objects are named.
 * Every object is written once under a name derived from its content and never modified.
 * The caller that opened the target disposes it.
 */
export class Repository {
  readonly #target: Target;
  readonly #stored: StoredConfig;

  private constructor(
    target: Target,
    stored: StoredConfig,
    readonly masterKey: MasterKey,
    readonly keyId: string,
  ) {
    this.#target = target;
    this.#stored = stored;
  }

  get config(): RepositoryConfig {
    return this.#stored.config;
  }

  /** Where the repository lives, for messages (e.g. `/srv/repo` or `s3://bucket/prefix`). */
  get location(): string {
    return this.#target.location;
  }

  /**
   * Creates a repository; refuses a location that holds any repository object, even without
   * a config. `formatVersion` creates an older format (for tests of compatibility).
   */
  static async init(target: Target, password: string, options: { chunkSize?: number; now?: Date; formatVersion?: number } = {}): Promise<Repository> {
    const found = await firstRepositoryObject(target);
    if (found) throw new RepositoryExistsError(`A repository already exists at ${target.location} (it holds ${found}); cairn init writes only into an empty location`);
    const config = newConfig(options.formatVersion ?? FORMAT_VERSION, options.chunkSize ?? DEFAULT_CHUNK_SIZE, options.now ?? new Date());
    const stored = { config, bytes: encodeConfig(config) };
    const masterKey = newMasterKey();
    const keyId = await new Keyring(target).add(stored, masterKey, password, options.now);
    // The config is written last: until it exists, there is no repository.
    await target.put(Keys.config, stored.bytes);
    return new Repository(target, stored, masterKey, keyId);
  }

  static async readConfig(target: Target): Promise<RepositoryConfig> {
    return (await readStoredConfig(target)).config;
  }

  /**
   * Opens the repository with any of its passwords. The password may be given as a function,
   * called only once the config showed a repository this reader understands.
   */
  static async open(target: Target, passwordOrProvider: string | (() => Promise<string>)): Promise<Repository> {
    const stored = await readStoredConfig(target);
    const password = typeof passwordOrProvider === 'string' ? passwordOrProvider : await passwordOrProvider();
    const { masterKey, keyId } = await new Keyring(target).unlock(stored, password);
    // Pack headers, indexes, manifests and key files are sealed and opened in this thread too.
    await useNativeCipher();
    return new Repository(target, stored, masterKey, keyId);
  }

  /** Adds another password that opens this repository. Returns the new key's id. */
  addPassword(password: string, now?: Date): Promise<string> {
    return new Keyring(this.#target).add(this.#stored, this.masterKey, password, now);
  }

  async listKeys(): Promise<Array<KeyInfo & { current: boolean }>> {
    return (await new Keyring(this.#target).list()).map((key) => ({ ...key, current: key.id === this.keyId }));
  }

  /** Whether an error of this repository's target means "no such object". */
  isNotFound(err: unknown): boolean {
    return this.#target.isNotFound(err);
  }

  /** Encrypts and stores a small object under the hash of its sealed bytes; returns the id. */
  async putSealed(kind: SealedKind, plaintext: Uint8Array): Promise<{ id: string; size: number }> {
    const sealed = seal(this.masterKey.encryption, plaintext);
    const id = sha256(sealed).toString('hex');
    await this.#target.put(SEALED_KEY[kind](id), sealed);
    return { id, size: sealed.length };
  }

  /** Reads and decrypts a small object; DamageError when its bytes do not match its name or fail authentication. */
  async getSealed(kind: SealedKind, id: string): Promise<Buffer> {
    const key = SEALED_KEY[kind](id);
    const sealed = await this.#target.get(key);
    if (sha256(sealed).toString('hex') !== id) {
      throw new DamageError(`${key} is damaged: its content does not match its name`);
    }
    try {
      return open(this.masterKey.encryption, sealed);
    } catch (err) {
      throw new DamageError(`${key} is damaged: it fails authentication`, { cause: err });
    }
  }

  /** Removes a sealed object; one that is already gone is fine. */
  async removeSealed(kind: SealedKind, id: string): Promise<void> {
    try {
      await this.#target.remove(SEALED_KEY[kind](id));
    } catch (err) {
      if (!this.#target.isNotFound(err)) throw err;
    }
  }

  /** Ids of every sealed object of a kind (objects whose names are not ids are not listed). */
  async listIds(kind: SealedKind): Promise<string[]> {
    const ids: string[] = [];
    for await (const object of this.#target.list(`${kind}/`)) {
      const id = idFromKey(object.key);
      if (isObjectId(id)) ids.push(id);
    }
    return ids;
  }

  /** Stores a pack under its id. The caller must not change `bytes` before this settles. */
  savePack(id: string, bytes: Uint8Array): Promise<void> {
    return this.#target.put(Keys.pack(id), bytes);
  }

  /** A pack written as it fills, committed under its id once complete (see Target.openWriter); only where `streamsPacks`. */
  async openPackWriter(): Promise<PackWriter> {
    if (!this.#target.openWriter) throw new Error(`internal error: ${this.location} takes whole objects only`);
    const writer = await this.#target.openWriter();
    return { write: (data) => writer.write(data), commit: (id) => writer.commit(Keys.pack(id)), abort: () => writer.abort() };
  }

  /** Whether packs can be written as they fill (see openPackWriter). */
  get streamsPacks(): boolean {
    return this.#target.openWriter !== undefined;
  }

  /**
   * A pack's bytes, or `range` of them. A pack that is missing, or too short for the range,
   * is damage: a DamageError naming `data/xx/<id>`.
   */
  async readPack(id: string, range?: ByteRange): Promise<Buffer> {
    const key = Keys.pack(id);
    try {
      return await this.#target.get(key, range);
    } catch (err) {
      throw await this.#packReadFailure(key, range, err);
    }
  }

  /** How many pack uploads are worth running at once (see Target.concurrentPuts). */
  get concurrentPuts(): number {
    return this.#target.concurrentPuts ?? DEFAULT_CONCURRENT_PUTS;
  }

  /** Whether `readPackInto` reads straight into its buffers (else through a buffer of `get`'s). */
  get readsPacksInPlace(): boolean {
    return this.#target.readInto !== undefined;
  }

  /**
   * Reads a pack's bytes from `offset` on into `into`, filling each buffer in turn; fails as
   * `readPack` of that range would.
   */
  async readPackInto(id: string, offset: number, into: readonly Uint8Array[]): Promise<void> {
    const key = Keys.pack(id);
    const length = into.reduce((sum, buffer) => sum + buffer.length, 0);
    try {
      if (this.#target.readInto) return await this.#target.readInto(key, offset, into);
      const bytes = await this.#target.get(key, { offset, length });
      if (bytes.length !== length) throw new DamageError(`pack ${key} gave ${bytes.length} bytes for a read of ${length}`);
      let at = 0;
      for (const buffer of into) at += bytes.copy(buffer, 0, at, at + buffer.length);
    } catch (err) {
      throw await this.#packReadFailure(key, { offset, length }, err);
    }
  }

  /** What a failed pack read means: a missing or truncated pack is damage; anything else stays as it was. */
  async #packReadFailure(key: string, range: ByteRange | undefined, err: unknown): Promise<unknown> {
    if (err instanceof DamageError) return err;
    if (this.#target.isNotFound(err)) return new DamageError(`pack ${key} is missing`, { cause: err });
    if (!range) return err;
    // Targets fail a range past the end each in their own words; the size tells.
    const size = await this.#target.stat(key).then(
      (info) => info.size,
      (statErr: unknown) => (this.#target.isNotFound(statErr) ? -1 : undefined),
    );
    if (size === -1) return new DamageError(`pack ${key} is missing`, { cause: err });
    if (size !== undefined && size < range.offset + range.length) {
      return new DamageError(`pack ${key} is truncated: it has ${size} bytes, the read needs ${range.offset + range.length}`, { cause: err });
    }
    return err;
  }

  /** Removes what killed writers left on the target before `before` (see Target.removeLeftovers). */
  async removeLeftovers(before: Date): Promise<Leftovers> {
    return (await this.#target.removeLeftovers?.(before)) ?? { count: 0, bytes: 0 };
  }

  /** Deletes a pack (prune only, once nothing can need it); one already gone is fine. */
  async removePack(id: string): Promise<void> {
    try {
      await this.#target.remove(Keys.pack(id));
    } catch (err) {
      if (!this.#target.isNotFound(err)) throw err;
    }
  }

  /** Every pack stored where a pack belongs (`data/<first two hex digits>/<id>`), with its size. */
  async listPacks(): Promise<StoredPack[]> {
    const packs: StoredPack[] = [];
    for await (const object of this.#target.list('data/')) {
      const id = idFromKey(object.key);
      if (isObjectId(id) && object.key === Keys.pack(id)) packs.push({ id, size: object.size });
    }
    return packs;
  }

  /**
   * Reads every index file, and the prune marks that say which packs a writer must not count
   * on (docs/FORMAT.md, Prune). A damaged index file is listed in `unreadable` rather than
   * thrown: it costs only the blobs it alone named.
   */
  async loadIndex(purpose: IndexPurpose = 'read'): Promise<BlobIndex> {
    const marks = await loadMarks(this);
    const index = new BlobIndex(new Set(marks.flatMap((m) => m.mark.packs)), purpose);
    await this.loadNewIndexFiles(index);
    return index;
  }

  /**
   * Adds the index files `index` has not taken in yet. One removed while being read (prune
   * replaced it, having written its replacement first) sends the reader back to the listing.
   */
  async loadNewIndexFiles(index: BlobIndex): Promise<void> {
    for (let pass = 0; pass < 5; pass++) {
      const ids = (await this.listIds('index')).filter((id) => !index.files.has(id));
      let vanished = false;
      await forEachConcurrently(ids, 8, async (id) => {
        try {
          addIndexOrThrow(index, await this.getSealed('index', id), id);
          index.files.add(id);
        } catch (err) {
          if (this.#target.isNotFound(err)) vanished = true;
          else if (err instanceof DamageError) {
            index.files.add(id);
            index.unreadable.push({ object: Keys.index(id), message: err.message });
          } else throw err;
        }
      });
      if (!vanished) break;
    }
  }

  /** One index file's packs; DamageError when it is damaged. */
  async readIndexFile(id: string): Promise<IndexedPack[]> {
    return decodeIndexOrThrow(await this.getSealed('index', id), id);
  }

  /**
   * Every snapshot, oldest first. One removed while listing (forget) is left out. A damaged
   * one goes to `damaged` when given (the others stay usable), and is thrown otherwise.
   */
  async listSnapshots(damaged?: DamagedObject[]): Promise<SnapshotSummary[]> {
    const ids = await this.listIds('snapshots');
    const snapshots: SnapshotSummary[] = [];
    await forEachConcurrently(ids, 8, async (id) => {
      const snapshot = await this.#loadSummary(id, damaged);
      if (snapshot) snapshots.push(snapshot);
    });
    return snapshots.sort((a, b) => a.manifest.time.localeCompare(b.manifest.time) || a.id.localeCompare(b.id));
  }

  async #loadSummary(id: string, damaged: DamagedObject[] | undefined): Promise<SnapshotSummary | undefined> {
    try {
      const plain = await this.getSealed('snapshots', id);
      return { id, manifest: decodeManifest(id, plain), objectSize: plain.length + SEAL_OVERHEAD };
    } catch (err) {
      if (this.#target.isNotFound(err)) return undefined;
      if (!(err instanceof DamageError) || !damaged) throw err;
      damaged.push({ object: Keys.snapshot(id), message: err.message });
      return undefined;
    }
  }

  async loadSnapshot(id: string): Promise<AnySnapshotManifest> {
    return decodeManifest(id, await this.getSealed('snapshots', id));
  }

  /**
   * `latest`, a full id, or an unambiguous prefix of at least 4 characters. An id reads only
   * the manifest it names; `latest` reads them all, and a damaged one goes to `damaged`.
   */
  async resolveSnapshot(ref: string, damaged: DamagedObject[] = []): Promise<SnapshotSummary> {
    if (ref === 'latest') {
      const latest = (await this.listSnapshots(damaged)).at(-1);
      if (!latest) throw new SnapshotNotFoundError(`The repository at ${this.location} has no ${damaged.length ? 'readable ' : ''}snapshots yet`);
      return latest;
    }
    if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new SnapshotNotFoundError(`"${ref}" is not a snapshot id (use latest, or 4 to 64 hex digits)`);
    const matches = (await this.listIds('snapshots')).filter((id) => id.startsWith(ref));
    if (matches.length === 0) throw new SnapshotNotFoundError(`No snapshot ${ref} in ${this.location}`);
    if (matches.length > 1) throw new SnapshotNotFoundError(`Snapshot id ${ref} is ambiguous: ${matches.map((m) => m.slice(0, 12)).join(', ')}`);
    const found = await this.#loadSummary(matches[0]!, undefined);
    if (!found) throw new SnapshotNotFoundError(`Snapshot ${ref} was removed meanwhile`);
    return found;
  }

  async saveSnapshot(manifest: AnySnapshotManifest): Promise<{ id: string; size: number }> {
    return this.putSealed('snapshots', encodeManifest(manifest));
  }
}

function addIndexOrThrow(index: BlobIndex, plain: Buffer, id: string): void {
  try {
    index.addIndex(plain);
  } catch (err) {
    throw new DamageError(`${Keys.index(id)} is damaged: ${(err as Error).message}`, { cause: err });
  }
}

function decodeIndexOrThrow(plain: Buffer, id: string): IndexedPack[] {
  try {
    return decodeIndex(plain);
  } catch (err) {
    throw new DamageError(`${Keys.index(id)} is damaged: ${(err as Error).message}`, { cause: err });
  }
}

function newConfig(version: number, chunkSize: number, now: Date): RepositoryConfig {
  const config: RepositoryConfig = { format: 'cairn', version, id: randomBytes(32).toString('hex'), created: now.toISOString(), chunkSize, packSize: DEFAULT_PACK_SIZE };
  if (version >= 2) Object.assign(config, { blobId: blobIdSchemeForVersion(version), packId: 'blake3' });
  if (version >= 3) config.imageDigest = imageDigestForVersion(version);
  if (version >= FILE_SNAPSHOTS_VERSION) config.cdc = { ...DEFAULT_CDC };
  return config;
}

async function readStoredConfig(target: Target): Promise<StoredConfig> {
  let bytes: Buffer;
  try {
    bytes = await target.get(Keys.config);
  } catch (err) {
    if (!target.isNotFound(err)) throw err;
    if (await new Keyring(target).any()) {
      throw new DamageError(`The repository at ${target.location} has lost its config (its keys are there, its \`config\` is not); put back the original \`config\` file. Do not run \`cairn init\` there`, { cause: err });
    }
    throw new RepositoryNotFoundError(`No repository at ${target.location} (run \`cairn init\` first)`, { cause: err });
  }
  return { config: decodeConfig(bytes, target.location), bytes };
}

/** The first object found under a folder only a repository writes, if any. */
async function firstRepositoryObject(target: Target): Promise<string | undefined> {
  for (const prefix of ['config', 'keys/', 'snapshots/', 'index/', 'data/']) {
    for await (const object of target.list(prefix)) return object.key;
  }
  return undefined;
}

export async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}
