/*
 * Core's third-party runtime libraries, re-exported from one module. The build replaces
 * dist/vendor.js with a bundle of this file (scripts/bundle-vendor.mjs): unbundled, these
 * libraries are some 500 files, and loading them took 0.25 s of every cairn command, more
 * than a tenth of an incremental backup. Core code imports them only from here, and plugins
 * get inversify and tapable through `@cairn/core`, so every package shares one copy (one
 * metadata registry for the decorators).
 */
import 'reflect-metadata';
import standalone from 'ajv/dist/standalone/index.js';

export { Container, ContainerModule, inject, injectable, multiInject, optional, type ContainerModuleLoadOptions, type ServiceIdentifier } from 'inversify';
export { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
export { default as semver } from 'semver';
export { AsyncSeriesBailHook, AsyncSeriesHook, SyncHook } from 'tapable';
export { default as yargs, type Argv, type ArgumentsCamelCase } from 'yargs';
export { Cron, type CronOptions } from 'croner';

/** Ajv's code generator for a compiled validator (its CommonJS exports are the function, and it again as `default`). */
export const standaloneCode = standalone.default;
