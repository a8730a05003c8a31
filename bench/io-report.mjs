// Preloaded into a cairn command by the benchmark (`node --import`): at exit, writes the
// process's I/O counters from /proc/self/io (every thread's, as the kernel sums them) to the
// file $CAIRN_BENCH_IO as JSON, e.g. { "write_bytes": 123, "read_bytes": 456, … }.
import { readFileSync, writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const out = process.env.CAIRN_BENCH_IO;
if (isMainThread && out) {
  process.on('exit', () => {
    const lines = readFileSync('/proc/self/io', 'utf8').trim().split('\n');
    writeFileSync(out, JSON.stringify(Object.fromEntries(lines.map((line) => line.split(': ')).map(([k, v]) => [k, Number(v)]))));
  });
}
