import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IdTable } from './id-table.js';

describe('IdTable', () => {
  it('numbers ids by when they were added and finds them as bytes or hex', () => {
    const table = new IdTable();
    const ids = Array.from({ length: 5000 }, () => randomBytes(32));
    ids.forEach((id, i) => expect(table.addBytes(id)).toBe(i));
    expect(table.size).toBe(5000);
    ids.forEach((id, i) => {
      expect(table.findBytes(id)).toBe(i);
      expect(table.findHex(id.toString('hex'))).toBe(i);
      expect(table.hexAt(i)).toBe(id.toString('hex'));
    });
    expect(table.findBytes(randomBytes(32))).toBe(-1);
  });

  it('adds an id once, as bytes or as hex', () => {
    const table = new IdTable();
    const id = randomBytes(32);
    expect(table.addHex(id.toString('hex'))).toBe(0);
    expect(table.addBytes(id)).toBe(0);
    expect(table.addHex(id.toString('hex').toUpperCase())).toBe(0);
    expect(table.size).toBe(1);
  });

  it('keeps ids that share their first bytes apart', () => {
    const table = new IdTable();
    const ids = Array.from({ length: 3000 }, (_, i) => {
      const id = Buffer.alloc(32);
      id.writeUInt32BE(i, 28);
      return id;
    });
    for (const id of ids) table.addBytes(id);
    expect(table.size).toBe(3000);
    ids.forEach((id, i) => expect(table.findBytes(id)).toBe(i));
  });

  it('finds nothing for what is not a 32-byte hex id, and refuses to add it', () => {
    const table = new IdTable();
    table.addBytes(Buffer.alloc(32));
    for (const bad of ['', '00', '0'.repeat(63), '0'.repeat(65), 'zz'.repeat(32)]) {
      expect(table.findHex(bad)).toBe(-1);
      expect(() => table.addHex(bad)).toThrow(TypeError);
    }
    expect(table.findHex('0'.repeat(64))).toBe(0);
  });
});
