import { describe, expect, it } from 'vitest';
import { LOW_PROFILE_MALLOC_ARENAS, mallocArenaCap } from './malloc-arenas.js';

describe('mallocArenaCap', () => {
  it('is the low profile’s cap unless MALLOC_ARENA_MAX is given or the profile is high', () => {
    expect(LOW_PROFILE_MALLOC_ARENAS).toBe(2);
    expect(mallocArenaCap({})).toBe(LOW_PROFILE_MALLOC_ARENAS);
    expect(mallocArenaCap({ CAIRN_MEMORY: ' low ' })).toBe(LOW_PROFILE_MALLOC_ARENAS);
    expect(mallocArenaCap({ CAIRN_MEMORY: '' })).toBe(LOW_PROFILE_MALLOC_ARENAS);
    expect(mallocArenaCap({ CAIRN_MEMORY: 'high' })).toBeUndefined();
    expect(mallocArenaCap({ MALLOC_ARENA_MAX: '4' })).toBeUndefined();
    // A value the command refuses (exit 2) caps nothing before it says so.
    expect(mallocArenaCap({ CAIRN_MEMORY: 'huge' })).toBeUndefined();
  });
});
