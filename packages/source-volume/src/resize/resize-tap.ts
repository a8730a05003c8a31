import { EngineHooks, inject, injectable, type ResizeRequest } from '@cairn/core';
import { growImage } from './grow.js';
import { shrinkImage } from './shrink.js';
import { checkShrinkFits, growSubject, shrinkLayout } from './resize-plan.js';

const PLUGIN_NAME = 'VolumeResize';

/**
 * `restore --grow` and `--shrink` for images of volume sources: answers the restore's
 * `checkResize` (before anything is written: the partition can be resized, the target can
 * hold the used data) and carries out its `resize`.
 */
@injectable()
export class VolumeResize {
  constructor(@inject(EngineHooks) private readonly hooks: Readonly<EngineHooks>) {}

  tapHooks(): void {
    this.hooks.restore.tap(PLUGIN_NAME, (run) => {
      run.hooks.checkResize.tapPromise(PLUGIN_NAME, async (request) => (isVolume(request) ? check(request) : undefined));
      run.hooks.resize.tapPromise(PLUGIN_NAME, async (request) => {
        if (!isVolume(request)) return undefined;
        return request.mode === 'grow' ? growImage(request) : shrinkImage(request);
      });
    });
  }
}

function isVolume(request: ResizeRequest): boolean {
  return request.manifest.source.type === 'volume';
}

function check(request: ResizeRequest): true {
  if (request.mode === 'grow') growSubject(request);
  else checkShrinkFits(shrinkLayout(request), request);
  return true;
}
