'use strict';

const { run } = require('./helpers');

describe('module shape', () => {
  test('named ESM imports and destructured methods work in the primary and in a worker; errors are ShmError', async () => {
    const { messages } = await run('module-shape.mjs');
    const expected = (role, counted) => ({
      role,
      sameHandle: true,
      value: { role },
      counted,
      removed: true,
      afterRemove: undefined,
      badKey: { code: 'ERR_INVALID_ARG_TYPE', shmError: true, typeError: true, name: 'TypeError' },
      serverError: { code: 'ERR_SHM_SERVER', shmError: true, typeError: false, name: 'ShmError' },
      closedCode: 'ERR_SHM_CLOSED',
    });
    expect(messages[0]).toEqual({ primary: expected('primary', [1, 2]), worker: expected('worker', [3, 4]) });
  });

  test('index.mjs exports every public method of a handle, by name', () => {
    const fs = require('node:fs');
    const path = require('node:path');
    const { SharedMemory } = require('../lib/api');
    const source = fs.readFileSync(path.join(__dirname, '..', 'index.mjs'), 'utf8');
    const exported = [...source.matchAll(/^\s+(\w+),$/gm)].map((m) => m[1]).concat(source.includes('export { remove as delete }') ? ['delete'] : []);
    const methods = Object.getOwnPropertyNames(SharedMemory.prototype).filter(
      (name) => name !== 'constructor' && typeof Object.getOwnPropertyDescriptor(SharedMemory.prototype, name).value === 'function',
    );
    expect(exported.filter((name) => !['connect', 'ShmError', 'codes'].includes(name)).sort()).toEqual(methods.sort());
  });
});
