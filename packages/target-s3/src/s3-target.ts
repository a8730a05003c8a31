import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { TargetError } from '@cairn/core';
import type { ByteRange, Leftovers, ObjectInfo, SecretRef, Target, TargetCreateContext, TargetFactory, TargetSettings } from '@cairn/core';
// Types only: the SDK itself is imported in `create`, so a job without an S3 target never loads it.
import type { CompletedPart, S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { DirectReads, type SignedGet } from './direct-reads.js';
import { describeError, isBucketMissing, isNotFoundResponse, retrying, type RequestFailed, type RetryPolicy } from './retry.js';

type Sdk = typeof import('@aws-sdk/client-s3');
type GetObjectBody = NonNullable<import('@aws-sdk/client-s3').GetObjectCommandOutput['Body']>;

export interface S3TargetSettings extends TargetSettings {
  type: 's3';
  bucket: string;
  prefix?: string;
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  storageClass?: string;
  serverSideEncryption?: 'AES256' | 'aws:kms';
  sseKmsKeyId?: string;
  credentials?: { accessKeyId: SecretRef; secretAccessKey: SecretRef; sessionToken?: SecretRef };
  profile?: string;
  checksums?: 'when-supported' | 'when-required';
  uploadConcurrency?: number;
  partSizeMiB?: number;
  multipartThresholdMiB?: number;
  maxAttempts?: number;
  abortIncompleteUploadsAfterHours?: number;
}

/** Settings with every default filled in (the one place defaults are decided). */
export interface ResolvedS3Settings {
  bucket: string;
  /** '' or ending in '/'. */
  root: string;
  region: string | undefined;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  storageClass: string | undefined;
  serverSideEncryption: 'AES256' | 'aws:kms' | undefined;
  sseKmsKeyId: string | undefined;
  checksums: 'when-supported' | 'when-required';
  uploadConcurrency: number;
  partSize: number;
  multipartThreshold: number;
  maxAttempts: number;
  abortIncompleteUploadsAfterMs: number;
}

const MiB = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 120_000;
const DIRECT_FAILURES_BEFORE_GIVING_UP = 4;
const KEY_PATTERN = /^([a-z0-9_.-]+\/)*[a-z0-9_.-]+$/;
const PREFIX_PATTERN = /^([a-z0-9_.-]+\/)*[a-z0-9_.-]*$/;

export function applyDefaults(settings: S3TargetSettings): ResolvedS3Settings {
  const custom = settings.endpoint !== undefined;
  const prefix = (settings.prefix ?? '').replace(/^\/+|\/+$/g, '');
  return {
    bucket: settings.bucket,
    root: prefix === '' ? '' : `${prefix}/`,
    region: settings.region ?? (custom ? 'us-east-1' : undefined),
    endpoint: settings.endpoint?.replace(/\/+$/, ''),
    forcePathStyle: settings.forcePathStyle ?? custom,
    storageClass: settings.storageClass,
    serverSideEncryption: settings.serverSideEncryption,
    sseKmsKeyId: settings.sseKmsKeyId,
    checksums: settings.checksums ?? (custom ? 'when-required' : 'when-supported'),
    uploadConcurrency: settings.uploadConcurrency ?? 4,
    partSize: (settings.partSizeMiB ?? 16) * MiB,
    multipartThreshold: (settings.multipartThresholdMiB ?? 64) * MiB,
    maxAttempts: settings.maxAttempts ?? 8,
    abortIncompleteUploadsAfterMs: (settings.abortIncompleteUploadsAfterHours ?? 24) * 3_600_000,
  };
}

/** The SDK client configuration for the settings (exported for tests and harnesses). */
export async function clientConfig(settings: S3TargetSettings, context: Pick<TargetCreateContext, 'readSecret'>): Promise<S3ClientConfig> {
  const resolved = applyDefaults(settings);
  const config: S3ClientConfig = {
    forcePathStyle: resolved.forcePathStyle,
    requestChecksumCalculation: resolved.checksums === 'when-required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    responseChecksumValidation: resolved.checksums === 'when-required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    // cairn retries itself (see retry.ts), with one policy for requests and response bodies.
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: REQUEST_TIMEOUT_MS,
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 64 }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 64 }),
    },
  };
  if (resolved.region !== undefined) config.region = resolved.region;
  if (resolved.endpoint !== undefined) config.endpoint = resolved.endpoint;
  if (settings.profile !== undefined) config.profile = settings.profile;
  if (settings.credentials) {
    const { accessKeyId, secretAccessKey, sessionToken } = settings.credentials;
    config.credentials = {
      accessKeyId: (await context.readSecret(accessKeyId, 'S3 access key id')).trim(),
      secretAccessKey: (await context.readSecret(secretAccessKey, 'S3 secret access key')).trim(),
      ...(sessionToken ? { sessionToken: (await context.readSecret(sessionToken, 'S3 session token')).trim() } : {}),
    };
  }
  return config;
}

