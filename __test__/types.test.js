'use strict';

const { run } = require('./helpers');
const { stored, refused } = require('./fixtures/type-cases');

describe.each(['json', 'advanced'])("values keep their types with serialization '%s'", (mode) => {
  let report;
  beforeAll(async () => {
    ({ messages: [report] } = await run('types.js', [mode]));
  });

  test('workers inherit the mode the primary configured', () => {
    expect(report.workerOptions.serialization).toBe(mode);
  });

  const names = stored(mode).map((c) => c.name);
  test.each(['primaryReadsOwn', 'primaryReadsWorker', 'workerReadsOwn', 'workerReadsPrimary'])('%s: every case round-trips', (path) => {
    expect(report[path].map((r) => r.name)).toEqual(names);
    const wrong = report[path].filter((r) => !r.ok);
    expect(wrong).toEqual([]);
  });

  const refusedNames = refused(mode).map((c) => c.name);
  test.each(['primaryRefusals', 'workerRefusals'])('%s: values the mode cannot keep are a TypeError, and nothing is stored', (path) => {
    const results = report[path];
    expect(results.map((r) => r.name)).toEqual([...refusedNames, 'nothing stored by refused writes']);
    for (const { name, error } of results.slice(0, -1)) {
      expect({ name, type: error && error.isTypeError, code: error && error.code, promise: error && error.returnedPromise }).toEqual({
        name,
        type: true,
        code: 'ERR_INVALID_ARG_VALUE',
        promise: true,
      });
    }
    expect(results.at(-1).error).toBeNull();
  });
});
