// Echo server on the `ws` npm package (one Node.js event loop, one core).
//
//   node echo.js PORT [--deflate]
//
// Listens on 127.0.0.1:PORT, echoes every text message as text and every binary message as binary, on any
// path. permessage-deflate is off (wsloop does not negotiate it in these runs either) unless --deflate is
// given, which turns on ws's own defaults (`perMessageDeflate: true`: messages under 1 KiB are sent
// uncompressed, zlib level and window as ws picks them); maxPayload is ws's
// default (100 MiB), stated here because the 64 KiB scenario relies on it. ws answers pings and close frames
// itself. The optional native add-ons (bufferutil, utf-8-validate) are not installed: plain JavaScript ws.
'use strict';
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const deflate = args.includes('--deflate');
const rest = args.filter((a) => a !== '--deflate');
const port = Number(rest[0]);
if (rest.length !== 1 || !Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node echo.js PORT [--deflate]');
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: deflate,
  maxPayload: 100 * 1024 * 1024,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  console.log(`node-ws-echo listening on ws://127.0.0.1:${port}${deflate ? ' with permessage-deflate' : ''}`);
});