export const s3TargetFactory: TargetFactory = {
  async create(settings: TargetSettings, context: TargetCreateContext): Promise<Target> {
    const s3Settings = settings as S3TargetSettings;
    const config = await clientConfig(s3Settings, context);
    // The SDK warns on every run that its 2027 releases will need Node 22: noise for cairn's users.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const sdk = await import('@aws-sdk/client-s3');
    return new S3Target(sdk, new sdk.S3Client(config), applyDefaults(s3Settings));
  },
};

/** The error for a key that does not exist; `isNotFound` is true for it and only for it. */
export class S3ObjectNotFoundError extends TargetError {
  constructor(readonly key: string, location: string, options?: { cause?: unknown }) {
    super(`No object '${key}' in ${location}`, options);
  }
}

/**
 * A repository under `prefix` in a bucket. Every object is written by a single PutObject
 * or a completed multipart upload, so S3 shows it whole or not at all.
 */
export class S3Target implements Target {
  readonly location: string;
  /** Where, for messages: `bucket 'b' at http://…`. */
  readonly where: string;
  readonly #retry: RetryPolicy;
  #bucketExists: Promise<boolean> | undefined;
  #staleUploadsCleanup: Promise<void> | undefined;
  readonly #direct = new DirectReads(REQUEST_TIMEOUT_MS);
  #directFailuresInARow = 0;
  /** How `readInto` went: straight into the buffers, or through the SDK after `lastFallback`. */
  readonly directReadStats = { direct: 0, fallback: 0, lastFallback: '' };

