/** Errors typed by whose fault they are; the API answers each with its status (gpu-server/api/app.ts). */

/** 404: no such run, round, device or file. */
export class NotFound extends Error {}

/** 409: the request clashes with the run's state (a round already running, the planned rounds all done). */
export class Conflict extends Error {}

/** 400: the operator's run spec or request is wrong; the message names the field and the fix. */
export class SpecError extends Error {}

// 503 is core/storage's StorageError: storage could not be reached, and trying again may work.
export { StorageError } from '../../core/storage/store.ts';
