import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The folder of the @cairn/core package (src/.. or dist/..). */
export const CORE_PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** This cairn's version, which plugins' `engines.cairn` must accept. */
export const CORE_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
