import { UsageError } from '../errors.js';

/**
 * Glob patterns for `cairn find`: `*` matches within one name, `**` across folders, `?` one
 * character, `[abc]`/`[a-z]`/`[!abc]` one of a set, `\x` the character x itself. Names are
 * matched as text: bytes that are not UTF-8 read as U+FFFD, which `?` and `*` match.
 */
export interface PathMatcher {
  /** Whether the pattern is matched against whole paths (it has a `/`) rather than names. */
  readonly onPath: boolean;
  matches(text: string): boolean;
}

/**
 * A pattern with a `/` is matched against the whole absolute path; one that does not start
 * with `/` may match at any depth (`docs/*.txt` is `**∕docs/*.txt`). Without a `/`, against names.
 */
export function compileGlob(pattern: string, options: { ignoreCase?: boolean } = {}): PathMatcher {
  if (pattern === '') throw new UsageError('The pattern is empty');
  const onPath = pattern.includes('/');
  const anchored = !onPath || pattern.startsWith('/') ? pattern : `**/${pattern}`;
  const regex = new RegExp(`^${globToRegex(anchored)}$`, options.ignoreCase ? 'iu' : 'u');
  return { onPath, matches: (text) => regex.test(text) };
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] !== '*') {
        out += '[^/]*';
        continue;
      }
      i++;
      // `**/` also matches no folder at all: `/a/**/b` matches `/a/b`.
      if (glob[i + 1] === '/') {
        i++;
        out += '(?:.*/)?';
      } else out += '.*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new UsageError(`The pattern ${JSON.stringify(glob)} has a "[" without its "]"`);
      let set = glob.slice(i + 1, end);
      const negated = set.startsWith('!') || set.startsWith('^');
      if (negated) set = set.slice(1);
      out += `[${negated ? '^/' : ''}${set.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < glob.length) out += escapeRegex(glob[++i]!);
    else out += escapeRegex(c);
  }
  return out;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
