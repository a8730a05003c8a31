import type { ScheduleSettings } from '../job/schedule-schema.js';
import { compileSchedule, jitteredStart, missedRun, nextRun, type Schedule } from './schedule.js';

/** What the daemon knows of a task's past, as times (see `TaskTimes` in schedule.ts). */
export interface TaskHistory {
  knownSince: Date;
  /** The time the task's last run stood for (`lastCoveredTime`). */
  lastRun?: Date;
}

/** When one task runs next: its compiled schedule, the time it is due, and the jitter drawn for it. */
export class TaskClock {
  readonly #schedule: Schedule;
  /** The scheduled time the next run stands for. */
  scheduledFor: Date | undefined;
  /** When it starts: `scheduledFor` plus the jitter drawn for it. */
  nextRun: Date | undefined;

  constructor(
    settings: ScheduleSettings,
    private readonly random: () => number,
  ) {
    this.#schedule = compileSchedule(settings);
  }

  /** Sets the next run to the first scheduled time after `now`. */
  plan(now: Date, history: TaskHistory): void {
    this.scheduledFor = nextRun(this.#schedule, { ...history, now });
    this.nextRun = this.scheduledFor && jitteredStart(this.scheduledFor, this.#schedule, this.random);
  }

  /** With `runMissed`: the scheduled time that passed while the daemon was down, to run now. */
  missed(now: Date, history: TaskHistory): Date | undefined {
    return missedRun(this.#schedule, { ...history, now });
  }

  describe(): string {
    return this.#schedule.describe();
  }
}
