#!/usr/bin/env node
import { capMallocArenas } from '../bundle/malloc-arenas.js';

// Before the CLI's code loads (which starts the thread pool): each thread that allocates gets a
// malloc arena of its own until the cap is set (src/pipeline/malloc-arenas.ts).
await capMallocArenas(process.env);
// The bundled build (scripts/bundle-core.mjs): one module loaded instead of two hundred.
const { main } = await import('../bundle/cli.js');

// SIGTERM and SIGINT become an abort the CLI acts on: the daemon stops cleanly, other commands
// release their repository locks first. A second signal ends the process at once.
const interrupt = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (interrupt.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
    interrupt.abort(signal);
  });
}

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd(), interrupt: interrupt.signal });
process.exitCode = code;
// The interrupted command's work may still hold the event loop: it is abandoned on purpose.
if (interrupt.signal.aborted) process.exit(code);
