import type { Progress } from '../pipeline/progress.js';
import { formatBytes, formatDuration } from './format.js';

const REDRAW_MS = 200;

/** A one-line progress display with throughput and ETA, for terminals only. */
export class ProgressBar implements Progress {
  #label = '';
  #total = 0;
  #done = 0;
  #started = 0;
  #lastDraw = 0;
  #visible = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  start(label: string, totalBytes: number): void {
    this.#label = label;
    this.#total = totalBytes;
    this.#done = 0;
    this.#started = Date.now();
    this.#draw();
  }

  advance(bytes: number): void {
    this.#done += bytes;
    if (Date.now() - this.#lastDraw >= REDRAW_MS) this.#draw();
  }

  done(): void {
    if (!this.#visible) return;
    this.#draw();
    this.stream.write('\n');
    this.#visible = false;
  }

  #draw(): void {
    this.#lastDraw = Date.now();
    const elapsed = (Date.now() - this.#started) / 1000;
    const rate = elapsed > 0 ? this.#done / elapsed : 0;
    const fraction = this.#total > 0 ? Math.min(1, this.#done / this.#total) : 1;
    const width = 24;
    const filled = Math.round(fraction * width);
    const eta = rate > 0 ? (this.#total - this.#done) / rate : 0;
    const line =
      `${this.#label.padEnd(8)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ` +
      `${formatBytes(this.#done)} / ${formatBytes(this.#total)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta)}`;
    this.stream.write(`\r${line}\x1b[K`);
    this.#visible = true;
  }
}
