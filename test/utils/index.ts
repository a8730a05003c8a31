export * from './scope.js';
export * from './temp.js';
export * from './exec.js';
export * from './cli.js';
export * from './volume.js';
export * from './loop.js';
export * from './job.js';
export * from './disk.js';
