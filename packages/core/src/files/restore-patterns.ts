import { UsageError } from '../errors.js';

/*
 * Which entries of a file snapshot a restore takes: gitignore-style patterns on the absolute
 * snapshot path (`/home/u/docs/a.txt`).
 *
 * - `*` matches within one name, `?` one character, `[abc]`/`[!a-z]` one of a set, `\x` the
 *   character x; `**` as a whole name matches any number of names (also none).
 * - A pattern with a slash at the start or in the middle is anchored at the snapshot's root
 *   (`/home/u/docs`, `home/u/*.txt`); one without (`*.txt`, `node_modules`) matches a name at
 *   any depth, as in .gitignore.
 * - A trailing slash (`cache/`) matches folders only.
 * - A pattern that matches a folder matches everything below it: including `/home/u/docs`
 *   restores the whole folder, excluding `cache/` leaves out every cache folder's contents.
 * - With no include pattern everything is included; an entry is restored when it is included
 *   and neither it nor a folder above it is excluded. Names are matched as UTF-8 text (bytes
 *   that are not valid UTF-8 read as U+FFFD, which `?` and `*` match).
 */

const GLOBSTAR = '**';

type Segment = RegExp | typeof GLOBSTAR;

/** One compiled pattern. */
export class PathPattern {
  readonly #segments: Segment[];
  readonly #foldersOnly: boolean;

  constructor(readonly source: string) {
    let text = source.trim();
    if (text === '' || text === '/') throw new UsageError(`"${source}" is not a path pattern (to take everything, leave out --include)`);
    this.#foldersOnly = text.endsWith('/');
    text = text.replace(/\/+$/, '');
    const anchored = text.includes('/');
    const names = text.split('/').filter((name) => name !== '');
    this.#segments = [...(anchored ? [] : [GLOBSTAR as Segment]), ...names.map(segmentOf)];
  }

  /** Whether the pattern matches the path itself (its names from the root). */
  matches(names: readonly string[], isFolder: boolean): boolean {
    if (this.#foldersOnly && !isFolder) return false;
    return matchFrom(this.#segments, 0, names, 0);
  }

  /** Whether some path strictly below the folder `names` could match (so the folder must be walked). */
  couldMatchBelow(names: readonly string[]): boolean {
    return prefixFrom(this.#segments, 0, names, 0);
  }
}

/** The include and exclude patterns of one restore. */
export class PathSelection {
  readonly #includes: PathPattern[];
  readonly #excludes: PathPattern[];

  constructor(includes: readonly string[] = [], excludes: readonly string[] = []) {
    this.#includes = includes.map((p) => new PathPattern(p));
    this.#excludes = excludes.map((p) => new PathPattern(p));
  }

  /** True when everything is taken (no include pattern). */
  get includesAll(): boolean {
    return this.#includes.length === 0;
  }

  isExcluded(names: readonly string[], isFolder: boolean): boolean {
    return this.#excludes.some((p) => p.matches(names, isFolder));
  }

  /** Whether an include pattern matches this path (an entry below an included folder is included without asking). */
  isIncluded(names: readonly string[], isFolder: boolean): boolean {
    return this.includesAll || this.#includes.some((p) => p.matches(names, isFolder));
  }

  /** Whether a folder that is not included itself may hold included entries. */
  mayIncludeBelow(names: readonly string[]): boolean {
    return this.#includes.some((p) => p.couldMatchBelow(names));
  }
}

function matchFrom(segments: readonly Segment[], i: number, names: readonly string[], j: number): boolean {
  if (i === segments.length) return j === names.length;
  const segment = segments[i]!;
  if (segment === GLOBSTAR) {
    for (let k = j; k <= names.length; k++) if (matchFrom(segments, i + 1, names, k)) return true;
    return false;
  }
  return j < names.length && segment.test(names[j]!) && matchFrom(segments, i + 1, names, j + 1);
}

/** Whether `names` can be extended by at least one more name into a match. */
function prefixFrom(segments: readonly Segment[], i: number, names: readonly string[], j: number): boolean {
  if (i === segments.length) return false;
  const segment = segments[i]!;
  if (segment === GLOBSTAR) return true;
  if (j === names.length) return true;
  return segment.test(names[j]!) && prefixFrom(segments, i + 1, names, j + 1);
}

function segmentOf(name: string): Segment {
  if (name === GLOBSTAR) return GLOBSTAR;
  let regex = '';
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '*') regex += '.*';
    else if (c === '?') regex += '.';
    else if (c === '\\' && i + 1 < name.length) regex += escapeRegex(name[++i]!);
    else if (c === '[') {
      const end = name.indexOf(']', i + 2);
      if (end < 0) {
        regex += '\\[';
        continue;
      }
      let set = name.slice(i + 1, end);
      if (set.startsWith('!')) set = '^' + set.slice(1);
      regex += `[${set.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else regex += escapeRegex(c);
  }
  return new RegExp(`^${regex}$`, 's');
}

function escapeRegex(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
