/** Receives progress of a long operation; the CLI draws it, tests ignore it. */
export interface Progress {
  start(label: string, totalBytes: number): void;
  advance(bytes: number): void;
  done(): void;
}

export const silentProgress: Progress = { start() {}, advance() {}, done() {} };
