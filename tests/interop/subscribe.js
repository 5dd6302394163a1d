// SPDX-License-Identifier: Apache-2.0
// Interop client: subscribes to agentcaged's Events service over its Unix socket using
// @grpc/grpc-js, with the schema loaded from the .proto files at run time (no generated
// code), and prints each event as one JSON line. Exits after --count events or --timeout ms.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
}
const socket = arg('--socket', '/run/agentcage/agentcage.sock');
const count = parseInt(arg('--count', '1'), 10);
const timeout = parseInt(arg('--timeout', '10000'), 10);
const apiDir = arg('--api', path.join(__dirname, '..', '..', 'daemon', 'api'));

const def = protoLoader.loadSync('agentcage/v1/control.proto', {
  includeDirs: [apiDir], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
});
const v1 = grpc.loadPackageDefinition(def).agentcage.v1;
const client = new v1.Events('unix:' + socket, grpc.credentials.createInsecure());

let seen = 0;
const call = client.Subscribe({ filter: { kinds: ['exec'] } });
const timer = setTimeout(() => {
  console.error(`interop: timed out after ${timeout} ms with ${seen} events`);
  process.exit(1);
}, timeout);
// argv, paths and comm are `bytes` in the schema (Linux names are not UTF-8): grpc-js hands
// them over as Buffers; print them as text.
const text = (v) => Buffer.isBuffer(v) ? v.toString('utf8')
  : Array.isArray(v) ? v.map(text)
  : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, text(x)]))
  : v;
call.on('data', (ev) => {
  console.log(JSON.stringify(text(ev)));
  if (++seen >= count) {
    clearTimeout(timer);
    call.cancel();
    process.exit(0);
  }
});
call.on('error', (err) => {
  if (err.code === grpc.status.CANCELLED) return;
  console.error(`interop: ${err.code} ${err.details}`);
  process.exit(2);
});
// Tell the test we are subscribed (the stream starts when the server accepts it).
call.on('metadata', () => console.error('interop: subscribed'));
setTimeout(() => console.error('interop: ready'), 300);
