import { EngineHooks, Logger, inject, injectable } from '@cairn/core';
import { relocateBackupGpt } from './gpt-relocate.js';

const PLUGIN_NAME = 'GptRelocation';

/** A whole-disk GPT image restored onto a larger disk: moves the backup GPT to the new end, once the restore is done. */
@injectable()
export class GptRelocation {
  constructor(
    @inject(EngineHooks) private readonly hooks: Readonly<EngineHooks>,
    @inject(Logger) private readonly logger: Logger,
  ) {}

  tapHooks(): void {
    this.hooks.restore.tap(PLUGIN_NAME, (run) => {
      run.hooks.done.tapPromise(PLUGIN_NAME, async ({ destination, manifest, partial }) => {
        if (partial || manifest.source.type !== 'volume' || manifest.layout.partitionTable.type !== 'gpt') return;
        if (await relocateBackupGpt(destination, manifest.size, manifest.layout.sectorSize)) {
          this.logger.info(`moved the backup GPT of ${destination} to the end of the larger disk`);
        }
      });
    });
  }
}
