import type { Progress } from '../pipeline/progress.js';

const EVERY_MS = 1000;

/**
 * Progress as JSON lines on stderr, at most one a second, for the daemon that runs this command
 * (`CAIRN_PROGRESS_JSON=1`): `{"progress":{"phase","bytesDone","bytesTotal","bytesPerSecond","etaSeconds"}}`.
 */
export class JsonProgress implements Progress {
  #phase = '';
  #total = 0;
  #done = 0;
  #started = 0;
  #lastLine = 0;

  constructor(private readonly stream: NodeJS.WritableStream) {}

  start(label: string, totalBytes: number): void {
    this.#phase = label;
    this.#total = totalBytes;
    this.#done = 0;
    this.#started = Date.now();
    this.#write();
  }

  advance(bytes: number): void {
    this.#done += bytes;
    if (Date.now() - this.#lastLine >= EVERY_MS) this.#write();
  }

  done(): void {
    this.#write();
  }

  #write(): void {
    this.#lastLine = Date.now();
    const seconds = (Date.now() - this.#started) / 1000;
    const rate = seconds > 0 ? Math.round(this.#done / seconds) : undefined;
    const left = this.#total - this.#done;
    const progress = {
      phase: this.#phase,
      bytesDone: this.#done,
      ...(this.#total > 0 && { bytesTotal: this.#total }),
      ...(rate !== undefined && { bytesPerSecond: rate }),
      ...(rate && this.#total > 0 && left >= 0 && { etaSeconds: Math.round(left / rate) }),
    };
    this.stream.write(JSON.stringify({ progress }) + '\n');
  }
}
