import { InconsistentMetadataError } from './inconsistent.js';

/**
 * The LVM2 text metadata format (lib/config/config.c in LVM2): `key = value` pairs and nested
 * `name { ... }` sections; values are integers, floats, "strings" (with \" and \\ escapes) and
 * [arrays] of those; `#` starts a comment that runs to the end of the line. A strict reader:
 * anything it does not understand is an InconsistentMetadataError, never a guess.
 */

export type LvmScalar = number | string;
export type LvmValue = LvmScalar | LvmScalar[];
export interface LvmSection {
  readonly values: Map<string, LvmValue>;
  readonly sections: Map<string, LvmSection>;
}

/** Deeper than any metadata LVM writes (about 5 levels); a bound keeps hostile input from exhausting the stack. */
const MAX_DEPTH = 32;
const NAME = /[A-Za-z0-9_.+\-]/;

function fail(message: string): never {
  throw new InconsistentMetadataError(`LVM metadata: ${message}`);
}

class Tokenizer {
  at = 0;
  constructor(private readonly text: string) {}

  /** Skips blanks and comments; returns the next character without consuming it ('' at the end). */
  peek(): string {
    for (;;) {
      const c = this.text[this.at];
      if (c === undefined) return '';
      if (c === '#') {
        const end = this.text.indexOf('\n', this.at);
        this.at = end < 0 ? this.text.length : end + 1;
      } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
        this.at++;
      } else {
        return c;
      }
    }
  }

  expect(c: string, what: string): void {
    if (this.peek() !== c) fail(`expected "${c}" ${what} at byte ${this.at}, found ${this.describeNext()}`);
    this.at++;
  }

  describeNext(): string {
    const c = this.peek();
    return c === '' ? 'the end of the text' : JSON.stringify(c);
  }

  name(): string {
    const start = this.at;
    while (this.at < this.text.length && NAME.test(this.text[this.at]!)) this.at++;
    if (this.at === start) fail(`expected a name at byte ${start}, found ${this.describeNext()}`);
    return this.text.slice(start, this.at);
  }

  string(): string {
    this.expect('"', 'to open a string');
    let value = '';
    for (;;) {
      const c = this.text[this.at++];
      if (c === undefined) fail('a string runs to the end of the text');
      if (c === '"') return value;
      if (c === '\\') {
        const next = this.text[this.at++];
        if (next === undefined) fail('a string runs to the end of the text');
        value += next;
      } else {
        value += c;
      }
    }
  }

  number(): number {
    const match = /^-?[0-9]+(\.[0-9]+)?/.exec(this.text.slice(this.at, this.at + 40));
    if (!match) fail(`expected a value at byte ${this.at}, found ${this.describeNext()}`);
    this.at += match[0].length;
    const value = Number(match[0]);
    if (!Number.isFinite(value) || (match[1] === undefined && !Number.isSafeInteger(value))) fail(`the number ${match[0]} is out of range`);
    return value;
  }
}

function parseScalar(tokens: Tokenizer): LvmScalar {
  return tokens.peek() === '"' ? tokens.string() : tokens.number();
}

function parseValue(tokens: Tokenizer): LvmValue {
  if (tokens.peek() !== '[') return parseScalar(tokens);
  tokens.at++;
  const items: LvmScalar[] = [];
  if (tokens.peek() === ']') {
    tokens.at++;
    return items;
  }
  for (;;) {
    items.push(parseScalar(tokens));
    const c = tokens.peek();
    tokens.at++;
    if (c === ']') return items;
    if (c !== ',') fail(`expected "," or "]" in an array at byte ${tokens.at - 1}, found ${c === '' ? 'the end of the text' : JSON.stringify(c)}`);
  }
}

function parseEntries(tokens: Tokenizer, depth: number, closing: boolean): LvmSection {
  if (depth > MAX_DEPTH) fail(`sections are nested more than ${MAX_DEPTH} deep`);
  const section: LvmSection = { values: new Map(), sections: new Map() };
  for (;;) {
    const c = tokens.peek();
    if (c === '') {
      if (closing) fail('a section is not closed before the end of the text');
      return section;
    }
    if (c === '}') {
      if (!closing) fail(`an unmatched "}" at byte ${tokens.at}`);
      tokens.at++;
      return section;
    }
    const name = tokens.name();
    if (section.values.has(name) || section.sections.has(name)) fail(`"${name}" is defined twice in one section`);
    if (tokens.peek() === '{') {
      tokens.at++;
      section.sections.set(name, parseEntries(tokens, depth + 1, true));
    } else {
      tokens.expect('=', `after "${name}"`);
      section.values.set(name, parseValue(tokens));
    }
  }
}

/** Parses metadata text (a NUL ends it, as on disk) into its top-level section. */
export function parseLvmText(text: string): LvmSection {
  const end = text.indexOf('\0');
  return parseEntries(new Tokenizer(end < 0 ? text : text.slice(0, end)), 0, false);
}

/** Typed access to a section's values; a missing or mistyped value is an InconsistentMetadataError naming `where`. */
export class SectionReader {
  constructor(
    readonly section: LvmSection,
    readonly where: string,
  ) {}

  has(key: string): boolean {
    return this.section.values.has(key);
  }

  integer(key: string, min = 0): number {
    const value = this.section.values.get(key);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) fail(`${this.where}: "${key}" is ${describe(value)}, not an integer of at least ${min}`);
    return value;
  }

  string(key: string): string {
    const value = this.section.values.get(key);
    if (typeof value !== 'string') fail(`${this.where}: "${key}" is ${describe(value)}, not a string`);
    return value;
  }

  array(key: string): LvmScalar[] {
    const value = this.section.values.get(key);
    if (!Array.isArray(value)) fail(`${this.where}: "${key}" is ${describe(value)}, not an array`);
    return value;
  }

  /** A list of flags (`status = ["READ", "WRITE", "VISIBLE"]`); absent means none. */
  flags(key: string): string[] {
    if (!this.has(key)) return [];
    const items = this.array(key);
    if (!items.every((item): item is string => typeof item === 'string')) fail(`${this.where}: "${key}" holds something other than strings`);
    return items;
  }

  child(name: string): SectionReader {
    const section = this.section.sections.get(name);
    if (!section) fail(`${this.where}: the section "${name}" is missing`);
    return new SectionReader(section, `${this.where}/${name}`);
  }

  children(): SectionReader[] {
    return [...this.section.sections].map(([name, section]) => new SectionReader(section, `${this.where}/${name}`));
  }

  get name(): string {
    return this.where.slice(this.where.lastIndexOf('/') + 1);
  }
}

function describe(value: LvmValue | undefined): string {
  if (value === undefined) return 'missing';
  return JSON.stringify(value).slice(0, 40);
}
