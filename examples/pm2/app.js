'use strict';

// The web app of ecosystem.config.js: every instance counts each request in
// one shared counter and answers with it and its own pid.

const http = require('node:http');
const shm = require('cluster-shm');

http
  .createServer(async (req, res) => {
    try {
      const hits = await shm.incr('hits');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ pid: process.pid, hits }));
    } catch (error) {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: error.code || error.message }));
    }
  })
  .listen(Number(process.env.PORT) || 3000);
