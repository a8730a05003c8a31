import { resolve } from 'node:path';
import type { Core } from '../create-core.js';
import { JobLoader } from '../job/job-loader.js';
import { ShowOperation } from '../operations/snapshots.js';
import { PluginHost } from '../plugins/plugin-host.js';
import { Environment } from '../services.js';
import type { VolumeLayout } from '../source.js';
import type { NbdServerRequest } from './nbd-server-process.js';
import { requireVolumeManifest } from '../repository/snapshot.js';

export interface ServedSnapshot {
  /** The snapshot's full id (the server is given this, not `latest` or a prefix that a new backup could change). */
  id: string;
  layout: VolumeLayout;
  server: Omit<NbdServerRequest, 'socket' | 'stateDir'>;
}

/** Resolves `ref` in the job's repository and describes the NBD server that would serve it. */
export async function resolveServedSnapshot(core: Core, jobFile: string, ref: string): Promise<ServedSnapshot> {
  const environment = core.get<Environment>(Environment);
  const job = await core.get(JobLoader).load(jobFile);
  const { id, manifest: any } = await core.get(ShowOperation).run(job, ref);
  const manifest = requireVolumeManifest(id, any, 'serving it as a disk');
  return {
    id,
    layout: manifest.layout,
    server: {
      jobFile: resolve(environment.cwd, jobFile),
      snapshot: id,
      pluginsFile: core.get(PluginHost).pluginsFile,
      env: environment.env,
    },
  };
}