  constructor(
    readonly sdk: Sdk,
    readonly client: S3Client,
    readonly settings: ResolvedS3Settings,
    retry: Partial<RetryPolicy> = {},
  ) {
    const endpoint = settings.endpoint ?? `AWS S3${settings.region ? ` (${settings.region})` : ''}`;
    this.location = `s3://${settings.bucket}/${settings.root}${settings.endpoint ? ` at ${settings.endpoint}` : ''}`;
    this.where = `bucket '${settings.bucket}' at ${endpoint}`;
    this.#retry = { maxAttempts: settings.maxAttempts, baseDelayMs: 200, maxDelayMs: 20_000, ...retry };
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const objectKey = this.#objectKey(key);
    this.#cleanupStaleUploadsOnce();
    if (data.length >= this.settings.multipartThreshold) return this.#putMultipart(key, objectKey, data);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.#call(`upload '${key}'`, () =>
      this.client.send(
        new this.sdk.PutObjectCommand({ Bucket: this.settings.bucket, Key: objectKey, Body: body, ContentLength: body.length, ContentMD5: md5(body), ...this.#writeOptions() }),
      ),
    );
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    if (range && (range.offset < 0 || range.length < 0 || !Number.isInteger(range.offset) || !Number.isInteger(range.length))) {
      throw new TargetError(`Invalid range ${JSON.stringify(range)} for '${key}' in ${this.where}`);
    }
    if (range && range.length === 0) {
      const { size } = await this.stat(key);
      if (range.offset > size) throw this.#rangeError(key, range, size);
      return Buffer.alloc(0);
    }
    const bytes = await this.#download(key, range, async (body) => {
      const array = body ? await body.transformToByteArray() : new Uint8Array();
      return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
    });
    if (range && bytes.length !== range.length) throw this.#rangeError(key, range, undefined);
    return bytes;
  }

  /** Streams a ranged download straight into `into` (a restore's chunk slots): no buffer of its own per read. */
  async readInto(key: string, offset: number, into: readonly Uint8Array[]): Promise<void> {
    const range = { offset, length: into.reduce((sum, buffer) => sum + buffer.length, 0) };
    if (range.length === 0 || !Number.isInteger(offset) || offset < 0) {
      await this.get(key, range);
      return;
    }
    if (await this.#readDirectly(key, range, into)) return;
    const filled = await this.#download(key, range, (body) => fill(body as AsyncIterable<Uint8Array> | undefined, into));
    if (filled !== range.length) throw this.#rangeError(key, range, undefined);
  }

  /**
   * The read of `readInto` through DirectReads, signed by the SDK; false when it did not work out
   * (the SDK then does it again, with its errors and retries). After a few such reads in a row
   * (a proxy or server that answers ranges some other way) only the SDK reads.
   */
  async #readDirectly(key: string, { offset, length }: ByteRange, into: readonly Uint8Array[]): Promise<boolean> {
    if (this.#directFailuresInARow >= DIRECT_FAILURES_BEFORE_GIVING_UP) return false;
    const reason = await this.#signedGet(this.#objectKey(key), `bytes=${offset}-${offset + length - 1}`).then(
      (request) => this.#direct.readInto(request, offset, into),
      (err: unknown) => `signing: ${String((err as Error)?.message ?? err)}`,
    );
    if (reason === null) {
      this.#directFailuresInARow = 0;
      this.directReadStats.direct++;
      return true;
    }
    this.#directFailuresInARow++;
    this.directReadStats.fallback++;
    this.directReadStats.lastFallback = reason;
    return false;
  }

  /** A GetObject of `range` as the SDK would send it: built and signed by its middleware, then taken before it is sent. */
  async #signedGet(objectKey: string, range: string): Promise<SignedGet> {
    const command = new this.sdk.GetObjectCommand({ Bucket: this.settings.bucket, Key: objectKey, Range: range });
    command.middlewareStack.addRelativeTo(
      () => async (args: { request: unknown }) => {
        throw new SignedRequestTaken(args.request as SignedGet);
      },
      { relation: 'after', toMiddleware: 'httpSigningMiddleware', name: 'cairnTakeSignedRequest', override: true },
    );
    try {
      await this.client.send(command);
    } catch (err) {
      if (err instanceof SignedRequestTaken) return err.request;
      throw err;
    }
    throw new Error('the SDK sent a GetObject that was to be taken before sending');
  }

  /** Downloads the object (or a range of it) and hands its body to `read`, inside the retried call. */
  async #download<T>(key: string, range: ByteRange | undefined, read: (body: GetObjectBody | undefined) => Promise<T>): Promise<T> {
    const objectKey = this.#objectKey(key);
    return this.#call(`download '${key}'`, async () => {
      try {
        const response = await this.client.send(
          new this.sdk.GetObjectCommand({
            Bucket: this.settings.bucket,
            Key: objectKey,
            ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
          }),
        );
        // Read the body inside the retried call: a connection dropped mid-body is retried too.
        return await read(response.Body);
      } catch (err) {
        throw await this.#notFound(key, err);
      }
    }).catch((err: unknown) => {
      if (range && httpStatus(causeOf(err)) === 416) throw this.#rangeError(key, range, undefined, err);
      throw err;
    });
  }

  async stat(key: string): Promise<ObjectInfo> {
    const objectKey = this.#objectKey(key);
    const head = await this.#head(key, objectKey);
    return { key, size: head.ContentLength ?? 0 };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (!PREFIX_PATTERN.test(prefix) || prefix.split('/').some((segment) => segment === '.' || segment === '..')) throw new TargetError(`Invalid prefix '${prefix}' for ${this.where}`);
    let token: string | undefined;
    do {
      const page = await this.#call(`list '${prefix}'`, () =>
        this.client.send(
          new this.sdk.ListObjectsV2Command({
            Bucket: this.settings.bucket,
            Prefix: this.settings.root + prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(this.settings.root.length);
        if (!object.Key?.startsWith(this.settings.root) || !key || !KEY_PATTERN.test(key)) continue;
        yield { key, size: object.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async remove(key: string): Promise<void> {
    const objectKey = this.#objectKey(key);
    // S3 deletes a missing key without complaint; the contract wants not found.
    await this.#head(key, objectKey);
    await this.#call(`delete '${key}'`, () => this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.settings.bucket, Key: objectKey })));
  }

  isNotFound(err: unknown): boolean {
    return err instanceof S3ObjectNotFoundError;
  }

  async dispose(): Promise<void> {
    this.#direct.close();
    await this.#staleUploadsCleanup;
    this.client.destroy();
  }

  /**
   * Multipart uploads under the prefix not yet completed or aborted (none is a visible object).
   * Uploads of keys cairn could not have written (outside its key alphabet: another program's, in
   * a bucket without a prefix) are left out.
   */
  async listIncompleteUploads(retry: RetryPolicy = this.#retry): Promise<IncompleteUpload[]> {
    const uploads: IncompleteUpload[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.#call('list unfinished multipart uploads', () =>
        this.client.send(
          new this.sdk.ListMultipartUploadsCommand({
            Bucket: this.settings.bucket,
            Prefix: this.settings.root,
            ...(keyMarker ? { KeyMarker: keyMarker } : {}),
            ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
          }),
        ),
        retry,
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Key.startsWith(this.settings.root) || !KEY_PATTERN.test(upload.Key.slice(this.settings.root.length))) continue;
        uploads.push({ key: upload.Key, uploadId: upload.UploadId, initiated: upload.Initiated });
      }
      const more = page.IsTruncated === true;
      keyMarker = more ? page.NextKeyMarker : undefined;
      uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return uploads;
  }

  /**
   * Aborts the unfinished multipart uploads under the prefix that were started before `before`
   * (by the server's clock; uploads whose start the server does not tell are kept). `bytes` is
   * what their uploaded parts held (one ListParts per upload, done only for uploads being aborted).
   * A store without ListMultipartUploads (s3rver answers 501) has nothing to list: nothing is removed.
   */
  async removeLeftovers(before: Date, retry: RetryPolicy = this.#retry): Promise<Leftovers> {
    const removed: Leftovers = { count: 0, bytes: 0 };
    let uploads: IncompleteUpload[];
    try {
      uploads = await this.listIncompleteUploads(retry);
    } catch (err) {
      if (isNotImplemented(causeOf(err))) return removed;
      throw err;
    }
    for (const upload of uploads) {
      if (!upload.initiated || upload.initiated.getTime() >= before.getTime()) continue;
      const bytes = await this.#partBytes(upload, retry);
      if (!(await this.#abort(upload.key, upload.uploadId, retry))) continue;
      removed.count++;
      removed.bytes += bytes;
    }
    return removed;
  }

  /** Aborts the multipart uploads under the prefix started more than `olderThanMs` ago; returns how many. */
  async abortIncompleteUploads(olderThanMs: number, retry: RetryPolicy = this.#retry): Promise<number> {
    return (await this.removeLeftovers(new Date(Date.now() - olderThanMs), retry)).count;
  }

  /** Bytes held by the uploaded parts of an unfinished upload; 0 if it is gone meanwhile. */
  async #partBytes(upload: IncompleteUpload, retry: RetryPolicy): Promise<number> {
    let bytes = 0;
    let marker: string | undefined;
    try {
      do {
        const page = await this.#call(`list the parts of unfinished upload '${upload.key}'`, () =>
          this.client.send(
            new this.sdk.ListPartsCommand({ Bucket: this.settings.bucket, Key: upload.key, UploadId: upload.uploadId, ...(marker ? { PartNumberMarker: marker } : {}) }),
          ),
          retry,
        );
        for (const part of page.Parts ?? []) bytes += part.Size ?? 0;
        marker = page.IsTruncated === true && page.NextPartNumberMarker !== undefined ? String(page.NextPartNumberMarker) : undefined;
      } while (marker);
    } catch (err) {
      // Completed or aborted by someone else meanwhile (404 NoSuchUpload): the abort will say so.
      if (httpStatus(causeOf(err)) === 404) return 0;
      throw err;
    }
    return bytes;
  }

  #cleanupStaleUploadsOnce(): void {
    if (this.#staleUploadsCleanup || this.settings.abortIncompleteUploadsAfterMs <= 0) return;
    // Best effort and in the background: stores without ListMultipartUploads (s3rver) just skip it.
    // One attempt per request: this is housekeeping, and must not hold up the end of a run.
    this.#staleUploadsCleanup = this.abortIncompleteUploads(this.settings.abortIncompleteUploadsAfterMs, { ...this.#retry, maxAttempts: 1 }).then(
      () => undefined,
      () => undefined,
    );
  }

  async #putMultipart(key: string, objectKey: string, data: Uint8Array): Promise<void> {
    const { bucket, partSize, uploadConcurrency } = this.settings;
    const created = await this.#call(`start multipart upload of '${key}'`, () =>
      this.client.send(new this.sdk.CreateMultipartUploadCommand({ Bucket: bucket, Key: objectKey, ...this.#writeOptions() })),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new TargetError(`${this.where} started a multipart upload of '${key}' without an upload id`);
    try {
      const partCount = Math.ceil(data.length / partSize);
      const parts: CompletedPart[] = new Array(partCount);
      let next = 0;
      let failed = false;
      const worker = async (): Promise<void> => {
        while (!failed && next < partCount) {
          const index = next++;
          const body = Buffer.from(data.buffer, data.byteOffset + index * partSize, Math.min(partSize, data.length - index * partSize));
          try {
            const response = await this.#call(`upload part ${index + 1}/${partCount} of '${key}'`, () =>
              this.client.send(
                new this.sdk.UploadPartCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId, PartNumber: index + 1, Body: body, ContentLength: body.length, ContentMD5: md5(body) }),
              ),
            );
            parts[index] = { PartNumber: index + 1, ETag: response.ETag };
          } catch (err) {
            failed = true;
            throw err;
          }
        }
      };
      const results = await Promise.allSettled(Array.from({ length: Math.min(uploadConcurrency, partCount) }, worker));
      const rejected = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (rejected) throw rejected.reason;
      await this.#call(`complete multipart upload of '${key}'`, () =>
        this.client.send(new this.sdk.CompleteMultipartUploadCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId, MultipartUpload: { Parts: parts } })),
      );
    } catch (err) {
      // The parts are invisible but stored (and billed) until the upload is aborted.
      await this.#abort(objectKey, uploadId).catch(() => undefined);
      throw err;
    }
  }

  /** Aborts an upload; false when it was gone already (completed or aborted elsewhere), which is fine. */
  async #abort(objectKey: string, uploadId: string, retry: RetryPolicy = this.#retry): Promise<boolean> {
    return this.#call(
      `abort multipart upload of '${objectKey}'`,
      () => this.client.send(new this.sdk.AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: objectKey, UploadId: uploadId })),
      retry,
    ).then(
      () => true,
      (err: unknown) => {
        if (httpStatus(causeOf(err)) !== 404) throw err;
        return false;
      },
    );
  }

  async #head(key: string, objectKey: string) {
    return this.#call(`stat '${key}'`, async () => {
      try {
        return await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.settings.bucket, Key: objectKey }));
      } catch (err) {
        throw await this.#notFound(key, err);
      }
    });
  }

  /** Turns a 404 for the key into `S3ObjectNotFoundError`, unless the bucket itself is missing (HEAD cannot tell). */
  async #notFound(key: string, err: unknown): Promise<unknown> {
    if (!isNotFoundResponse(err) || isBucketMissing(err)) return err;
    if (!(await this.#checkBucket())) return err;
    return new S3ObjectNotFoundError(key, this.location, { cause: err });
  }

  #checkBucket(): Promise<boolean> {
    this.#bucketExists ??= this.#call('check the bucket', () => this.client.send(new this.sdk.HeadBucketCommand({ Bucket: this.settings.bucket }))).then(
      () => true,
      (err: unknown) => {
        this.#bucketExists = undefined;
        if (err instanceof TargetError && isNotFoundResponse(causeOf(err))) return false;
        // A key limited to objects (no s3:ListBucket) may not ask about the bucket: the 404 was the object's.
        if (httpStatus(causeOf(err)) === 403) return true;
        throw err;
      },
    );
    return this.#bucketExists;
  }

  /** Runs one request with retries; failures that are not retried or ran out of attempts become a TargetError naming bucket and endpoint. */
  #call<T>(what: string, request: () => Promise<T>, retry: RetryPolicy = this.#retry): Promise<T> {
    return retrying(request, retry).catch((failure: RequestFailed) => {
      const { error, attempts } = failure;
      if (error instanceof TargetError) throw error;
      throw new TargetError(describeError(error, { what, where: this.where, bucket: this.settings.bucket, attempts }), { cause: error });
    });
  }

  #objectKey(key: string): string {
    if (!KEY_PATTERN.test(key) || key.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw new TargetError(`Invalid object key '${key}' for ${this.where}`);
    }
    return this.settings.root + key;
  }

  #writeOptions() {
    const { storageClass, serverSideEncryption, sseKmsKeyId } = this.settings;
    return {
      ...(storageClass ? { StorageClass: storageClass as never } : {}),
      ...(serverSideEncryption ? { ServerSideEncryption: serverSideEncryption } : {}),
      ...(sseKmsKeyId ? { SSEKMSKeyId: sseKmsKeyId } : {}),
    };
  }

  #rangeError(key: string, range: ByteRange, size: number | undefined, cause?: unknown): TargetError {
    const sizeText = size === undefined ? '' : ` (the object has ${size} bytes)`;
    return new TargetError(`Range ${range.offset}+${range.length} is past the end of '${key}' in ${this.where}${sizeText}`, { cause });
  }
}

