import { run } from './exec.js';

/** The chunk size volume jobs use unless they name one (the repository's default). */
export const DEFAULT_VOLUME_CHUNK_SIZE = 4 * 1024 * 1024;

/**
 * The `blake3-chunks` digest of an image file, computed with standard tools only, as
 * docs/FORMAT.md tells a user to check a restored image against its snapshot.
 */
export async function imageDigestWithStandardTools(path: string, chunkSize = DEFAULT_VOLUME_CHUNK_SIZE): Promise<string> {
  const script = 'set -o pipefail; split -b "$1" --filter="b3sum --no-names" "$2" | b3sum --no-names';
  return (await run('bash', ['-c', script, 'image-digest', String(chunkSize), path])).trim();
}
