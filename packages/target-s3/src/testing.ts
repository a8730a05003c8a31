// Helpers for tests and server harnesses, imported as `@cairn/target-s3/testing`.
import { applyDefaults, clientConfig, S3Target, type S3TargetSettings } from './s3-target.js';
import type { RetryPolicy } from './retry.js';
import type { SecretRef } from '@cairn/core';

export { S3Target, S3ObjectNotFoundError, applyDefaults, type S3TargetSettings } from './s3-target.js';
export { retrying, isTransient, describeError, RequestFailed, type RetryPolicy } from './retry.js';

/** Static credentials for tests: the secrets are given inline instead of through `readSecret`. */
export interface TestCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Opens an S3Target straight from settings, with inline credentials and an optional retry policy (e.g. no sleeping). */
export async function openS3Target(settings: Partial<S3TargetSettings> & { bucket: string }, credentials: TestCredentials, retry: Partial<RetryPolicy> = {}): Promise<S3Target> {
  const full: S3TargetSettings = { ...settings, type: 's3', credentials: { accessKeyId: { env: 'ID' }, secretAccessKey: { env: 'SECRET' } } };
  const config = await clientConfig(full, {
    readSecret: async (ref: SecretRef) => ('env' in ref && ref.env === 'ID' ? credentials.accessKeyId : credentials.secretAccessKey),
  });
  const sdk = await import('@aws-sdk/client-s3');
  return new S3Target(sdk, new sdk.S3Client(config), applyDefaults(full), retry);
}

/** Creates a bucket (us-east-1, no LocationConstraint, which Ceph RGW requires) if it does not exist. */
export async function createBucket(endpoint: string, bucket: string, credentials: TestCredentials): Promise<void> {
  const target = await openS3Target({ endpoint, bucket }, credentials);
  try {
    await target.client.send(new target.sdk.CreateBucketCommand({ Bucket: bucket })).catch((err: { name?: string }) => {
      if (err.name !== 'BucketAlreadyOwnedByYou' && err.name !== 'BucketAlreadyExists') throw err;
    });
  } finally {
    await target.dispose();
  }
}
