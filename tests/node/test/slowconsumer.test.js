// PROTOCOL.md "Convergence rules": a client whose outbound queue is full is
// disconnected (it reconnects and resyncs); an update is never silently
// dropped for a connected client. A watcher stops reading its TCP socket
// while another client sends megabytes of updates; the server's per-socket
// buffer (`--socket-buffer 64`) overflows. Once the watcher reads again it
// must end with the same text, with unmodified client code.
import { test } from 'node:test';
import * as Y from 'yjs';
import { SocketIOProvider } from 'y-socket.io';
import { withServer, nativeJoined, waitFor, sleep, text } from './harness.js';

const FLAGS = ['--on-demand-sessions', '--socket-buffer', '64', '--updates-per-second', '100000', '--update-burst', '100000'];
const CHUNK = 8000;
const UPDATES = 600; // ~4.8 MB: more than the loopback socket buffers hold

/** Stops / resumes reading the TCP socket under a socket.io-client socket. */
const tcp = (socket) => socket.io.engine.transport.ws._socket;

function describe(watcher, writer, events) {
  const d = watcher.doc;
  return `  writer ${text(writer).length} chars, watcher ${text(d).length} chars, watcher has pending structs: ${!!d.store.pendingStructs}` +
    `, watcher connected: ${events.connected()}\n  watcher socket events: ${JSON.stringify(events.log)}`;
}

async function flood(writerDoc) {
  const t = writerDoc.getText('monaco');
  for (let i = 0; i < UPDATES; i++) {
    t.insert(t.length, String.fromCharCode(97 + (i % 26)).repeat(CHUNK));
    if (i % 20 === 0) await sleep(1);
  }
}

/** The watcher stops reading while the writer floods, then reads again: it must catch up. */
async function stallAndCatchUp(writer, watcher) {
  const log = [];
  watcher.socket.on('disconnect', (r) => log.push(`disconnect: ${r}`));
  watcher.socket.io.on('reconnect', () => log.push('reconnect'));
  const events = { log, connected: () => watcher.socket.connected };
  const sock = tcp(watcher.socket);
  sock.pause();
  await flood(writer.doc);
  await sleep(500);
  sock.resume();
  await waitFor('the watcher has the writer\'s text', () => text(watcher.doc) === text(writer.doc), 20000,
    () => describe(watcher, writer.doc, events));
  if (!log.some((e) => e.startsWith('disconnect'))) throw new Error('the watcher was never disconnected: the flood did not overflow its buffer');
}

test('y-socket.io: a watcher that stops reading is disconnected and resyncs, never left connected and behind', { timeout: 60000 }, async () => {
  await withServer(FLAGS, async (srv) => {
    const mk = (user) => srv.track(new SocketIOProvider(srv.url, 'slow', new Y.Doc(), { autoConnect: true, disableBc: true, auth: { token: srv.token(user) } }));
    const writer = mk('writer');
    const watcher = mk('watcher');
    await waitFor('both connected', () => writer.socket.connected && watcher.socket.connected);
    await stallAndCatchUp(writer, watcher);
  });
});

test('native: a client that stops reading is disconnected and resyncs, never left connected and behind', { timeout: 60000 }, async () => {
  await withServer(FLAGS, async (srv) => {
    const writer = await nativeJoined(srv, 'slow', srv.token('writer'));
    const watcher = await nativeJoined(srv, 'slow', srv.token('watcher'), { io: { reconnection: true, reconnectionDelay: 100 } });
    await stallAndCatchUp(writer, watcher);
  });
});
