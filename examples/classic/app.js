'use strict';

// An app written with the hand-rolled pattern. Moving it to cluster-shm means
// changing the require line below to require('cluster-shm/compat').
const cluster = require('node:cluster');
const { Manager, User } = require('./shared-memory');

const WORKERS = 3;

if (cluster.isPrimary) {
  new Manager();
  const seen = [];
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('message', (worker, message) => {
    if (message && message.report) {
      seen.push(message.report);
      if (seen.length === WORKERS) {
        seen.sort((a, b) => a.id - b.id);
        console.log(JSON.stringify(seen));
        for (const w of Object.values(cluster.workers)) w.kill();
      }
    }
  });
} else {
  const user = new User();
  const id = cluster.worker.id;
  user.set(`worker:${id}`, { id, pid: process.pid > 0, tags: ['a', 'b'] }, () => {
    user.get(`worker:${id}`, (mine) => {
      user.get('nobody', (missing) => {
        process.send({ report: { id, mine, missing: missing === undefined } });
      });
    });
  });
}
