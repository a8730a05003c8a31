/*
 * The OpenAPI 3.1 document of the dashboard's API, served at GET /api/openapi.json. It is the
 * one description of the API: test/web-api.test.ts validates every response it gets against
 * the schema given here for that path and status.
 */

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
const reply = (description: string, schema: unknown) => ({ description, ...json(schema) });
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((status) => [String(status), { $ref: `#/components/responses/Error${status}` }]));
const jobParam = { name: 'job', in: 'path', required: true, description: 'The job\'s name', schema: { type: 'string' } };
const snapshotParam = { name: 'id', in: 'path', required: true, description: 'A snapshot id, a prefix of one (4+ hex digits), or latest', schema: { type: 'string' } };
const body = (schema: unknown) => ({ required: true, ...json(schema) });
const AUTH = [401];
const CHANGE = [400, 401, 403, 404];

const str = { type: 'string' };
const int = { type: 'integer', minimum: 0 };
const time = { type: 'string', format: 'date-time' };

const schemas: Record<string, unknown> = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', pattern: '^CAIRN_[A-Z_]+$' }, message: str } } },
  },
  RunRecord: {
    type: 'object',
    required: ['task', 'result', 'started', 'finished', 'durationMs'],
    properties: {
      task: { enum: ['backup', 'prune', 'check'] },
      result: { enum: ['success', 'warning', 'failure', 'skipped', 'interrupted'] },
      scheduledFor: time,
      started: time,
      finished: time,
      durationMs: { type: 'number', minimum: 0 },
      exitCode: { type: 'integer' },
      snapshot: str,
      bytesRead: { type: 'number' },
      bytesAdded: { type: 'number' },
      error: str,
    },
  },
  TaskState: {
    type: 'object',
    required: ['schedule', 'counts'],
    properties: {
      schedule: str,
      nextRun: time,
      running: { type: 'object', required: ['since'], properties: { since: time, pid: { type: 'integer' }, scheduledFor: time } },
      lastRun: ref('RunRecord'),
      lastSuccess: ref('RunRecord'),
      counts: { type: 'object', additionalProperties: int },
    },
  },
  Tasks: { type: 'object', additionalProperties: false, properties: { backup: ref('TaskState'), prune: ref('TaskState'), check: ref('TaskState') } },
  JobState: {
    type: 'object',
    required: ['name', 'file', 'repository', 'knownSince', 'tasks'],
    properties: { name: str, file: str, repository: str, knownSince: time, tasks: ref('Tasks') },
  },
  Status: {
    description: 'Exactly what `cairn status --json` prints for this daemon\'s state',
    type: 'object',
    required: ['daemon', 'stateDir', 'jobs', 'problems'],
    additionalProperties: false,
    properties: {
      daemon: {
        type: 'object',
        required: ['running', 'pid', 'hostname', 'started', 'updated'],
        properties: { running: { type: 'boolean' }, pid: { type: 'integer' }, startTime: str, hostname: str, started: time, updated: time, stopped: time, web: { type: 'object', required: ['url'], properties: { url: str } } },
      },
      stateDir: str,
      jobs: { type: 'array', items: ref('JobState') },
      problems: { type: 'array', items: { type: 'object', required: ['file', 'message', 'time'], properties: { file: str, message: str, time: time } } },
    },
  },
  Progress: {
    type: 'object',
    required: ['bytesDone'],
    properties: { bytesDone: int, bytesTotal: int, bytesPerSecond: int, etaSeconds: int, phase: str },
  },
  RunningTask: {
    type: 'object',
    required: ['job', 'task', 'since'],
    properties: { job: str, task: { enum: ['backup', 'prune', 'check', 'restore'] }, since: time, progress: ref('Progress') },
  },
  JobSummary: {
    type: 'object',
    required: ['name', 'file', 'kind', 'source', 'target', 'tasks', 'history'],
    additionalProperties: false,
    properties: {
      name: str,
      file: str,
      kind: { enum: ['volume', 'files'] },
      source: { type: 'object', required: ['type'], properties: { type: str, path: str, paths: { type: 'array', items: str } } },
      target: { type: 'object', required: ['type', 'location'], properties: { type: str, location: str } },
      schedule: str,
      tasks: ref('Tasks'),
      running: ref('RunningTask'),
      history: { type: 'array', maxItems: 50, items: ref('RunRecord'), description: 'Backup runs, newest last' },
    },
  },
  Snapshot: {
    description: 'One entry of `cairn snapshots <job> --json`',
    type: 'object',
    required: ['id', 'time', 'hostname', 'job', 'tags', 'source', 'kind', 'size', 'bytesAdded'],
    properties: {
      id: { type: 'string', pattern: '^[0-9a-f]{64}$' },
      time: time,
      hostname: str,
      job: str,
      tags: { type: 'array', items: str },
      source: { type: 'object', required: ['type'], properties: { type: str, path: str } },
      kind: { enum: ['volume', 'files'] },
      size: int,
      bytesAdded: int,
      paths: { type: 'array', items: str },
      incomplete: { type: 'boolean' },
      imageDigest: { type: 'object', required: ['algorithm', 'hex'], properties: { algorithm: str, hex: str } },
      layout: ref('Layout'),
    },
  },
  Layout: {
    description: 'A volume snapshot\'s layout: the partitions, each with its filesystem, mode and used bytes',
    type: 'object',
    required: ['kind', 'size', 'sectorSize', 'partitionTable', 'mode'],
    properties: {
      kind: str,
      size: int,
      sectorSize: int,
      mode: str,
      filesystem: str,
      usedBytes: int,
      partitionTable: { type: 'object', required: ['type'], properties: { type: str } },
      partitions: { type: 'array', items: { type: 'object', properties: { number: int, offset: int, size: int, filesystem: str, mode: str, usedBytes: int } } },
    },
  },
  SnapshotDetail: {
    description: '`cairn show <job> <id> --json`: the manifest (a volume\'s without its chunk maps), its tags and bytes added',
    type: 'object',
    required: ['id', 'time', 'source', 'tags', 'bytesAdded'],
    properties: { id: { type: 'string', pattern: '^[0-9a-f]{64}$' }, time: time, kind: str, source: { type: 'object' }, tags: { type: 'array', items: str }, bytesAdded: int, size: int, layout: ref('Layout') },
  },
  FileEntry: {
    description: 'One entry of `cairn ls <job> <id> <path> --json`',
    type: 'object',
    required: ['path', 'name', 'type', 'mode', 'size', 'mtime'],
    properties: { path: str, name: str, type: str, mode: int, permissions: str, uid: int, gid: int, user: str, group: str, size: int, mtime: str, ctime: str, atime: str, links: int, inode: str, target: str },
  },
  Files: { type: 'object', required: ['path', 'entries'], additionalProperties: false, properties: { path: str, entries: { type: 'array', items: ref('FileEntry') } } },
  RunRequest: { type: 'object', required: ['task'], additionalProperties: false, properties: { task: { enum: ['backup', 'check', 'prune'] }, readData: { type: 'boolean' } } },
  Accepted: { type: 'object', required: ['accepted'], additionalProperties: false, properties: { accepted: { const: true } } },
  ForgetRequest: { type: 'object', required: ['confirm'], properties: { confirm: { type: 'string', description: 'The snapshot\'s id, or its first 8 characters' } } },
  Forgotten: { type: 'object', required: ['forgotten'], additionalProperties: false, properties: { forgotten: { type: 'string', pattern: '^[0-9a-f]{64}$' } } },
  RestorePreviewRequest: { type: 'object', required: ['snapshot', 'to'], properties: { snapshot: str, to: str, include: { type: 'array', items: str } } },
  RestorePreview: {
    type: 'object',
    required: ['to', 'kind', 'exists', 'overwrites', 'needsDeviceConfirmation'],
    additionalProperties: false,
    properties: {
      to: str,
      kind: { enum: ['file', 'device', 'folder', 'new'] },
      exists: { type: 'boolean' },
      size: int,
      mounted: { type: 'boolean' },
      overwrites: { type: 'array', maxItems: 100, items: str },
      needsDeviceConfirmation: { type: 'boolean' },
    },
  },
  RestoreRequest: {
    type: 'object',
    required: ['snapshot', 'to'],
    properties: {
      snapshot: str,
      to: { type: 'string', description: 'An absolute path: image file, block device, or for a file snapshot the folder to restore into' },
      include: { type: 'array', items: str },
      exclude: { type: 'array', items: str },
      overwrite: { enum: ['always', 'if-changed', 'never'] },
      force: { type: 'boolean', description: 'Overwrite an existing image file' },
      confirmDevice: { type: 'string', description: 'For a block device: must equal `to`' },
    },
  },
  RestoreStarted: { type: 'object', required: ['restoreId'], additionalProperties: false, properties: { restoreId: str } },
  RestoreState: {
    type: 'object',
    required: ['state'],
    properties: { restoreId: str, state: { enum: ['running', 'done', 'failed'] }, result: { type: 'object' }, error: { type: 'object', required: ['message'], properties: { code: str, message: str } } },
  },
  Checks: {
    type: 'object',
    required: ['checks'],
    additionalProperties: false,
    properties: { checks: { type: 'array', items: { type: 'object', required: ['job', 'lastRun'], properties: { job: str, lastRun: ref('RunRecord'), lastSuccess: ref('RunRecord') } } } },
  },
  LogLine: { type: 'object', required: ['time', 'level', 'message'], additionalProperties: false, properties: { time: time, level: { enum: ['debug', 'info', 'warn', 'error'] }, job: str, task: str, message: str } },
  Log: { type: 'object', required: ['lines'], additionalProperties: false, properties: { lines: { type: 'array', items: ref('LogLine') } } },
};

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad request (a missing or wrong field, a confirmation that does not match)',
  401: 'No token: a session cookie or Authorization: Bearer TOKEN is needed',
  403: 'Refused as a possible cross-site request (CAIRN_CROSS_SITE)',
  404: 'No such job, snapshot or path',
  409: 'Conflict: the task is already running or queued, the destination exists, the repository is locked',
  500: 'The cairn command failed',
};

