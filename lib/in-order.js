'use strict';

/**
 * Runs tasks one after another per key: a task starts once every earlier
 * task of its key has settled, whatever their outcome. Keys with nothing
 * queued take no memory.
 */
class InOrder {
  #tails = new Map();

  /** Resolves or rejects as `task()` does. */
  run(key, task) {
    const previous = this.#tails.get(key) || Promise.resolve();
    const result = previous.then(task);
    const tail = result.then(
      () => {},
      () => {},
    );
    this.#tails.set(key, tail);
    tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}

module.exports = { InOrder };
