import { inject, injectable, type ErrorObject, type ValidateFunction } from '../vendor.js';
import { PluginHost, type LoadedContribution } from '../plugins/plugin-host.js';
import { CONTRIBUTION_POINTS, type ContributionPoint } from '../plugins/manifest.js';
import { checkSchema, pruneSchema, scheduleSchema } from './schedule-schema.js';
import { DURATION_PATTERN } from '../daemon/duration.js';
import { DEFAULT_HOOK_TIMEOUT } from './hook-command.js';
import { checkAgainstMetaSchema } from '../validation/precompiled.js';
import { ValidatorCache, cacheFolder } from '../validation/validator-cache.js';
import { Environment } from '../services.js';

const secretRef = {
  description: 'Where the secret comes from; it never has to be written into the job file.',
  oneOf: [
    { type: 'object', required: ['env'], additionalProperties: false, properties: { env: { type: 'string', minLength: 1, description: 'Name of an environment variable.' } } },
    { type: 'object', required: ['file'], additionalProperties: false, properties: { file: { type: 'string', minLength: 1, description: 'A file holding the secret (trailing newline ignored); relative to the job file.' } } },
    {
      type: 'object',
      required: ['command'],
      additionalProperties: false,
      properties: { command: { type: 'array', minItems: 1, items: { type: 'string' }, description: 'A command (argv, no shell) whose standard output is the secret.' } },
    },
  ],
};

/** The keys every `notify` entry has, whatever its type. */
const notifyCommonProperties = {
  on: {
    type: 'array',
    uniqueItems: true,
    minItems: 1,
    items: { enum: ['start', 'success', 'warning', 'failure'] },
    description: 'When to notify: a backup started, succeeded, succeeded with warnings (an incomplete snapshot, a failed after-hook), or failed. Default: the notifier\'s own (["failure"] for most).',
  },
  name: { type: 'string', minLength: 1, description: 'A label for this entry in logs. Default: its type.' },
};


const argv = { type: 'array', minItems: 1, items: { type: 'string' }, description: 'The program and its arguments (no shell).' };
const duration = (what: string) => ({ type: 'string', pattern: DURATION_PATTERN, description: `${what}: a duration such as 30s, 10m, 1h or 1h30m (units ms, s, m, h, d).` });
/** A hook command: an argv array, or `{ command, timeout }`. */
const hookCommand = {
  if: { type: 'array' },
  then: argv,
  else: {
    type: 'object',
    required: ['command'],
    additionalProperties: false,
    properties: { command: argv, timeout: duration('How long the command may run before it is stopped (its whole process group) and counts as failed') },
  },
};
const hookList = (description: string) => ({ type: 'array', items: hookCommand, description: `${description} Each is an argv array, or {"command": [argv], "timeout": "5m"}.` });

/** The job's `hooks`: commands around each backup, with the run's facts in CAIRN_* environment variables. */
const hooksSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'Commands (argv arrays, no shell) run around each backup, in the job file\'s folder, with the run\'s facts in CAIRN_* environment variables.',
  properties: {
    timeout: { ...duration(`How long each command may run unless it sets its own timeout (default ${DEFAULT_HOOK_TIMEOUT})`), default: DEFAULT_HOOK_TIMEOUT },
    before: hookList('Run in order before the backup; the first failure aborts it (the after and onError commands still run).'),
    after: hookList('Run in order as soon as the backup is over, whether it succeeded or failed (to release what the before commands took).'),
    onSuccess: hookList('Run in order after the after commands when a snapshot was saved and nothing failed.'),
    onError: hookList('Run in order after the after commands when the backup, a before or after command, or retention failed.'),
  },
};

export const keepCount = (what: string) => ({ type: 'integer', minimum: 0, description: `Keep the newest snapshot of each of the last N ${what} that have snapshots (0: rule not used).` });

