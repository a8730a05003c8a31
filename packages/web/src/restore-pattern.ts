/**
 * A picked path as a restore pattern that matches that path only: the restore's `include` takes
 * gitignore-style patterns, so `*`, `?`, `[`, `]` and `\` in a name are escaped. (The preview
 * takes the paths as they are: it compares them as path prefixes.)
 */
export function literalPattern(path: string): string {
  return path.replace(/[\\*?[\]]/g, '\\$&');
}
