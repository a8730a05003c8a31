/*
 * The native POSIX helpers (@cairn/posix: xattrs, nanosecond times, device nodes, holes, owner
 * names, huge pages) for core and for plugins, which reach them only through core. Loaded on
 * first use with a dynamic import: commands that open no repository never load the addon.
 */
export type Posix = typeof import('@cairn/posix');
export type MetadataFailure = import('@cairn/posix').MetadataFailure;
export type NewFile = import('@cairn/posix').NewFile;

let loading: Promise<Posix> | undefined;

/** The @cairn/posix module, imported once. */
export function loadPosix(): Promise<Posix> {
  loading ??= import('@cairn/posix');
  return loading;
}
