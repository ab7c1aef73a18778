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

// A worker's strings reach the store through the addon's own UTF-16 to
// UTF-8 conversion (src/node/js_value.rs): what it stores must be the very
// bytes Node's encoder makes, for keys and values, short and long.
test("a worker's string keys and values are stored as the UTF-8 Buffer.from makes of them, and read back equal", async () => {
  const { messages } = await run('text-bytes.js');
  const asText = { equal: true, type: 'string' };
  const row = (name, length, readBack = asText) => ({ name, sameBytes: true, storedLength: length, expectedLength: length, readBack });
  expect(messages).toEqual([
    [
      row('ASCII', 12),
      row('two-, three- and four-byte characters', 16),
      row('a key of 600 units ending in a surrogate pair', 1, { equal: true, type: 'number' }),
      row('a long value with pairs throughout', 1702),
      row('a 510-unit value', 510),
      row('a 511-unit value', 511),
      row('a 200,000-unit value', 400_002),
      row('raw: a lone surrogate (UTF-8 has none: U+FFFD)', 5),
      row('raw: a long non-ASCII string', 1700),
    ],
  ]);
});
