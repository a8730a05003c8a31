import { injectable, loadPosix, type OpenedFileTree, type SourceFactory, type SourceOpenContext, type SourceSettings } from '@cairn/core';
import { FileTree } from './file-tree.js';
import { resolveSettings } from './settings.js';

/** Opens the `files` source of a job: checks the paths exist and reads the exclude files, before any backup work. */
@injectable()
export class FilesSourceFactory implements SourceFactory {
  async open(settings: SourceSettings, context: SourceOpenContext): Promise<OpenedFileTree> {
    const [{ options, warnings }, posix] = await Promise.all([resolveSettings(settings, context.baseDir), loadPosix()]);
    return new FileTree(options, warnings, posix);
  }
}
