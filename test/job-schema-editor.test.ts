// The job schema as an editor sees it. VS Code's JSON support is vscode-json-languageservice;
// here that same library opens a job file in the repository root whose "$schema" is the path
// the README shows, loads the schema `pnpm build` generated (packages/core/job.schema.json,
// reached through node_modules/@cairn/core) and is asked for completions and diagnostics.
import { readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { getLanguageService, TextDocument, type Diagnostic } from 'vscode-json-languageservice';
import { REPO_ROOT, expectSuccess, parseJson, runCli } from './utils/index.js';

const SCHEMA_REFERENCE = './node_modules/@cairn/core/job.schema.json';
const GENERATED_SCHEMA = join(REPO_ROOT, 'packages/core/job.schema.json');
/** A job file in the repository root, where the README's `$schema` path is meant to resolve. */
const JOB_URI = pathToFileURL(join(REPO_ROOT, 'job.json')).href;
const CURSOR = '|';

/** A language service set up as VS Code sets up its own for a workspace on disk. */
function editor() {
  const requested: string[] = [];
  const service = getLanguageService({
    // VS Code resolves a relative `$schema` against the folder of the file that names it.
    workspaceContext: { resolveRelativePath: (relative, resource) => new URL(relative, resource).href },
    schemaRequestService: async (uri) => {
      requested.push(uri);
      if (!uri.startsWith('file:')) throw new Error(`only files are read here, not ${uri}`);
      return readFile(fileURLToPath(uri), 'utf8');
    },
  });
  service.configure({ validate: true, allowComments: false });

  /** Opens `text` as the job file; `|` in it marks the cursor. */
  function open(textWithCursor: string) {
    const offset = textWithCursor.indexOf(CURSOR);
    const text = offset < 0 ? textWithCursor : textWithCursor.slice(0, offset) + textWithCursor.slice(offset + 1);
    const document = TextDocument.create(JOB_URI, 'json', 1, text);
    const json = service.parseJSONDocument(document);
    return {
      text,
      async completionLabels(): Promise<string[]> {
        expect(offset, 'the text marks the cursor with |').toBeGreaterThanOrEqual(0);
        const list = await service.doComplete(document, document.positionAt(offset), json);
        return (list?.items ?? []).map((item) => item.label).sort();
      },
      async completionItem(label: string) {
        const list = await service.doComplete(document, document.positionAt(offset), json);
        return list?.items.find((item) => item.label === label);
      },
      async diagnostics(): Promise<Diagnostic[]> {
        return service.doValidation(document, json);
      },
      textOf: (diagnostic: Diagnostic) => text.slice(document.offsetAt(diagnostic.range.start), document.offsetAt(diagnostic.range.end)),
    };
  }
  return { open, requested };
}

/** A job file as a user writes it, with `target` given as raw JSON text. */
function jobText(target: string): string {
  return `{
  "$schema": "${SCHEMA_REFERENCE}",
  "name": "laptop-system",
  "source": { "type": "volume", "path": "/dev/nvme0n1", "mode": "used" },
  "target": ${target},
  "password": { "env": "CAIRN_PASSWORD" }
}
`;
}

async function s3SchemaFile(): Promise<{ properties: Record<string, { description?: string }> }> {
  return JSON.parse(await readFile(join(REPO_ROOT, 'packages/target-s3/schema/s3.schema.json'), 'utf8'));
}

describe('job.schema.json in an editor (vscode-json-languageservice)', () => {
  test('the build wrote what `cairn schema` prints, and the README\'s $schema path leads to it', async () => {
    const printed = await runCli(['schema']);
    expectSuccess(printed);
    expect(JSON.parse(await readFile(GENERATED_SCHEMA, 'utf8'))).toEqual(parseJson(printed));
    // The path resolves through the workspace root's dependency on @cairn/core.
    expect(await realpath(join(REPO_ROOT, SCHEMA_REFERENCE))).toBe(await realpath(GENERATED_SCHEMA));
  });

  test('inside a target of "type": "s3" it completes the S3 plugin\'s settings and no other target\'s', async () => {
    const { open, requested } = editor();
    const job = open(jobText(`{
    "type": "s3",
    ${CURSOR}
  }`));
    const labels = await job.completionLabels();

    // The schema came from the job file's own $schema reference, read from disk.
    expect(requested).toEqual([new URL(SCHEMA_REFERENCE, JOB_URI).href]);
    // Every setting the S3 plugin's schema file declares, except `type`, which is already there.
    const s3 = await s3SchemaFile();
    const s3Settings = Object.keys(s3.properties).filter((key) => key !== 'type');
    expect(s3Settings).toEqual(expect.arrayContaining(['bucket', 'region', 'endpoint', 'prefix', 'forcePathStyle']));
    expect(labels).toEqual([...s3Settings].sort());
    // The local target's `path` (and the SFTP target's `host`) belong to other types.
    expect(labels).not.toContain('path');
    expect(labels).not.toContain('host');
    // Each proposal carries the plugin's own description.
    expect((await job.completionItem('bucket'))?.documentation).toBe(s3.properties.bucket!.description);
  });

  test('inside a target of "type": "local" it completes `path` and none of the S3 settings', async () => {
    const job = editor().open(jobText(`{ "type": "local", ${CURSOR} }`));
    expect(await job.completionLabels()).toEqual(['path']);
  });

  test('the value of a target\'s "type" completes to every enabled target plugin', async () => {
    const job = editor().open(jobText(`{ "type": ${CURSOR} }`));
    const values = (await job.completionLabels()).map((label) => JSON.parse(label));
    expect(values).toEqual(['local', 's3', 'sftp']);
  });

  test('the README\'s job file example, with its $schema path, checks clean in the repository root', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const example = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!).find((block) => block.includes('"$schema"'));
    expect(example, 'a json block with "$schema" in README.md').toBeDefined();
    expect(JSON.parse(example!).$schema).toBe(SCHEMA_REFERENCE);

    const { open, requested } = editor();
    expect(await open(example!).diagnostics()).toEqual([]);
    expect(requested).toEqual([new URL(SCHEMA_REFERENCE, JOB_URI).href]);
  });

  test('a correct S3 job has no diagnostics; a misspelt S3 setting is reported where it is written', async () => {
    const good = editor().open(jobText('{ "type": "s3", "bucket": "backups", "prefix": "laptop", "region": "eu-west-1", "forcePathStyle": true }'));
    expect(await good.diagnostics()).toEqual([]);

    const misspelt = editor().open(jobText('{ "type": "s3", "bucket": "backups", "regoin": "eu-west-1" }'));
    const diagnostics = await misspelt.diagnostics();
    expect(diagnostics.map((d) => [misspelt.textOf(d), d.message])).toEqual([['"regoin"', expect.stringContaining('regoin')]]);
  });
});
