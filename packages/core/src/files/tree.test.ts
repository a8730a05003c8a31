import { describe, expect, it } from 'vitest';
import { DamageError } from '../errors.js';
import { decodeTree, encodeTree, type TreeEntry } from './tree.js';

const common = { uid: 0, gid: 0, mtimeNs: 1n, ctimeNs: 2n, atimeNs: 3n, inode: 4n, device: 5n, links: 1 };
// Names with every byte the entry scanner must not take for structure, and one not UTF-8.
const TRICKY = ['a"}{', 'b\\', 'c]["x', 'd\\"', 'é{}', '\u2028 ]},'];

/** A folder of `count` files and some tricky names: past 1 MiB at 4,000 or so. */
function folder(count: number): TreeEntry[] {
  const entries: TreeEntry[] = [];
  for (let i = 0; i < count; i++) {
    const name = Buffer.from(`${TRICKY[i % TRICKY.length]}-${i}`);
    entries.push({ ...common, name, type: 'file', mode: 0o644, size: 5, user: 'u', xattrs: [{ name: 'user.q"}', value: Buffer.from('{]') }], content: [{ offset: 0, length: 5, id: 'ab'.repeat(32) }] });
  }
  entries.push({ ...common, name: Buffer.from([0xff, 0x7b]), type: 'symlink', mode: 0o777, size: 1, target: Buffer.from('}') });
  entries.push({ ...common, name: Buffer.from('sub'), type: 'dir', mode: 0o755, size: 0, subtree: 'cd'.repeat(32) });
  return entries;
}

/** The same tree in another valid JSON layout (a space after the version), which is parsed whole. */
const relaidOut = (plain: Buffer) => Buffer.from(plain.toString('utf8').replace('"version":1,', '"version":1, '));

describe('decodeTree', () => {
  it('decodes a large tree an entry at a time to exactly what parsing it whole gives', () => {
    const plain = encodeTree(folder(6000));
    expect(plain.length).toBeGreaterThan(1 << 20);
    const decoded = decodeTree('big', plain);
    expect(decoded).toEqual(decodeTree('big', relaidOut(plain)));
    expect(decoded).toHaveLength(6002);
    expect(encodeTree(decoded).equals(plain)).toBe(true);
  });

  it('finds damage in a large tree as in a small one', () => {
    const plain = encodeTree(folder(6000)).toString('utf8');
    const badMode = Buffer.from(plain.replace('"mode":420', '"mode":-1'));
    expect(() => decodeTree('big', badMode)).toThrow(DamageError);
    expect(() => decodeTree('big', badMode)).toThrow(/invalid entry \d+: invalid mode/);
    for (const damaged of [plain.slice(0, -3), plain.replace('},{', '},,{'), plain.replace(']}', ',]}'), plain.replace('"version":1', '"version":2')]) {
      expect(() => decodeTree('big', Buffer.from(damaged))).toThrow(DamageError);
    }
  });
});