/** The job's `retention`: what `cairn forget` keeps. The schema checks shapes; `retentionProblems` the rest (zone names, durations). */
const retentionSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'What `cairn forget` keeps, per group of snapshots (host and job by default); a snapshot kept by any rule is kept. Command-line --keep-* flags replace this policy.',
  properties: {
    keepLast: { type: 'integer', minimum: 0, description: 'Keep the N newest snapshots (0: rule not used).' },
    keepHourly: keepCount('hours'),
    keepDaily: keepCount('days'),
    keepWeekly: keepCount('ISO weeks (Monday to Sunday)'),
    keepMonthly: keepCount('months'),
    keepYearly: keepCount('years'),
    keepWithin: {
      type: 'string',
      pattern: '^([0-9]+[hdwmy])+$',
      description: 'Keep every snapshot taken less than this long before the newest one: a duration such as 30d, 12h, 2w, 6m or 1y6m (units h, d, w, m, y).',
    },
    keepTags: { type: 'array', items: { type: 'string', minLength: 1, pattern: '^[^,]+$' }, description: 'Keep every snapshot holding any of these tags (`backup --tag`).' },
    timeZone: { type: 'string', minLength: 1, description: 'IANA time zone (e.g. Europe/Berlin) in which hours, days, weeks, months and years are counted. Default: the local zone.' },
  },
};

export const CHUNK_SIZES = Array.from({ length: 9 }, (_, i) => 2 ** (16 + i)); // 64 KiB … 16 MiB

/** The core's part of the job schema; plugins supply the `source`, `target` and `compression` branches. */
function coreJobSchema(): Record<string, any> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://cairn.dev/schemas/job.json',
    title: 'cairn job',
    type: 'object',
    required: ['name', 'source', 'target', 'password'],
    additionalProperties: false,
    properties: {
      $schema: { type: 'string' },
      name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', maxLength: 100, description: 'Name of the job, recorded in each snapshot.' },
      source: { description: 'What to back up.' },
      target: { description: 'Where the repository lives.' },
      compression: { description: 'How new chunks are compressed. Default: zstd level 3 when the zstd plugin is enabled, else none.' },
      password: { ...secretRef, description: 'The repository password: from an environment variable, a file, or a command.' },
      chunkSize: { enum: CHUNK_SIZES, description: 'Chunk size in bytes for volume images (a power of two, 64 KiB to 16 MiB). Default: the repository\'s (4 MiB). Smaller chunks deduplicate small changes better; larger ones compress better.' },
      retention: retentionSchema,
      notify: { type: 'array', description: 'Who is told about the job\'s runs (a webhook, an email, a health check), and on which events.' },
      schedule: scheduleSchema('the backup'),
      prune: pruneSchema,
      check: checkSchema,
      hooks: hooksSchema,
    },
  };
}

/**
 * `common`: properties every branch has besides its own (a plugin's schema may refine them, e.g. with a default).
 * `used`: when given, only these types' schemas are spliced in (every type still names a valid `type`).
 */
function branch(point: ContributionPoint, contributions: LoadedContribution[], builtIn: Array<{ type: string; schema: object }>, common: Record<string, object> = {}, used?: ReadonlySet<string>): object {
  const all = [...builtIn.map((b) => ({ ...b, pluginId: 'core' })), ...contributions];
  if (all.length === 0) {
    // Nothing can satisfy it; `describeErrors` turns the `not` failure into a sentence.
    return { type: 'object', required: ['type'], properties: { type: { not: {}, description: `No enabled plugin contributes ${point}.` } } };
  }
  const chosen = all.filter((c) => !used || used.has(c.type));
  return {
    type: 'object',
    required: ['type'],
    properties: { type: { enum: all.map((c) => c.type), description: `One of the ${point} contributed by the enabled plugins.` } },
    ...(chosen.length > 0 && {
      allOf: chosen.map((c) => ({
        if: { properties: { type: { const: c.type } }, required: ['type'] },
        then: { ...stripMeta(c.schema), properties: { ...withCommon(common, (c.schema as any).properties ?? {}), type: { const: c.type } } },
      })),
    }),
  };
}

function withCommon(common: Record<string, object>, own: Record<string, object>): Record<string, object> {
  const merged: Record<string, object> = { ...own };
  for (const [key, schema] of Object.entries(common)) merged[key] = { ...schema, ...(own[key] ?? {}) };
  return merged;
}

