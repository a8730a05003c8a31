/*
 * The low memory profile's cap on glibc's malloc arenas. glibc gives each thread that allocates
 * a malloc arena of its own, up to eight per core, and memory freed in one is not reused by the
 * others: a first files backup of the corpus peaked about 12 MB higher without the cap (medians
 * of twelve), at the same speed. MALLOC_ARENA_MAX caps them but is read only
 * when a process starts; the same cap set through mallopt is consulted whenever a thread needs
 * an arena, so the `cairn` executable sets it first thing, before loading its code starts the
 * thread pool (arenas made before stay). The daemon also passes MALLOC_ARENA_MAX to the commands
 * it starts (daemon/cairn-process.ts).
 */

/** Malloc arenas in the low memory profile. */
export const LOW_PROFILE_MALLOC_ARENAS = 2;

/**
 * The cap for a process with this environment: the low profile's (CAIRN_MEMORY unset, blank or
 * `low`), unless MALLOC_ARENA_MAX was given; none for `high` (or a value the command will refuse:
 * memoryProfile reports it).
 */
export function mallocArenaCap(env: NodeJS.ProcessEnv): number | undefined {
  if (env.MALLOC_ARENA_MAX !== undefined) return undefined;
  return (env.CAIRN_MEMORY?.trim() || 'low') === 'low' ? LOW_PROFILE_MALLOC_ARENAS : undefined;
}

/** Sets mallocArenaCap(env) through @cairn/posix; without the addon, glibc's own cap stays. */
export async function capMallocArenas(env: NodeJS.ProcessEnv): Promise<void> {
  const cap = mallocArenaCap(env);
  if (cap === undefined) return;
  const posix = await import('@cairn/posix').catch(() => undefined);
  posix?.limitMallocArenas(cap);
}
