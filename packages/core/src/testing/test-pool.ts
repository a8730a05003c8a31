import { NONE_CODEC } from '../codecs/builtin.js';
import { blobIdSchemeOf, type Repository } from '../repository/repository.js';
import { WorkerPool } from '../pipeline/worker-pool.js';

/** A worker pool with the repository's keys that stores blobs uncompressed: what unit tests of the pipeline need. Dispose it. */
export async function spawnTestPool(repository: Repository, size = 2): Promise<WorkerPool> {
  const pool = WorkerPool.spawn(size);
  await pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), codecs: [NONE_CODEC], writeCodec: { type: 'none' }, writeCodecId: 0 });
  return pool;
}