function stripMeta(schema: object): Record<string, unknown> {
  const { $schema: _s, $id: _i, ...rest } = schema as Record<string, unknown>;
  return rest;
}

const NONE_CODEC_SCHEMA = { type: 'object', additionalProperties: false, properties: {} };
/** What a job without `compression` gets, when a plugin provides it. */
const DEFAULT_COMPRESSION = { type: 'zstd', level: 3 };

/** The types a job file names, per contribution point (see typesNamedBy). */
type NamedTypes = Partial<Record<'sources' | 'targets' | 'codecs' | 'notifiers', ReadonlySet<string>>>;

/**
 * The job schema with every enabled plugin's contribution spliced in (what `cairn schema` prints),
 * or, with `named`, only the contributions of those types: what validating one job file needs.
 */
export function buildJobSchema(host: PluginHost, named?: NamedTypes): Record<string, any> {
  const schema = coreJobSchema();
  schema.properties.source = { ...schema.properties.source, ...branch('sources', host.contributions('sources'), [], {}, named?.sources) };
  schema.properties.target = { ...schema.properties.target, ...branch('targets', host.contributions('targets'), [], {}, named?.targets) };
  const codecs = host.contributions('codecs');
  schema.properties.compression = { ...schema.properties.compression, ...branch('codecs', codecs, [{ type: 'none', schema: NONE_CODEC_SCHEMA }], {}, named?.codecs) };
  schema.properties.notify.items = branch('notifiers', host.contributions('notifiers'), [], notifyCommonProperties, named?.notifiers);
  // The validator applies defaults (ajv's useDefaults), so a job gets them from here and nowhere else.
  if (codecs.some((c) => c.type === DEFAULT_COMPRESSION.type)) schema.properties.compression.default = DEFAULT_COMPRESSION;
  return schema;
}

export interface JobValidator {
  schema: Record<string, any>;
  /** Problems as `/path: message (plugin id)`; empty when the job is valid. Fills in the schema's defaults, in `job` itself. */
  validate(job: unknown): string[];
}

/**
 * The job schema of the enabled plugins. A job file is validated against the schema with only
 * the contributions it names (compiled on first use, once per combination of types): compiling
 * every plugin's schema is on every command's startup path, and most commands read one job.
 */
@injectable()
export class JobSchema {
  readonly #validators = new Map<string, JobValidator>();
  readonly #cache: ValidatorCache;

  constructor(@inject(PluginHost) private readonly plugins: PluginHost, @inject(Environment) environment: Environment) {
    this.#cache = new ValidatorCache(cacheFolder(environment.env));
  }

  #compiled(named?: NamedTypes): JobValidator {
    const key = JSON.stringify(named, (_key, value) => (value instanceof Set ? [...value].sort() : value)) ?? 'all';
    let validator = this.#validators.get(key);
    if (!validator) this.#validators.set(key, (validator = createJobValidator(this.plugins, named, this.#cache)));
    return validator;
  }

  /** What `cairn schema` prints. */
  get schema(): Record<string, any> {
    return this.#compiled().schema;
  }

  /** A copy of `job` with the schema's defaults filled in, and the problems found (empty when valid). */
  validate(job: unknown): { job: unknown; problems: string[] } {
    const copy = structuredClone(job);
    return { job: copy, problems: this.#compiled(typesNamedBy(copy)).validate(copy) };
  }
}

/** The source, target, codec and notifier types a job file names (a codec when it names none: the default's). */
function typesNamedBy(job: unknown): NamedTypes {
  const of = (value: unknown) => new Set(typeof (value as any)?.type === 'string' ? [(value as any).type as string] : []);
  const compression = (job as any)?.compression;
  const notify: unknown[] = Array.isArray((job as any)?.notify) ? (job as any).notify : [];
  return {
    sources: of((job as any)?.source),
    targets: of((job as any)?.target),
    codecs: compression === undefined ? new Set([DEFAULT_COMPRESSION.type]) : of(compression),
    notifiers: new Set(notify.flatMap((entry) => [...of(entry)])),
  };
}

