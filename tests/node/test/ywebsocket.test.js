// The y-websocket dialect (plain WebSocket at /ws/<document-id>, PROTOCOL.md
// "y-websocket dialect"), proven with the unmodified npm `y-websocket`
// WebsocketProvider (`disableBc: true`, `WebSocketPolyfill: ws`) beside the
// other dialects, and with a raw `ws` socket for refusals and close codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from 'yjs';
import WebSocket from 'ws';
import { WebsocketProvider } from 'y-websocket';
import { SocketIOProvider } from 'y-socket.io';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { withServer, startServer, waitFor, sleep, rng, randomEdit, text, texts, nativeJoined } from './harness.js';

const wsUrl = (srv) => `${srv.url.replace(/^http/, 'ws')}/ws`;

/** An unmodified WebsocketProvider on document `docId` with `token`. */
function provider(srv, docId, token, { doc = new Y.Doc(), connect = true } = {}) {
  const p = new WebsocketProvider(wsUrl(srv), docId, doc, {
    connect, disableBc: true, WebSocketPolyfill: WebSocket, params: token ? { token } : {},
  });
  return srv.track(p);
}

const synced = (p, what = 'y-websocket provider synced') => waitFor(what, () => p.synced, 8000);

async function session(srv, owner, body = { title: 'yws' }) {
  const r = await srv.http('/api/sessions', { token: owner, method: 'POST', body });
  assert.equal(r.status, 201);
  return (await r.json()).id;
}

/** A raw WebSocket: resolves `{ status, body }` if refused before the upgrade, or `{ ws }` once open. */
function raw(url) {
  return new Promise((ok) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'nodebuffer';
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => ok({ status: res.statusCode, body: JSON.parse(body || '{}') }));
    });
    ws.on('open', () => ok({ ws }));
    ws.on('error', () => {});
  });
}

/** Resolves with the close code of a raw socket. */
const closed = (ws, timeout = 5000) => new Promise((ok) => {
  const t = setTimeout(() => ok('still open'), timeout);
  ws.on('close', (code) => { clearTimeout(t); ok(code); });
});

function syncUpdateFrame(update) {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 2);
  encoding.writeVarUint8Array(e, update);
  return encoding.toUint8Array(e);
}

test('y-websocket, native and y-socket.io clients converge in one session and on a workspace file', async () => {
  await withServer([], async (srv) => {
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    const f = await (await srv.http(`/api/sessions/${sid}/files`, { token: owner, method: 'POST', body: { path: 'src/a.rs', content: 'fn a() {}\n' } })).json();
    for (const docId of [sid, `${sid}~${f.id}`]) {
      const yws = [provider(srv, docId, srv.token('w1', { [sid]: 'editor' })), provider(srv, docId, srv.token('w2', { [sid]: 'editor' }))];
      for (const p of yws) await synced(p);
      const sio = srv.track(new SocketIOProvider(srv.url, docId, new Y.Doc(), { disableBc: true, auth: { token: srv.token('s1', { [sid]: 'editor' }) } }));
      await waitFor('y-socket.io provider connected', () => sio.socket.connected);
      const docs = [...yws.map((p) => p.doc), sio.doc];
      let native = null;
      if (docId === sid) {
        native = await nativeJoined(srv, sid, srv.token('n1', { [sid]: 'editor' }));
        docs.push(native.doc);
      }
      const r = rng(docId.length);
      for (let k = 0; k < 60; k++) {
        for (const d of docs) randomEdit(d, r);
        if (k % 10 === 0) await sleep(2);
      }
      await waitFor(`every replica of ${docId} equal`, () => docs.every((d) => text(d) === text(docs[0])), 10000, () => texts(docs));
      const path = docId === sid ? `/api/sessions/${sid}/text` : `/api/sessions/${sid}/files/${f.id}/content`;
      await waitFor('the server has it too', async () => (await (await srv.http(path, { token: owner })).text()) === text(docs[0]), 5000);
      for (const p of yws) p.destroy();
      sio.destroy();
      native?.socket.disconnect();
    }
  });
});

test('a viewer\'s edits never reach the others; the viewer hears "permission denied" once and stays connected', async () => {
  await withServer([], async (srv) => {
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    const editor = provider(srv, sid, owner);
    await synced(editor);
    editor.doc.getText('monaco').insert(0, 'hello');
    const viewer = provider(srv, sid, srv.token('vic', { [sid]: 'viewer' }));
    await synced(viewer);
    await waitFor('the viewer reads', () => text(viewer.doc) === 'hello');
    // Watch the viewer's socket for auth messages.
    const auth = [];
    viewer.ws.addEventListener('message', (ev) => {
      const d = decoding.createDecoder(new Uint8Array(ev.data));
      if (decoding.readVarUint(d) === 2) auth.push([decoding.readVarUint(d), decoding.readVarString(d)]);
    });
    viewer.doc.getText('monaco').insert(0, 'X');
    viewer.doc.getText('monaco').insert(0, 'Y');
    await waitFor('permission denied', () => auth.length > 0);
    await sleep(300);
    assert.deepEqual(auth, [[0, 'FORBIDDEN']], 'one auth message, permission denied');
    assert.equal(text(editor.doc), 'hello');
    assert.equal(await (await srv.http(`/api/sessions/${sid}/text`, { token: owner })).text(), 'hello');
    assert.equal(viewer.wsconnected, true, 'the connection is kept');
    editor.doc.getText('monaco').insert(5, '!');
    await waitFor('the viewer still receives', () => text(viewer.doc).endsWith('hello!'));
  });
});

