import type { ErrorObject, ValidateFunction } from '../vendor.js';
import { compileValidator, type PrecompiledSchema } from '../validation/precompiled.js';

/** The `cairn` section of a plugin's package.json. */
export interface PluginManifest {
  activationEvents?: string[];
  contributes: {
    sources?: Contribution[];
    targets?: Contribution[];
    codecs?: Array<Contribution & { headerId: number }>;
    notifiers?: Contribution[];
    /** Web front ends the daemon serves with `--web` (static files; no plugin code runs). */
    webApps?: WebAppContribution[];
  };
}

/** A web app: the folder of built static files (with an index.html) the daemon serves at `/`. */
export interface WebAppContribution {
  type: 'dashboard';
  title?: string;
  /** Folder of the built app, relative to the package folder. */
  root: string;
}

export interface Contribution {
  type: string;
  title?: string;
  /** Path of a JSON Schema file, relative to the package folder. */
  schema: string;
}

export type ContributionPoint = 'sources' | 'targets' | 'codecs' | 'notifiers';

/** The job file property each contribution point plugs into, and the activation event it implies. */
export const CONTRIBUTION_POINTS: Record<ContributionPoint, { jobProperty: string; event: string }> = {
  sources: { jobProperty: 'source', event: 'onSource' },
  targets: { jobProperty: 'target', event: 'onTarget' },
  codecs: { jobProperty: 'compression', event: 'onCodec' },
  notifiers: { jobProperty: 'notify', event: 'onNotifier' },
};

const contribution = {
  type: 'object',
  required: ['type', 'schema'],
  properties: {
    type: { type: 'string', pattern: '^[a-z][a-z0-9-]*$' },
    title: { type: 'string' },
    schema: { type: 'string' },
  },
} as const;

export const manifestSchema = {
  type: 'object',
  required: ['contributes'],
  additionalProperties: false,
  properties: {
    activationEvents: { type: 'array', items: { type: 'string', pattern: '^on(Source|Target|Codec|Notifier):[a-z][a-z0-9-]*$' } },
    contributes: {
      type: 'object',
      additionalProperties: false,
      properties: {
        sources: { type: 'array', items: contribution },
        targets: { type: 'array', items: contribution },
        notifiers: { type: 'array', items: contribution },
        webApps: {
          type: 'array',
          items: { type: 'object', required: ['type', 'root'], additionalProperties: false, properties: { type: { const: 'dashboard' }, title: { type: 'string' }, root: { type: 'string' } } },
        },
        codecs: {
          type: 'array',
          items: { ...contribution, required: ['type', 'schema', 'headerId'], properties: { ...contribution.properties, headerId: { type: 'integer', minimum: 1, maximum: 255 } } },
        },
      },
    },
  },
} as const;

/**
 * Unoptimised code compiles faster, and it validates a handful of small manifests per run. The
 * schema is this file's own constant (its unit tests compile it checked), so it is not checked
 * against the JSON Schema meta-schema on every start. The build compiles it ahead of time.
 */
export const MANIFEST_VALIDATOR: PrecompiledSchema = {
  name: 'plugin-manifest',
  schema: manifestSchema,
  options: { allErrors: true, strict: false, validateSchema: false, code: { optimize: false } },
};

let validateManifest: ValidateFunction | undefined;

/** Checks a manifest; returns readable problems (empty when valid). */
export function manifestProblems(manifest: unknown): string[] {
  validateManifest ??= compileValidator(MANIFEST_VALIDATOR);
  if (validateManifest(manifest)) return [];
  return (validateManifest.errors ?? []).map((e: ErrorObject) => `cairn${e.instancePath.replaceAll('/', '.')} ${e.message}`);
}

/** Activation events implied by contributions (`targets: [{type:'s3'}]` gives `onTarget:s3`). */
export function derivedActivationEvents(manifest: PluginManifest): string[] {
  const events: string[] = [];
  for (const point of Object.keys(CONTRIBUTION_POINTS) as ContributionPoint[]) {
    for (const c of manifest.contributes[point] ?? []) events.push(`${CONTRIBUTION_POINTS[point].event}:${c.type}`);
  }
  return events;
}
