import { PruneOperation } from './operations/prune.js';
import { UnlockOperation } from './operations/unlock.js';
import { OpenSnapshotOperation } from './operations/open-snapshot.js';
import { ContainerModule, injectable } from './vendor.js';
import { Clock, CodecRegistry, NotifierRegistry, SourceRegistry, TargetRegistry } from './services.js';
import { EngineHooks, HookContribution, createEngineHooks } from './hooks.js';
import { HookRunner } from './hook-runner.js';
import { DefaultCodecRegistry, DefaultNotifierRegistry, DefaultSourceRegistry, DefaultTargetRegistry } from './plugins/registries.js';
import { PluginContextFactory } from './plugins/plugin-context.js';
import { PluginHost } from './plugins/plugin-host.js';
import { NONE_CODEC } from './codecs/builtin.js';
import { JobSchema } from './job/job-schema.js';
import { JobLoader } from './job/job-loader.js';
import { SecretReader } from './job/secrets.js';
import { JobCommands } from './job/job-commands.js';
import { Notifications } from './notifications/notifications.js';
import { BackupNotifications } from './notifications/backup-notifications.js';
import { Repositories } from './repository/repositories.js';
import { RepositoryLocks } from './repository/lock.js';
import { JobRuns } from './operations/job-runs.js';
import { PipelineWorkers } from './operations/pipeline-workers.js';
import { InitOperation } from './operations/init.js';
import { BackupOperation } from './operations/backup.js';
import { RestoreOperation } from './operations/restore.js';
import { FileRestoreOperation } from './operations/file-restore.js';
import { CheckOperation } from './operations/check.js';
import { RepairOperation } from './operations/repair.js';
import { ShowOperation, SnapshotsOperation } from './operations/snapshots.js';
import { KeyOperation } from './operations/keys.js';
import { ForgetOperation } from './operations/forget.js';
import { RetentionTap } from './retention/retention-tap.js';

@injectable()
export class SystemClock implements Clock {
  now(): Date {
    return new Date();
  }
}

/**
 * The core's services. What depends on how the core is run (logger, environment, progress
 * display, plugins.json) is bound by `createCore` from its options; everything else is here.
 * A new service or operation is bound here, and resolved where it is used.
 */
export const coreModule = new ContainerModule(({ bind }) => {
  bind(Clock).to(SystemClock);
  bind(EngineHooks).toDynamicValue(() => createEngineHooks());
  bind(HookRunner).toSelf();
  bind(TargetRegistry).to(DefaultTargetRegistry);
  bind(SourceRegistry).to(DefaultSourceRegistry);
  bind(NotifierRegistry).to(DefaultNotifierRegistry);
  bind<CodecRegistry>(CodecRegistry)
    .to(DefaultCodecRegistry)
    .onActivation((_context, registry) => {
      registry.register(NONE_CODEC);
      return registry;
    });
  bind(PluginContextFactory).toSelf();
  bind(PluginHost).toSelf();

  bind(JobSchema).toSelf();
  bind(JobLoader).toSelf();
  bind(SecretReader).toSelf();
  bind(JobCommands).toSelf();
  bind(HookContribution).toService(JobCommands);
  bind(Notifications).toSelf();
  bind(BackupNotifications).toSelf();
  bind(HookContribution).toService(BackupNotifications);
  bind(RetentionTap).toSelf();
  bind(HookContribution).toService(RetentionTap);

  bind(Repositories).toSelf();
  bind(RepositoryLocks).toSelf();
  bind(JobRuns).toSelf();
  bind(PipelineWorkers).toSelf();

  bind(InitOperation).toSelf();
  bind(BackupOperation).toSelf();
  bind(RestoreOperation).toSelf();
  bind(FileRestoreOperation).toSelf();
  bind(CheckOperation).toSelf();
  bind(RepairOperation).toSelf();
  bind(SnapshotsOperation).toSelf();
  bind(ShowOperation).toSelf();
  bind(KeyOperation).toSelf();
  bind(ForgetOperation).toSelf();
  bind(PruneOperation).toSelf();
  bind(UnlockOperation).toSelf();
  bind(OpenSnapshotOperation).toSelf();
});