test('refusals before the upgrade: 401, 400, 404 (session, file), 403, with the API\'s error body', async () => {
  await withServer([], async (srv) => {
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    const cases = [
      [`${wsUrl(srv)}/${sid}?token=garbage`, 401, 'UNAUTHORIZED'],
      [`${wsUrl(srv)}/${sid}`, 401, 'UNAUTHORIZED'],
      [`${wsUrl(srv)}/${sid}?token=${srv.expiredToken()}`, 401, 'UNAUTHORIZED'],
      [`${wsUrl(srv)}/bad%20id?token=${owner}`, 400, 'INVALID_SESSION_ID'],
      [`${wsUrl(srv)}/${sid}~main?token=${owner}`, 400, 'INVALID_SESSION_ID'],
      [`${wsUrl(srv)}/nosuchsession?token=${owner}`, 404, 'SESSION_NOT_FOUND'],
      [`${wsUrl(srv)}/${sid}~nosuchfile?token=${owner}`, 404, 'FILE_NOT_FOUND'],
      [`${wsUrl(srv)}/${sid}?token=${srv.token('stranger')}`, 403, 'FORBIDDEN'],
    ];
    for (const [url, status, code] of cases) {
      const r = await raw(url);
      assert.equal(r.status, status, url);
      assert.equal(r.body?.error?.code, code, url);
    }
    const ok = await raw(`${wsUrl(srv)}/${sid}?token=${owner}`);
    assert.ok(ok.ws, 'the owner is upgraded');
    ok.ws.close();
  });
});

test('a closed provider\'s cursor disappears from the others at once', async () => {
  await withServer([], async (srv) => {
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    const a = provider(srv, sid, owner);
    const b = provider(srv, sid, srv.token('owner2', { [sid]: 'editor' }));
    await synced(a);
    await synced(b);
    a.awareness.setLocalStateField('user', { name: 'A' });
    await waitFor('b sees a', () => b.awareness.getStates().get(a.doc.clientID)?.user?.name === 'A');
    const t0 = Date.now();
    a.destroy();
    await waitFor('a is gone from b', () => !b.awareness.getStates().has(a.doc.clientID), 2000);
    assert.ok(Date.now() - t0 < 2000, 'well before y-protocols\' 30 s timeout');
  });
});

test('close codes: 1007 for bytes that are no message, 1009 above the size limit, 4403 on revocation, 4404 on deletion', async () => {
  await withServer(['--max-update-bytes', '1024'], async (srv) => {
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    let { ws } = await raw(`${wsUrl(srv)}/${sid}?token=${owner}`);
    let code = closed(ws);
    ws.send(Buffer.from([0, 2, 5, 1, 2])); // a varUint8Array that runs past the end
    assert.equal(await code, 1007);

    ({ ws } = await raw(`${wsUrl(srv)}/${sid}?token=${owner}`));
    code = closed(ws);
    const big = new Y.Doc();
    big.getText('monaco').insert(0, 'x'.repeat(4000));
    ws.send(syncUpdateFrame(Y.encodeStateAsUpdate(big)));
    assert.equal(await code, 1009);

    assert.equal((await srv.http(`/api/sessions/${sid}/participants/ed`, { token: owner, method: 'PUT', body: { role: 'editor' } })).ok, true);
    ({ ws } = await raw(`${wsUrl(srv)}/${sid}?token=${srv.token('ed')}`));
    code = closed(ws);
    assert.equal((await srv.http(`/api/sessions/${sid}/participants/ed`, { token: owner, method: 'DELETE' })).status, 204);
    assert.equal(await code, 4403);

    const f = await (await srv.http(`/api/sessions/${sid}/files`, { token: owner, method: 'POST', body: { path: 'gone.txt' } })).json();
    ({ ws } = await raw(`${wsUrl(srv)}/${sid}~${f.id}?token=${owner}`));
    code = closed(ws);
    assert.equal((await srv.http(`/api/sessions/${sid}/files/${f.id}`, { token: owner, method: 'DELETE' })).status, 204);
    assert.equal(await code, 4404);

    // The provider does not reconnect after a 44xx close (its default shouldReconnect).
    const p = provider(srv, sid, owner);
    await synced(p);
    assert.equal((await srv.http(`/api/sessions/${sid}`, { token: owner, method: 'DELETE' })).status, 204);
    await waitFor('the provider is closed for good', () => !p.wsconnected && !p.wsconnecting, 5000);
  });
});

test('once GET /text shows a provider\'s edit, kill -9 of the server loses nothing', async () => {
  let srv = await startServer();
  try {
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    const p = provider(srv, sid, owner);
    await synced(p);
    const t = p.doc.getText('monaco');
    for (let i = 0; i < 50; i++) t.insert(t.length, `${i} `);
    const want = text(p.doc);
    await waitFor('GET /text shows it', async () => (await (await srv.http(`/api/sessions/${sid}/text`, { token: owner })).text()) === want, 5000);
    p.destroy();
    await srv.kill();
    srv = await srv.restart();
    assert.equal(await (await srv.http(`/api/sessions/${sid}/text`, { token: owner })).text(), want);
  } finally {
    await srv.stop();
  }
});