/** Thrown by the middleware that takes a signed request before the SDK sends it. */
class SignedRequestTaken extends Error {
  constructor(readonly request: SignedGet) {
    super('signed request taken');
  }
}

/** An unfinished multipart upload: `key` is the full object key, prefix included. */
export interface IncompleteUpload {
  key: string;
  uploadId: string;
  initiated: Date | undefined;
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** An API the store does not have (501 NotImplemented). */
function isNotImplemented(err: unknown): boolean {
  return httpStatus(err) === 501 || (err as { name?: string } | undefined)?.name === 'NotImplemented';
}

function causeOf(err: unknown): unknown {
  return err instanceof Error && err.cause !== undefined ? err.cause : err;
}

/**
 * Copies a download's body into `into`, filling each buffer in turn; returns the bytes it held.
 * A body longer than `into` is cut short and reported by its length (a range the server got wrong).
 */
async function fill(body: AsyncIterable<Uint8Array> | undefined, into: readonly Uint8Array[]): Promise<number> {
  const capacity = into.reduce((sum, buffer) => sum + buffer.length, 0);
  let index = 0;
  let at = 0;
  let total = 0;
  for await (const chunk of body ?? []) {
    total += chunk.length;
    if (total > capacity) return total;
    for (let from = 0; from < chunk.length; ) {
      while (at === into[index]!.length) {
        index++;
        at = 0;
      }
      const buffer = into[index]!;
      const count = Math.min(chunk.length - from, buffer.length - at);
      buffer.set(chunk.subarray(from, from + count), at);
      from += count;
      at += count;
    }
  }
  return total;
}
