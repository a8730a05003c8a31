import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { isFileTree } from '@cairn/core';
import { createTestPluginContext } from '@cairn/core/testing';
import { activate } from './index.js';
import { FilesSourceFactory } from './files-source.js';

const PLUGIN_FOLDER = fileURLToPath(new URL('..', import.meta.url));
let dir: string | undefined;
afterEach(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

it('registers the files source, whose factory opens a file tree', async () => {
  const context = await createTestPluginContext(PLUGIN_FOLDER);
  await activate(context);
  const factory = context.sources.get('files');
  expect(factory).toBe(context.container.get(FilesSourceFactory));
  dir = await mkdtemp(join(tmpdir(), 'cairn-files-plugin-'));
  await writeFile(join(dir, 'a'), 'x');
  const opened = await factory!.open({ type: 'files', paths: ['a'] }, { baseDir: dir });
  expect(isFileTree(opened)).toBe(true);
  expect(opened.path).toBe(join(dir, 'a'));
});
