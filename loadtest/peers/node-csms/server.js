// A minimal OCPP 1.6 central system on the third-party `ocpp-rpc` package: the Node.js
// benchmark peer for chargegrid (scripts/bench.sh). It accepts any charger id on subprotocol
// ocpp1.6, answers BootNotification (Accepted), Heartbeat and StatusNotification, and keeps
// nothing else. strictMode validates every payload against the OCPP 1.6 schemas, as chargegrid
// validates against its rust-ocpp types.
//
// usage: node server.js [--host 127.0.0.1] [--port 9200]
// Prints "ready <pid> <port>" once listening; runs until SIGTERM/SIGINT.
'use strict';

const { RPCServer } = require('ocpp-rpc');

const HEARTBEAT_INTERVAL = 300;

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function main() {
  const host = arg('host', '127.0.0.1');
  const port = Number(arg('port', '9200'));
  const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true });
  server.auth((accept) => accept());
  server.on('client', (client) => {
    client.handle('BootNotification', () => ({
      status: 'Accepted',
      interval: HEARTBEAT_INTERVAL,
      currentTime: new Date().toISOString(),
    }));
    client.handle('Heartbeat', () => ({ currentTime: new Date().toISOString() }));
    client.handle('StatusNotification', () => ({}));
  });
  await server.listen(port, host, { backlog: 4096 });
  console.log(`ready ${process.pid} ${port}`);
  const stop = async () => {
    await server.close({ awaitPending: false, force: true });
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
