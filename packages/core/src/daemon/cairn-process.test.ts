import { describe, expect, it } from 'vitest';
import { withMallocArenaCap } from './cairn-process.js';

describe('withMallocArenaCap', () => {
  it('caps the malloc arenas of a scheduled command at two, unless it asks for the high memory profile or sets a cap itself', () => {
    expect(withMallocArenaCap({ PATH: '/bin' })).toEqual({ PATH: '/bin', MALLOC_ARENA_MAX: '2' });
    expect(withMallocArenaCap({ CAIRN_MEMORY: 'low' }).MALLOC_ARENA_MAX).toBe('2');
    expect(withMallocArenaCap({ CAIRN_MEMORY: ' high ' }).MALLOC_ARENA_MAX).toBeUndefined();
    expect(withMallocArenaCap({ MALLOC_ARENA_MAX: '8' }).MALLOC_ARENA_MAX).toBe('8');
    // A bad CAIRN_MEMORY is the command's to report (exit 2), not the daemon's to guess.
    expect(withMallocArenaCap({ CAIRN_MEMORY: 'huge' })).toEqual({ CAIRN_MEMORY: 'huge' });
  });
});
