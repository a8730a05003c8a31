import { hostname, userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Target } from '../target.js';
import { DamageError, WrongPasswordError } from '../errors.js';
import { AuthenticationError, DEFAULT_SCRYPT, deriveKey, open, seal, sha256, type MasterKey, type ScryptParams } from '../crypto/crypto.js';
import { AUTHENTICATED_CONFIG_VERSION, type RepositoryConfig } from './config.js';
import { Keys, idFromKey } from './format.js';

interface KeyFile {
  version: 1;
  created: string;
  hostname: string;
  username: string;
  kdf: { type: 'scrypt'; salt: string } & ScryptParams;
  /** The master key, sealed under the password-derived key. */
  masterKey: string;
}

interface MasterKeyPlain {
  repository: string;
  encryption: string;
  blobId: string;
  /** sha256 (hex) of the config's exact bytes: the config is authenticated through every key (format 4 on). */
  config?: string;
}

export interface KeyInfo {
  id: string;
  created: string;
  hostname: string;
  username: string;
}

/** The stored config, as read: its bytes are what a key authenticates. */
export interface StoredConfig {
  config: RepositoryConfig;
  bytes: Buffer;
}

/**
 * The repository's key files: each wraps the one master key under a password. Key files are
 * named by the hash of their bytes, so a changed byte is found before any password is tried.
 */
export class Keyring {
  constructor(private readonly target: Target) {}

  /** Writes a key file wrapping `masterKey` under `password`; returns its id. */
  async add(stored: StoredConfig, masterKey: MasterKey, password: string, now = new Date()): Promise<string> {
    const salt = randomBytes(32);
    const derived = await deriveKey(password, salt, DEFAULT_SCRYPT);
    const plain: MasterKeyPlain = {
      repository: stored.config.id,
      encryption: masterKey.encryption.toString('base64'),
      blobId: masterKey.blobId.toString('base64'),
      config: sha256(stored.bytes).toString('hex'),
    };
    const file: KeyFile = {
      version: 1,
      created: now.toISOString(),
      hostname: hostname(),
      username: safeUsername(),
      kdf: { type: 'scrypt', ...DEFAULT_SCRYPT, salt: salt.toString('base64') },
      masterKey: seal(derived, Buffer.from(JSON.stringify(plain))).toString('base64'),
    };
    const bytes = Buffer.from(JSON.stringify(file, null, 2) + '\n');
    const id = sha256(bytes).toString('hex');
    await this.target.put(Keys.key(id), bytes);
    return id;
  }

  /**
   * The master key and the id of the key file that `password` opens, once that key file has
   * vouched for the config. A damaged key file is skipped; when no other opens, the damage
   * (not the password) is reported.
   */
  async unlock(stored: StoredConfig, password: string): Promise<{ masterKey: MasterKey; keyId: string }> {
    const ids = await this.#ids();
    if (ids.length === 0) throw new DamageError(`The repository at ${this.target.location} has no keys`);
    const damaged: string[] = [];
    for (const id of ids) {
      const file = await this.#read(id).catch((err: unknown) => {
        if (!(err instanceof DamageError)) throw err;
        damaged.push(err.message);
      });
      if (!file) continue;
      const plain = await unwrap(file, password, id).catch((err: unknown) => {
        if (!(err instanceof DamageError)) throw err;
        damaged.push(err.message);
      });
      if (!plain) continue;
      checkVouches(plain, stored, id, this.target.location);
      return { masterKey: { encryption: Buffer.from(plain.encryption, 'base64'), blobId: Buffer.from(plain.blobId, 'base64') }, keyId: id };
    }
    if (damaged.length > 0) {
      throw new DamageError(`No intact key opens with this password, and ${damaged.length} key file(s) are damaged: ${damaged.join('; ')}`);
    }
    throw new WrongPasswordError(`Wrong password: none of the repository's ${ids.length} key(s) opens with it`);
  }

  async list(): Promise<KeyInfo[]> {
    const keys: KeyInfo[] = [];
    for (const id of await this.#ids()) {
      const file = await this.#read(id);
      keys.push({ id, created: file.created, hostname: file.hostname, username: file.username });
    }
    return keys.sort((a, b) => a.created.localeCompare(b.created));
  }

  /** Whether any key file exists: a location with keys but no config has lost its config. */
  async any(): Promise<boolean> {
    return (await this.#ids()).length > 0;
  }

  async #ids(): Promise<string[]> {
    const ids: string[] = [];
    for await (const object of this.target.list('keys/')) ids.push(idFromKey(object.key));
    return ids.sort();
  }

  async #read(id: string): Promise<KeyFile> {
    const bytes = await this.target.get(Keys.key(id));
    if (sha256(bytes).toString('hex') !== id) throw new DamageError(`key ${Keys.key(id)} is damaged: its content does not match its name`);
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new DamageError(`key ${Keys.key(id)} is damaged: it is not valid JSON`, { cause: err });
    }
  }
}

/** The sealed part of a key file, or undefined when `password` does not open it. */
async function unwrap(file: KeyFile, password: string, id: string): Promise<MasterKeyPlain | undefined> {
  let sealed: Buffer;
  try {
    sealed = open(await deriveKey(password, Buffer.from(file.kdf.salt, 'base64'), file.kdf), Buffer.from(file.masterKey, 'base64'));
  } catch (err) {
    if (err instanceof AuthenticationError) return undefined;
    // Key files are checked against their names first, so this is a key written wrong.
    throw new DamageError(`key ${Keys.key(id)} is unusable: ${(err as Error).message}`, { cause: err });
  }
  return JSON.parse(sealed.toString('utf8'));
}

/** A key must belong to this repository and, from format 4 on, vouch for the config's exact bytes. */
function checkVouches(plain: MasterKeyPlain, stored: StoredConfig, id: string, location: string): void {
  if (plain.config !== undefined && plain.config !== sha256(stored.bytes).toString('hex')) {
    throw new DamageError(`The repository config at ${location} is damaged: it is not the config key ${id.slice(0, 12)} was made for (a changed byte, or a config of another repository). Put back the original \`config\` file`);
  }
  if (plain.config === undefined && stored.config.version >= AUTHENTICATED_CONFIG_VERSION) {
    throw new DamageError(`Key ${id.slice(0, 12)} does not authenticate the config of this format-${stored.config.version} repository at ${location}: the config or the key is damaged`);
  }
  if (plain.repository !== stored.config.id) throw new DamageError(`Key ${id.slice(0, 12)} belongs to another repository`);
}

function safeUsername(): string {
  try {
    return userInfo().username;
  } catch {
    return '';
  }
}
