'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { run } = require('./helpers');

const EXAMPLE = path.join(__dirname, '..', 'examples', 'classic', 'app.js');

describe('cluster-shm/compat', () => {
  const generated = path.join(__dirname, 'fixtures', 'generated');
  afterAll(() => fs.rmSync(generated, { recursive: true, force: true }));

  test("the classic pattern's own example works after changing only its require line", async () => {
    const original = fs.readFileSync(EXAMPLE, 'utf8');
    const requireLine = "const { Manager, User } = require('./shared-memory');";
    expect(original).toContain(requireLine);
    const migrated = original.replace(requireLine, "const { Manager, User } = require('cluster-shm/compat');");
    fs.mkdirSync(generated, { recursive: true });
    const migratedFile = path.join(generated, 'classic-app.js');
    fs.writeFileSync(migratedFile, migrated);

    const before = await run(EXAMPLE);
    const after = await run(migratedFile);
    expect(before.messages).toHaveLength(1);
    expect(after.messages).toEqual(before.messages);
    expect(after.messages[0]).toEqual([1, 2, 3].map((id) => ({ id, mine: { id, pid: true, tags: ['a', 'b'] }, missing: true })));
  });
});
