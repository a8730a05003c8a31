import { UsageError } from '../errors.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { TreeEntry } from './tree.js';
import { joinPath, pathNames, type TreeReader } from './tree-reader.js';
import type { BlobStream } from './content-reader.js';
import { TarWriter, type TarEntryType } from './tar-writer.js';

/** Zeros written for holes, a piece at a time. */
const ZEROS = Buffer.alloc(1024 * 1024);

export interface DumpInput {
  reader: TreeReader;
  blobs: BlobStream;
  snapshot: string;
  manifest: FileSnapshotManifest;
  /** Absolute snapshot path of a file or folder. */
  path: string;
  /** Takes the next bytes of the output; resolves when more may come (backpressure). */
  write(bytes: Buffer): Promise<void>;
}

export interface DumpOutcome {
  /** `content`: a regular file's bytes; `tar`: a folder (or a link, node or FIFO) as a tar stream. */
  format: 'content' | 'tar';
  bytes: number;
}

/**
 * Writes one path of a file snapshot: a regular file's content as it is (holes as zeros), or
 * anything else, a folder with everything below it, as a tar stream whose paths start with
 * the folder's own name (`docs/a.txt` for `/home/u/docs`; the root's children for `/`).
 */
export async function dumpPath(input: DumpInput): Promise<DumpOutcome> {
  const entry = await input.reader.lookup(input.manifest, input.path);
  if (!entry) throw new UsageError(`Snapshot ${input.snapshot.slice(0, 12)} holds no ${input.path}`);
  if (entry.type === 'file') {
    const contents = input.blobs.read(entry.content!)[Symbol.asyncIterator]();
    return { format: 'content', bytes: await writeContent(entry, contents, input.write) };
  }
  const items = await tarItems(input.reader, entry, input.path);
  const contents = input.blobs.read(items.flatMap((item) => (item.type === 'file' ? item.entry.content! : [])))[Symbol.asyncIterator]();
  const tar = new TarWriter(input.write);
  for (const item of items) {
    await tar.header({ ...item.entry, path: item.path, type: item.type, size: item.type === 'file' ? item.entry.size : 0, ...(item.link && { link: item.link }) });
    if (item.type === 'file') await tar.endContent(await writeContent(item.entry, contents, (bytes) => tar.content(bytes)));
  }
  await tar.finish();
  return { format: 'tar', bytes: tar.bytesWritten };
}

/** A file's bytes in order: its chunks from `contents`, zeros for the holes between and after them. */
async function writeContent(entry: TreeEntry, contents: AsyncIterator<Buffer>, write: (bytes: Buffer) => Promise<void>): Promise<number> {
  let at = 0;
  for (const chunk of entry.content!) {
    await writeZeros(chunk.offset - at, write);
    const next = await contents.next();
    if (next.done) throw new Error('internal error: the blob stream ended early');
    await write(next.value);
    at = chunk.offset + chunk.length;
  }
  await writeZeros(entry.size - at, write);
  return entry.size;
}

async function writeZeros(length: number, write: (bytes: Buffer) => Promise<void>): Promise<void> {
  for (let left = length; left > 0; left -= ZEROS.length) await write(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
}

interface TarItem {
  path: Buffer;
  entry: TreeEntry;
  type: TarEntryType;
  link?: Buffer;
}

/** The entry and everything below it, depth-first, with tar paths; later names of a hard-linked file become links to the first. */
async function tarItems(reader: TreeReader, top: TreeEntry, path: string): Promise<TarItem[]> {
  const items: TarItem[] = [];
  const firstOfInode = new Map<string, Buffer>();
  const add = async (entry: TreeEntry, tarPath: Buffer) => {
    const key = `${entry.device}:${entry.inode}`;
    const first = entry.links > 1 && entry.type !== 'dir' ? firstOfInode.get(key) : undefined;
    if (first) items.push({ path: tarPath, entry, type: 'hardlink', link: first });
    else {
      if (entry.links > 1 && entry.type !== 'dir') firstOfInode.set(key, tarPath);
      items.push({ path: tarPath, entry, type: entry.type, ...(entry.target && { link: entry.target }) });
    }
    if (entry.type !== 'dir' || entry.subtree === undefined) return;
    for (const child of await reader.read(entry.subtree)) await add(child, joinPath(tarPath, child.name));
  };
  const names = pathNames(path);
  if (names.length === 0) {
    // The root: its children, as they were backed up (`home/...`).
    for (const child of await reader.read(top.subtree!)) await add(child, child.name);
  } else await add(top, names[names.length - 1]!);
  return items;
}
