import { describe, expect, it } from 'vitest';
import { decodeTree, encodeTree, type TreeEntry } from './tree.js';
import { keyOfName, sameValue, TreeBuilder, type BuiltTree } from './tree-builder.js';

const common = { uid: 0, gid: 0, mtimeNs: 1n, ctimeNs: 2n, atimeNs: 3n, inode: 4n, device: 5n, links: 1 };
const file = (name: string | Buffer, size = 10, extra: Partial<TreeEntry> = {}): TreeEntry => ({
  ...common,
  name: Buffer.isBuffer(name) ? name : Buffer.from(name),
  type: 'file',
  mode: 0o644,
  size,
  content: size ? [{ offset: 0, length: size, id: 'ab'.repeat(32) }] : [],
  ...extra,
});
const entries = (): TreeEntry[] => [
  file('b.txt'),
  file(Buffer.from([0x61, 0xff]), 0),
  file('é.txt', 3, { xattrs: [{ name: 'user.k', value: Buffer.from('v') }] }),
  { ...common, name: Buffer.from('dir'), type: 'dir', mode: 0o755, size: 0, subtree: 'cd'.repeat(32) },
];
// As a backup has them: decoded from the parent's tree blob.
const previousOf = (list: TreeEntry[]) => ({ id: 'ef'.repeat(32), entries: new Map(decodeTree('ef', encodeTree(list)).map((e) => [keyOfName(e.name), e])) });

/** Follows the entries in the given order, each completing after the ones before it (or at once). */
async function build(builder: TreeBuilder, list: TreeEntry[]): Promise<BuiltTree> {
  list.forEach((entry, i) => builder.follow(new Promise((resolve) => setTimeout(() => resolve(entry), list.length - i))));
  return builder.finish();
}

describe('TreeBuilder', () => {
  it('builds the same bytes as encodeTree, whatever order the entries complete in', async () => {
    const built = await build(new TreeBuilder(), entries());
    expect(built).toEqual({ unchanged: false, plain: encodeTree(entries()) });
    const reversed = await build(new TreeBuilder(), entries().reverse());
    expect(reversed).toEqual(built);
  });

  it("answers the parent's tree id when every entry equals the parent's", async () => {
    const previous = previousOf(entries());
    expect(await build(new TreeBuilder(previous), entries())).toEqual({ unchanged: true, id: previous.id });
  });

  it("encodes a new tree when an entry changed, one is missing or one is new, keeping the parent's for the rest", async () => {
    const previous = previousOf(entries());
    const changed = entries();
    changed[0] = file('b.txt', 11);
    expect(await build(new TreeBuilder(previous), changed)).toEqual({ unchanged: false, plain: encodeTree(changed) });
    const fewer = entries().slice(1);
    expect(await build(new TreeBuilder(previous), fewer)).toEqual({ unchanged: false, plain: encodeTree(fewer) });
    const more = [...entries(), file('new')];
    expect(await build(new TreeBuilder(previous), more)).toEqual({ unchanged: false, plain: encodeTree(more) });
  });

  it('skips entries that complete as nothing, and an empty folder is an empty tree', async () => {
    const builder = new TreeBuilder();
    builder.follow(Promise.resolve(undefined));
    builder.follow(Promise.resolve(file('kept')));
    expect(await builder.finish()).toEqual({ unchanged: false, plain: encodeTree([file('kept')]) });
    expect(await new TreeBuilder().finish()).toEqual({ unchanged: false, plain: encodeTree([]) });
  });

  it('fails with the first failure once every entry has settled', async () => {
    const builder = new TreeBuilder();
    let lateSettled = false;
    builder.follow(Promise.reject(new Error('first')));
    builder.follow(new Promise((_, reject) => setTimeout(() => reject(new Error('second')), 5)));
    builder.follow(new Promise((resolve) => setTimeout(() => resolve((lateSettled = true) && file('late')), 10)));
    await expect(builder.finish()).rejects.toThrow('first');
    expect(lateSettled).toBe(true);
  });

  it('rejects duplicate names as encodeTree does', async () => {
    await expect(build(new TreeBuilder(), [file('same'), file('same', 3)])).rejects.toThrow(/duplicate name "same"/);
  });
});

describe('sameValue', () => {
  it('compares entries field by field, an absent field equal to an undefined one', () => {
    expect(sameValue(file('a'), file('a'))).toBe(true);
    expect(sameValue(file('a'), { ...file('a'), changed: undefined })).toBe(true);
    expect(sameValue(file('a'), { ...file('a'), changed: true })).toBe(false);
    expect(sameValue(file('a'), file('b'))).toBe(false);
    expect(sameValue(file('a'), { ...file('a'), mtimeNs: 9n })).toBe(false);
    expect(sameValue(file('a'), { ...file('a'), content: [{ offset: 0, length: 10, id: 'cd'.repeat(32) }] })).toBe(false);
  });
});
