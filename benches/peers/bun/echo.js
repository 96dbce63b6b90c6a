// Echo server on Bun.serve's WebSocket support (uWebSockets inside Bun; JavaScript callbacks, one event loop).
//
//   bun echo.js PORT [--deflate] [--tls CERT KEY]
//
// Listens on 127.0.0.1:PORT, echoes every text message as text and every binary message as binary, on any
// path. Bun answers pings and close frames itself. Library defaults are kept (maxPayloadLength 16 MiB,
// backpressureLimit 16 MiB, idleTimeout 120 s with pings), except:
//   --deflate         negotiate permessage-deflate (Bun's `perMessageDeflate: true`); off by default, as in
//                     wsloop's runs
//   --tls CERT KEY    serve wss:// with the PEM certificate chain CERT and private key KEY
// Run with the bun binary of the pinned npm package: node_modules/@oven/bun-linux-x64/bin/bun echo.js PORT
'use strict';

function usage(msg) {
  if (msg) console.error(`bun-echo: ${msg}`);
  console.error('usage: bun echo.js PORT [--deflate] [--tls CERT KEY]');
  process.exit(2);
}

const argv = process.argv.slice(2);
let port = null;
let deflate = false;
let tls = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--deflate') {
    deflate = true;
  } else if (a === '--tls') {
    if (i + 2 >= argv.length) usage('--tls wants CERT and KEY');
    tls = { cert: argv[i + 1], key: argv[i + 2] };
    i += 2;
  } else if (port === null && /^[0-9]+$/.test(a)) {
    port = Number(a);
  } else {
    usage(`unexpected argument '${a}'`);
  }
}
if (port === null || port <= 0 || port > 65535) usage('PORT must be 1-65535');

const options = {
  hostname: '127.0.0.1',
  port,
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response('WebSocket upgrade required\n', { status: 426 });
  },
  websocket: {
    perMessageDeflate: deflate,
    message(ws, message) {
      // A string arrived as text and is sent as text; a Buffer arrived as binary and is sent as binary.
      // Bun compresses a send only when asked (its docs: `ws.send(data, compress)`): with --deflate, ask, so
      // that its echoes are compressed as wsloop's and node ws's are.
      ws.send(message, deflate);
    },
  },
};
if (tls) options.tls = { cert: Bun.file(tls.cert), key: Bun.file(tls.key) };

const server = Bun.serve(options);
console.log(
  `bun-echo (bun ${Bun.version}) listening on ${tls ? 'wss' : 'ws'}://127.0.0.1:${server.port}` +
    (deflate ? ' with permessage-deflate' : ''),
);
