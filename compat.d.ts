/// <reference types="node" />
import { EventEmitter } from 'node:events';
import shm = require('./index');

/** The primary's side of the classic pattern; the broker is already running. */
export declare class Manager {
  readonly shm: typeof shm;
}

/** The worker's side of the classic pattern, with its callback API. */
export declare class User extends EventEmitter {
  readonly shm: typeof shm;
  set(key: string, value: unknown, callback?: () => void): void;
  get(key: string, callback: (value: unknown) => void): void;
  on(event: 'error', listener: (error: Error & { code: string }) => void): this;
}

export { shm };
