// Retries and error descriptions for S3 requests. No SDK import here: errors are read by shape.

export interface RetryPolicy {
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  /** The delay before retry n is random in [0, min(maxDelayMs, baseDelayMs * 2^(n-1))) ("full jitter"). */
  baseDelayMs: number;
  maxDelayMs: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** How a request ended after its retries: the last error and how many attempts were made. */
export class RequestFailed extends Error {
  constructor(readonly error: unknown, readonly attempts: number) {
    super(error instanceof Error ? error.message : String(error), { cause: error });
  }
}

const TRANSIENT_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
]);

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

interface ErrorShape {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
  cause?: unknown;
}

export function statusOf(err: unknown): number | undefined {
  return (err as ErrorShape | undefined)?.$metadata?.httpStatusCode;
}

function codeOf(err: unknown): string | undefined {
  const shape = err as ErrorShape | undefined;
  return shape?.Code ?? shape?.name;
}

/** Throttling, 5xx, timeouts and dropped connections: worth another attempt. */
export function isTransient(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const shape = err as ErrorShape;
  const status = statusOf(err);
  // 501 Not Implemented (an API the store lacks) will not change.
  if (status !== undefined && ((status >= 500 && status !== 501) || status === 429)) return true;
  if (TRANSIENT_CODES.has(codeOf(err) ?? '')) return true;
  if (NETWORK_CODES.has(shape.code ?? '')) return true;
  if (/socket hang up|ECONNRESET|ECONNREFUSED|EPIPE|premature close|aborted/i.test(shape.message ?? '') && (status === undefined || status >= 500)) return true;
  // Errors without a response at all (and no 4xx) come from the network layer.
  if (shape.cause !== undefined && shape.cause !== err && status === undefined) return isTransient(shape.cause);
  return false;
}

export function isNotFoundResponse(err: unknown): boolean {
  const code = codeOf(err);
  return statusOf(err) === 404 || code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchBucket';
}

export function isBucketMissing(err: unknown): boolean {
  return codeOf(err) === 'NoSuchBucket';
}

/** Runs `request`, retrying transient failures with exponential backoff and full jitter; rejects with `RequestFailed`. */
export async function retrying<T>(request: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  const sleep = policy.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const random = policy.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (attempt >= policy.maxAttempts || !isTransient(err)) throw new RequestFailed(err, attempt);
      await sleep(random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)));
    }
  }
}

const CREDENTIAL_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'AuthorizationHeaderMalformed',
  'InvalidClientTokenId',
]);

/** One sentence for a failed request: what failed, where, and what to check. */
export function describeError(err: unknown, context: { what: string; where: string; bucket: string; attempts: number }): string {
  const { what, where, attempts } = context;
  const status = statusOf(err);
  const code = codeOf(err);
  const shape = err as ErrorShape | undefined;
  const message = shape?.message && shape.message !== code && shape.message !== 'UnknownError' ? shape.message : '';
  const reason = [code && code !== 'Error' ? code : undefined, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
  const detail = `${reason ? `${reason}` : ''}${message ? `${reason ? ': ' : ''}${message}` : ''}` || String(err);
  if (code === 'NoSuchBucket' || (status === 404 && /bucket/i.test(what + ' ' + (message ?? '')))) {
    return `The ${where} does not exist (create it first, or check "bucket", "endpoint" and "region")`;
  }
  if (status === 404) return `The ${where} does not exist or the key is missing: cannot ${what} (${detail})`;
  if (CREDENTIAL_CODES.has(code ?? '') || status === 403 || status === 401) {
    return `S3 refused the credentials for ${where}: cannot ${what} (${detail}). Check the access key and secret (job file "credentials", AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile)`;
  }
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || status === 301) {
    return `The ${where} is in another region: cannot ${what} (${detail}). Set "region" to the bucket's region`;
  }
  if (isTransient(err)) {
    return `Cannot ${what} in ${where}: gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} (${detail})`;
  }
  return `Cannot ${what} in ${where} (${detail})`;
}