export const OPENAPI_DOCUMENT: Record<string, unknown> = {
  openapi: '3.1.0',
  info: {
    title: 'cairn daemon API',
    version: '0.1.0',
    description:
      'The JSON API of `cairn daemon --web`, which the dashboard uses. Every request needs the token (the `cairn_session` cookie set by opening `/?token=TOKEN`, or `Authorization: Bearer TOKEN`). POST and DELETE requests must carry `X-Cairn-Request: 1`, and an `Origin` they carry must be the server\'s own.',
  },
  servers: [{ url: 'http://127.0.0.1:8780' }],
  security: [{ bearer: [] }, { session: [] }],
  paths: {
    '/api/status': { get: { summary: 'What `cairn status --json` prints for this daemon', responses: { 200: reply('The status', ref('Status')), ...errors(...AUTH) } } },
    '/api/jobs': { get: { summary: 'The jobs the daemon runs, with their tasks, the running task and the recent backup runs', responses: { 200: reply('The jobs', { type: 'object', required: ['jobs'], additionalProperties: false, properties: { jobs: { type: 'array', items: ref('JobSummary') } } }), ...errors(...AUTH) } } },
    '/api/jobs/{job}/snapshots': {
      get: { summary: 'The job\'s snapshots (`cairn snapshots <job> --json`)', parameters: [jobParam], responses: { 200: reply('The snapshots', { type: 'object', required: ['snapshots'], additionalProperties: false, properties: { snapshots: { type: 'array', items: ref('Snapshot') } } }), ...errors(401, 404, 500) } },
    },
    '/api/jobs/{job}/snapshots/{id}': {
      get: { summary: 'One snapshot (`cairn show <job> <id> --json`)', parameters: [jobParam, snapshotParam], responses: { 200: reply('The snapshot', ref('SnapshotDetail')), ...errors(401, 404, 500) } },
      delete: { summary: 'Forget the snapshot (`cairn forget <job> <id>`); `prune` removes its data later', parameters: [jobParam, snapshotParam], requestBody: body(ref('ForgetRequest')), responses: { 200: reply('Forgotten', ref('Forgotten')), ...errors(...CHANGE, 409, 500) } },
    },
    '/api/jobs/{job}/snapshots/{id}/files': {
      get: {
        summary: 'A folder of a snapshot: of a file snapshot as `cairn ls <job> <id> <path> --json` lists it; of an image snapshot from its filesystems mounted read-only by `cairn mount` (`/p1`, `/p2`, …; unmounted after 10 idle minutes), in the same shape',
        parameters: [jobParam, snapshotParam, { name: 'path', in: 'query', required: false, schema: { type: 'string', default: '/' } }],
        responses: { 200: reply('The folder\'s entries', ref('Files')), ...errors(400, 401, 404, 409, 500) },
      },
    },
    '/api/jobs/{job}/run': { post: { summary: 'Run a task now, queued with the job\'s repository like a scheduled run', parameters: [jobParam], requestBody: body(ref('RunRequest')), responses: { 202: reply('Queued', ref('Accepted')), ...errors(...CHANGE, 409) } } },
    '/api/jobs/{job}/restore/preview': { post: { summary: 'What a restore would overwrite', parameters: [jobParam], requestBody: body(ref('RestorePreviewRequest')), responses: { 200: reply('The preview', ref('RestorePreview')), ...errors(...CHANGE, 500) } } },
    '/api/jobs/{job}/restore': { post: { summary: 'Start a restore (`cairn restore … --json`, a child of the daemon); its end comes as a `restore` event', parameters: [jobParam], requestBody: body(ref('RestoreRequest')), responses: { 202: reply('Started', ref('RestoreStarted')), ...errors(...CHANGE, 409) } } },
    '/api/restores/{restoreId}': { get: { summary: 'A restore started from the dashboard', parameters: [{ name: 'restoreId', in: 'path', required: true, schema: str }], responses: { 200: reply('Its state', ref('RestoreState')), ...errors(401, 404) } } },
    '/api/checks': { get: { summary: 'The last check of each job', responses: { 200: reply('The checks', ref('Checks')), ...errors(...AUTH) } } },
    '/api/log': { get: { summary: 'Recent log lines of the daemon', parameters: [{ name: 'lines', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 200 } }], responses: { 200: reply('The lines, oldest first', ref('Log')), ...errors(...AUTH) } } },
    '/api/events': {
      get: {
        summary: 'Server-Sent Events: `state` (a Status) at once and on every change, `progress` (a RunningTask) about once a second while a task runs, `log` (a LogLine), `restore` (a RestoreState); a comment line every 15 s',
        responses: { 200: { description: 'The event stream', content: { 'text/event-stream': { schema: str } } }, ...errors(...AUTH) },
      },
    },
    '/api/openapi.json': { get: { summary: 'This document', responses: { 200: reply('The OpenAPI document', { type: 'object', required: ['openapi', 'paths'] }), ...errors(...AUTH) } } },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, session: { type: 'apiKey', in: 'cookie', name: 'cairn_session' } },
    responses: Object.fromEntries(Object.entries(STATUS_TEXT).map(([status, text]) => [`Error${status}`, reply(text, ref('Error'))])),
    schemas,
  },
};