// verbose: errors carry the offending value. Ajv's code optimisation stays on (it was off while
// every command compiled the schema): compiling is now paid once per schema, and less code is kept.
const JOB_VALIDATOR_OPTIONS = { allErrors: true, strict: false, useDefaults: true, verbose: true, validateSchema: false } as const;

/** `cache`: where a validator compiled for the same schema before is taken from (none: compiled now). */
export function createJobValidator(host: PluginHost, named?: NamedTypes, cache = new ValidatorCache(undefined)): JobValidator {
  const schema = buildJobSchema(host, named);
  // The plugins' settings schemas are checked as Ajv would, by a meta-schema validator the build
  // compiled; a kept validator was made from this very schema, which passed then.
  const validate: ValidateFunction = cache.compile(schema, JOB_VALIDATOR_OPTIONS, checkAgainstMetaSchema);
  const owner = new Map<string, string>();
  for (const point of Object.keys(CONTRIBUTION_POINTS) as ContributionPoint[]) {
    for (const c of host.contributions(point)) owner.set(`${CONTRIBUTION_POINTS[point].jobProperty}:${c.type}`, c.pluginId);
  }
  return {
    schema,
    validate(job) {
      if (validate(job)) return [];
      return describeErrors(validate.errors ?? [], job, owner);
    },
  };
}

/** A plugin's setting that is written as it is or, holding a secret (a URL with a token, a password), as a secret ref. */
function isStringOrSecretRef(schema: any): boolean {
  const alternatives: any[] = Array.isArray(schema?.oneOf) ? schema.oneOf : [];
  return alternatives.some((a) => a?.type === 'string') && alternatives.some((a) => Array.isArray(a?.required) && a.required.includes('env'));
}

function stringOrSecretRefMessage(schema: any, value: unknown): string {
  const pattern = (schema.oneOf as any[]).find((a) => a?.type === 'string')?.pattern;
  const string = typeof value === 'string' && pattern ? `must match ${pattern}` : 'must be a string';
  return `${string}, or {"env": NAME}, {"file": PATH} or {"command": [ARGV...]}`;
}

function describeErrors(errors: ErrorObject[], job: any, owner: Map<string, string>): string[] {
  const lines = new Set<string>();
  for (const error of errors) {
    // `if` failures only say which branch applied, and each `oneOf` alternative's complaint
    // repeats the `oneOf` summary; the remaining errors are the useful ones.
    if (error.keyword === 'if' || error.schemaPath.includes('/oneOf/')) continue;
    let message = error.message ?? 'is invalid';
    if (error.keyword === 'additionalProperties') message = `must NOT have additional property "${error.params.additionalProperty}"`;
    if (error.keyword === 'enum') message = `must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, not ${JSON.stringify(error.data)}`;
    if (error.keyword === 'not' && error.instancePath.endsWith('/type')) message = 'no enabled plugin provides this kind of setting (see `cairn plugins`)';
    if (error.keyword === 'oneOf' && error.instancePath === '/password') message = 'must be {"env": NAME}, {"file": PATH} or {"command": [ARGV...]}';
    else if (error.keyword === 'oneOf' && isStringOrSecretRef(error.parentSchema)) message = stringOrSecretRefMessage(error.parentSchema, error.data);
    if (error.keyword === 'type' && /^\/hooks\/[^/]+\/[0-9]+$/.test(error.instancePath)) message = 'must be a command: an argv array such as ["fsfreeze", "-f", "/srv"], or {"command": [ARGV...], "timeout": "5m"}';
    if (error.keyword === 'pattern' && error.params.pattern === DURATION_PATTERN) message = `must be a duration such as 30s, 10m, 1h or 1h30m (units ms, s, m, h, d), not ${JSON.stringify(error.data)}`;
    const path = error.instancePath || '/';
    const [, top = '', index] = path.split('/');
    const setting = job && typeof job === 'object' ? job[top] : undefined;
    // A list of settings (`notify`) names its plugin per entry.
    const type = (Array.isArray(setting) ? setting[Number(index)] : setting)?.type;
    const plugin = typeof type === 'string' ? owner.get(`${top}:${type}`) : undefined;
    lines.add(`${path}: ${message}${plugin ? ` (plugin ${plugin})` : ''}`);
  }
  return [...lines];
}
