'use strict';

const { run } = require('./helpers');
const { describeOn } = require('./backend');

describeOn(['embedded'], 'workers map the store of the broker their primary hosts', 'the shared store under SIGKILL', () => {
  // src/shm/crash_tests.rs kills writer processes 1,000 times at the
  // store's own level; this kills real cluster workers mid-call and relies
  // on the broker's repair when their connection closes.
  test('workers killed mid-write 400 times leave the store whole and every acknowledged write in it', async () => {
    const { messages } = await run('store-kills.js', ['400'], { timeout: 110_000 });
    const [result] = messages;
    expect(result).toMatchObject({ kills: 400, forked: 402, verify: 'OK', groupWrittenByAWriter: true });
    // The counter holds every acknowledged increment, plus at most the one
    // each killed writer had in flight.
    expect(result.counter).toBeGreaterThanOrEqual(result.counterAcked);
    expect(result.counter).toBeLessThanOrEqual(result.counterAcked + result.counterInFlight);
    expect(result.counterAcked).toBeGreaterThan(0);
    // The three keys mset writes together are never torn.
    expect(new Set(result.group).size).toBe(1);
    for (const key of result.own) {
      if (key.held !== key.acked) expect({ key, heldWasInFlight: key.inFlight.includes(key.held) }).toMatchObject({ heldWasInFlight: true });
    }
  }, 120_000);
});
