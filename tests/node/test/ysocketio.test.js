// The y-socket.io dialect, proven with the unmodified npm `y-socket.io`
// SocketIOProvider (issue 4). Every test runs its own server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from 'yjs';
import { SocketIOProvider } from 'y-socket.io';
import { startServer, signJwt, waitFor, sleep, rng, randomEdit, text, NativeClient } from './harness.js';

function provider(srv, room, token, { doc = new Y.Doc(), io = {} } = {}) {
  const p = new SocketIOProvider(srv.url, room, doc, { autoConnect: true, disableBc: true, auth: token ? { token } : {} }, io);
  return srv.track(p);
}

const connected = (p) => waitFor('provider connected', () => p.socket.connected);
const refusal = (p) => new Promise((ok) => p.on('connection-error', (err) => ok(err.message)));

async function converge(n, edits, seed) {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    const ps = [];
    for (let i = 0; i < n; i++) {
      const p = provider(srv, 'conv', srv.token(`u${i}`));
      await connected(p);
      ps.push(p);
    }
    const r = rng(seed);
    for (let k = 0; k < edits; k++) {
      for (const p of ps) randomEdit(p.doc, r);
      if (k % 10 === 0) await sleep(1);
    }
    await waitFor('all providers equal', () => ps.every((p) => text(p.doc) === text(ps[0].doc)) && text(ps[0].doc).length > 0, 10000);
    // A late joiner gets everything.
    const late = provider(srv, 'conv', srv.token('late'));
    await waitFor('late joiner has the document', () => text(late.doc) === text(ps[0].doc));
  } finally {
    await srv.stop();
  }
}

test('two providers converge under random concurrent edits; a late joiner gets everything', () => converge(2, 120, 1));
test('five providers converge under random concurrent edits', () => converge(5, 40, 2));

test('offline edits arrive on connect', async () => {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    const a = provider(srv, 'off', srv.token('a'));
    await connected(a);
    a.doc.getText('monaco').insert(0, 'online ');
    const offline = new Y.Doc();
    offline.getText('monaco').insert(0, 'OFFLINE ');
    const b = provider(srv, 'off', srv.token('b'), { doc: offline });
    await waitFor('a sees b\'s offline edit', () => text(a.doc).includes('OFFLINE'));
    await waitFor('b sees a\'s edit', () => text(b.doc).includes('online'));
    assert.equal(text(a.doc), text(b.doc));
  } finally {
    await srv.stop();
  }
});

test('awareness of a provider whose transport is cut disappears within one second', async () => {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    const a = provider(srv, 'aw', srv.token('a'), { io: { reconnection: false } });
    const b = provider(srv, 'aw', srv.token('b'));
    await connected(a);
    await connected(b);
    a.awareness.setLocalStateField('user', { name: 'A', color: '#ff0000' });
    const id = a.doc.clientID;
    await waitFor('b sees a', () => b.awareness.getStates().get(id)?.user?.name === 'A');
    // Cut the TCP connection under socket.io: no goodbye of any kind.
    a.socket.io.engine.transport.ws._socket.destroy();
    const cut = Date.now();
    await waitFor('a\'s state gone at b', () => !b.awareness.getStates().has(id), 1000);
    assert.ok(Date.now() - cut < 1000);
  } finally {
    await srv.stop();
  }
});

test('token-less and bad tokens are refused unless --anonymous allows them', async () => {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    const expired = signJwt({ sub: 'u', name: 'U', exp: Math.floor(Date.now() / 1000) - 60 }, srv.secret);
    const wrong = signJwt({ sub: 'u', name: 'U', exp: Math.floor(Date.now() / 1000) + 60 }, 'not-the-secret');
    for (const tok of [null, expired, wrong, 'garbage']) {
      const p = provider(srv, 'room', tok, { io: { reconnection: false } });
      assert.equal(await refusal(p), 'UNAUTHORIZED', `token ${tok}`);
      assert.equal(p.socket.connected, false);
    }
  } finally {
    await srv.stop();
  }
  const anon = await startServer(['--on-demand-sessions', '--anonymous', 'editor']);
  try {
    const owner = provider(anon, 'pub', anon.token('owner'));
    await connected(owner);
    const guest = provider(anon, 'pub', null);
    await connected(guest);
    guest.doc.getText('monaco').insert(0, 'from a guest');
    await waitFor('owner sees the guest edit', () => text(owner.doc) === 'from a guest');
  } finally {
    await anon.stop();
  }
});

test('on-demand sessions: a new room name creates a session; without the flag it is SESSION_NOT_FOUND', async () => {
  const closed = await startServer([]);
  try {
    const p = provider(closed, 'brand-new', closed.token('u'), { io: { reconnection: false } });
    assert.equal(await refusal(p), 'SESSION_NOT_FOUND');
  } finally {
    await closed.stop();
  }
  const open = await startServer(['--on-demand-sessions']);
  try {
    const p = provider(open, 'brand-new', open.token('u'));
    await connected(p);
    p.doc.getText('monaco').insert(0, 'hi');
    const q = provider(open, 'brand-new', open.token('v'));
    await waitFor('the created session is shared', () => text(q.doc) === 'hi');
  } finally {
    await open.stop();
  }
});

test('a viewer\'s edits are not applied and the viewer gets FORBIDDEN', async () => {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    const owner = provider(srv, 'ro', srv.token('owner'));
    await connected(owner);
    owner.doc.getText('monaco').insert(0, 'original');
    const viewer = provider(srv, 'ro', srv.token('viewer', { ro: 'viewer' }));
    await waitFor('viewer receives the document', () => text(viewer.doc) === 'original');
    const errors = [];
    viewer.socket.on('error', (e) => errors.push(e));
    viewer.doc.getText('monaco').insert(0, 'EVIL ');
    await waitFor('FORBIDDEN error event', () => errors.some((e) => e.code === 'FORBIDDEN'));
    await sleep(200);
    assert.equal(text(owner.doc), 'original');
    const check = provider(srv, 'ro', srv.token('checker'));
    await waitFor('fresh replica synced', () => text(check.doc) === 'original');
  } finally {
    await srv.stop();
  }
});

test('room names outside the id pattern are refused with INVALID_SESSION_ID', async () => {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    for (const room of ['has space', 'dot.dot', 'x'.repeat(65), 'ümlaut']) {
      const p = provider(srv, room, srv.token('u'), { io: { reconnection: false } });
      assert.equal(await refusal(p), 'INVALID_SESSION_ID', room);
    }
  } finally {
    await srv.stop();
  }
});

test('a y-socket.io provider and a native client converge in one session', async () => {
  const srv = await startServer(['--on-demand-sessions']);
  try {
    const p = provider(srv, 'mixed', srv.token('ysio'));
    await connected(p);
    const n = srv.track(new NativeClient(srv.url, srv.token('native')));
    await n.connected();
    assert.equal((await n.join('mixed')).ok, true);
    const r = rng(3);
    for (let k = 0; k < 60; k++) {
      randomEdit(p.doc, r);
      randomEdit(n.doc, r);
      if (k % 10 === 0) await sleep(2);
    }
    await waitFor('both dialects agree', () => text(p.doc) === text(n.doc) && text(p.doc).length > 0, 10000);
  } finally {
    await srv.stop();
  }
});
