/*
 * Exclude patterns, gitignore style. A pattern is matched against a path relative to the
 * backed-up root it lies under (`docs/a.txt` below root `/home/u`) and, when it is anchored,
 * against the absolute path too (`/home/u/docs/a.txt`), so both `/docs/*.txt` and
 * `/home/u/docs/*.txt` work. Names are bytes: invalid UTF-8 is decoded losslessly (each bad
 * byte as its own code point), so `*` and `?` match such names as well.
 *
 *   *        any run of characters except `/`
 *   ?        one character except `/`
 *   [abc]    one of the set; ranges `[a-z]`; `[!abc]` or `[^abc]` negates
 *   **       `**\/x` in any folder, `x/**` everything inside x, `a/**\/b` zero or more folders
 *   /x       leading slash: anchored (at the root of a backed-up path, or an absolute path)
 *   a/b      a slash inside also anchors it, as in gitignore; without one it matches a name at any depth
 *   x/       trailing slash: folders only
 *   !x       re-includes what an earlier pattern excluded (the last matching pattern decides);
 *            as in gitignore, nothing inside an excluded folder can be re-included
 *   \c       the character c itself (`\*`, `\!`, `\#`)
 */

export interface ExcludePattern {
  /** The pattern as written, for messages. */
  source: string;
  negated: boolean;
  foldersOnly: boolean;
  /** Matched against the whole relative (and absolute) path; otherwise against the name alone. */
  anchored: boolean;
  regex: RegExp;
}

/** Compiles one pattern; throws an Error saying what is wrong with it. */
export function compilePattern(text: string): ExcludePattern {
  let body = text;
  const negated = body.startsWith('!');
  if (negated) body = body.slice(1);
  const foldersOnly = body.endsWith('/') && !body.endsWith('\\/');
  if (foldersOnly) body = body.replace(/\/+$/, '');
  if (body === '' || body === '/') throw new Error(`the pattern ${JSON.stringify(text)} matches nothing`);
  const leadingSlash = body.startsWith('/');
  if (leadingSlash) body = body.replace(/^\/+/, '');
  const anchored = leadingSlash || body.includes('/');
  return { source: text, negated, foldersOnly, anchored, regex: new RegExp(`^${translate(body, text)}$`, 'su') };
}

/** The regular expression for a pattern's body (without `!`, leading and trailing slashes). */
function translate(body: string, text: string): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '*' && body[i + 1] === '*' && (i === 0 || body[i - 1] === '/') && (i + 2 === body.length || body[i + 2] === '/')) {
      if (i + 2 === body.length) out += '.*'; // `x/**`: everything below (the `/` before it is already out)
      else out += '(?:[^/]*/)*'; // `**/`: zero or more folders
      i += 2; // skip the second `*` and the `/` after it
      continue;
    }
    if (c === '*') {
      while (body[i + 1] === '*') i++;
      out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = classEnd(body, i);
      if (end < 0) out += '\\[';
      else {
        out += characterClass(body.slice(i + 1, end), text);
        i = end;
      }
    } else if (c === '\\') {
      if (i + 1 === body.length) throw new Error(`the pattern ${JSON.stringify(text)} ends with a lone backslash`);
      out += escapeRegex(body[++i]!);
    } else out += escapeRegex(c);
  }
  return out;
}

/** Index of the `]` closing the class opened at `start`, or -1 when it is not closed. */
function classEnd(body: string, start: number): number {
  let i = start + 1;
  if (body[i] === '!' || body[i] === '^') i++;
  if (body[i] === ']') i++; // a `]` first is a member
  for (; i < body.length; i++) {
    if (body[i] === '\\') i++;
    else if (body[i] === ']') return i;
  }
  return -1;
}

function characterClass(members: string, text: string): string {
  let negated = false;
  if (members.startsWith('!') || members.startsWith('^')) {
    negated = true;
    members = members.slice(1);
  }
  let out = '';
  for (let i = 0; i < members.length; i++) {
    let c = members[i]!;
    if (c === '\\' && i + 1 < members.length) c = members[++i]!;
    out += escapeClassMember(c);
  }
  if (out === '') throw new Error(`the pattern ${JSON.stringify(text)} has an empty character class`);
  // A set never matches the folder separator, negated or not.
  return negated ? `[^/${out}]` : `(?!/)[${out}]`;
}

function escapeRegex(c: string): string {
  // Only syntax characters may be escaped in a Unicode-mode regular expression.
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

function escapeClassMember(c: string): string {
  // `-` stays a range operator between members; the rest that is special in a class is escaped.
  return /[\\\]^[]/.test(c) ? `\\${c}` : c;
}

/** Patterns of an exclude file: one a line; blank lines and lines starting with `#` are skipped; trailing spaces are dropped unless escaped. */
export function patternLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/(?<!\\)\s+$/, ''))
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** A path to decide on: relative to its backed-up root, and absolute; both without a trailing slash. */
export interface CandidatePath {
  relative: string;
  absolute: string;
  name: string;
}

/** A compiled list of patterns: the last one that matches a path decides whether it is excluded. */
export class ExcludeMatcher {
  private readonly patterns: ExcludePattern[];

  constructor(patterns: readonly string[]) {
    this.patterns = patterns.map(compilePattern);
  }

  get isEmpty(): boolean {
    return this.patterns.length === 0;
  }

  /** Whether any pattern looks at the whole path (so callers build it only when needed). */
  get needsPaths(): boolean {
    return this.patterns.some((p) => p.anchored);
  }

  excludes(path: CandidatePath, isFolder: boolean): boolean {
    for (let i = this.patterns.length - 1; i >= 0; i--) {
      const pattern = this.patterns[i]!;
      if (pattern.foldersOnly && !isFolder) continue;
      if (matches(pattern, path)) return !pattern.negated;
    }
    return false;
  }
}

function matches(pattern: ExcludePattern, path: CandidatePath): boolean {
  if (!pattern.anchored) return pattern.regex.test(path.name);
  return pattern.regex.test(path.relative) || pattern.regex.test(path.absolute.slice(1));
}

/** A file name as text for matching: UTF-8, with each byte that is not valid UTF-8 as its own code point (U+DC00 + byte, as Python's surrogateescape). */
export function nameText(name: Buffer): string {
  const text = name.toString('utf8');
  if (!text.includes('\uFFFD') || Buffer.byteLength(text) === name.length && Buffer.from(text).equals(name)) return text;
  return escapedDecode(name);
}

function escapedDecode(bytes: Buffer): string {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const length = utf8SequenceLength(bytes, i);
    if (length === 0) {
      out += String.fromCharCode(0xdc00 + bytes[i]!);
      i++;
    } else {
      out += bytes.toString('utf8', i, i + length);
      i += length;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence at `i`, or 0 when the byte there does not start one. */
function utf8SequenceLength(bytes: Buffer, i: number): number {
  const b = bytes[i]!;
  const length = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (length <= 1) return length;
  if (i + length > bytes.length) return 0;
  for (let k = 1; k < length; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return 0;
  // Overlong forms, surrogates and code points above U+10FFFF are invalid too.
  return Buffer.from(bytes.toString('utf8', i, i + length)).equals(bytes.subarray(i, i + length)) ? length : 0;
}
