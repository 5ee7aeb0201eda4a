// A real Express app, as an app behind the gate is written: `app.all` runs its
// handler for every method, OPTIONS included. It records each call to the protected
// handler (method, path, headers, body length) and answers GET /calls with them.
// Usage: node app.js PORT (prints "listening PORT" once it accepts connections).
'use strict';
const express = require('express');

const calls = [];
const app = express();

app.get('/calls', (req, res) => res.json(calls));

app.all('/admin/*', (req, res) => {
  let length = 0;
  req.on('data', (chunk) => { length += chunk.length; });
  req.on('end', () => {
    calls.push({ method: req.method, path: req.path, headers: req.headers, body_length: length });
    // What a protected handler does: acts on the request, whatever its method.
    res.status(200).json({ deleted: req.path });
  });
});

const port = Number(process.argv[2]);
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
