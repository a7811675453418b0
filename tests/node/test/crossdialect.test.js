// Both dialects in one session (issue 4): a y-socket.io SocketIOProvider and
// native-dialect clients edit one document together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from 'yjs';
import { SocketIOProvider } from 'y-socket.io';
import { withServer, nativeJoined, waitFor, sleep, rng, randomEdit, text, texts } from './harness.js';

function provider(srv, room, token, { doc = new Y.Doc() } = {}) {
  return srv.track(new SocketIOProvider(srv.url, room, doc, { autoConnect: true, disableBc: true, auth: { token } }));
}

test('y-socket.io providers and native clients converge in one session; late joiners of both dialects get everything', async () => {
  await withServer(['--on-demand-sessions'], async (srv) => {
    const p = provider(srv, 'mixed', srv.token('ysio1'));
    await waitFor('provider connected', () => p.socket.connected);
    const n = await nativeJoined(srv, 'mixed', srv.token('native1'));
    const q = provider(srv, 'mixed', srv.token('ysio2'));
    const m = await nativeJoined(srv, 'mixed', srv.token('native2'));
    await waitFor('second provider connected', () => q.socket.connected);
    const all = [p.doc, n.doc, q.doc, m.doc];
    const r = rng(3);
    for (let k = 0; k < 80; k++) {
      for (const d of all) randomEdit(d, r);
      if (k % 10 === 0) await sleep(1);
    }
    await waitFor('both dialects agree (seed 3)', () => all.every((d) => text(d) === text(all[0])) && text(all[0]).length > 0, 10000,
      () => texts(all));
    const lateP = provider(srv, 'mixed', srv.token('late-ysio'));
    const lateN = await nativeJoined(srv, 'mixed', srv.token('late-native'));
    assert.equal(text(lateN.doc), text(all[0]), 'native late joiner');
    await waitFor('provider late joiner', () => text(lateP.doc) === text(all[0]), 5000, () => texts([all[0], lateP.doc]));
  });
});

test('offline edits of a provider reach a native client and vice versa', async () => {
  await withServer(['--on-demand-sessions'], async (srv) => {
    const nd = new Y.Doc();
    nd.getText('monaco').insert(0, 'NATIVE-OFFLINE ');
    const n = await nativeJoined(srv, 'offx', srv.token('n'), { doc: nd });
    const pd = new Y.Doc();
    pd.getText('monaco').insert(0, 'YSIO-OFFLINE ');
    const p = provider(srv, 'offx', srv.token('p'), { doc: pd });
    await waitFor('both have both', () => [n.doc, p.doc].every((d) => text(d).includes('NATIVE-OFFLINE') && text(d).includes('YSIO-OFFLINE')), 5000,
      () => texts([n.doc, p.doc]));
    assert.equal(text(n.doc), text(p.doc));
  });
});

test('awareness crosses dialects, and a cut provider disappears at a native client within one second', async () => {
  await withServer(['--on-demand-sessions'], async (srv) => {
    const n = await nativeJoined(srv, 'awx', srv.token('n'));
    const p = srv.track(new SocketIOProvider(srv.url, 'awx', new Y.Doc(), { autoConnect: true, disableBc: true, auth: { token: srv.token('p') } }, { reconnection: false }));
    await waitFor('provider connected', () => p.socket.connected);
    p.awareness.setLocalStateField('user', { name: 'P' });
    n.awareness.setLocalStateField('user', { name: 'N' });
    await waitFor('native sees provider', () => n.awareness.getStates().get(p.doc.clientID)?.user?.name === 'P');
    await waitFor('provider sees native', () => p.awareness.getStates().get(n.doc.clientID)?.user?.name === 'N');
    p.socket.io.engine.transport.ws.terminate();
    const cut = Date.now();
    await waitFor('provider state gone at the native client', () => !n.awareness.getStates().has(p.doc.clientID), 1000);
    assert.ok(Date.now() - cut <= 1000);
  });
});
