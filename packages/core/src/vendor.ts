/*
 * Core's third-party runtime libraries, re-exported from one module. The build replaces
 * dist/vendor.js with a bundle of this file (scripts/bundle-vendor.mjs): unbundled, these
 * libraries are some 500 files, and loading them took 0.25 s of every cairn command, more
 * than a tenth of an incremental backup. Core code imports them only from here.
 */
import 'reflect-metadata';

export { Container } from 'inversify';
export { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
export { default as semver } from 'semver';
export { AsyncSeriesHook, SyncHook } from 'tapable';
export { default as yargs, type Argv } from 'yargs';
