// The native dialect (namespace `/`, PROTOCOL.md "Native dialect"), driven
// with plain socket.io-client + yjs through the harness's NativeClient
// (issue 2). Every test runs its own server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from 'yjs';
import { io } from 'socket.io-client';
import {
  withServer, NativeClient, nativeJoined, waitFor, nextEvent, sleep, rng, randomEdit, text, texts, signJwt, nowSecs,
} from './harness.js';

const ON_DEMAND = ['--on-demand-sessions'];

/** A connected (not joined) native client. */
async function connectedClient(srv, token, opts) {
  const c = srv.track(new NativeClient(srv.url, token, opts));
  await c.connected();
  return c;
}

/** The `connect_error` message of a handshake with these credentials (or 'connected'). */
async function handshake(srv, auth) {
  const s = srv.track(io(srv.url, { transports: ['websocket'], forceNew: true, reconnection: false, auth }));
  const handled = [];
  s.onAny((name) => handled.push(name));
  const got = await new Promise((ok) => {
    const t = setTimeout(() => ok('timeout'), 3000);
    s.on('connect', () => { clearTimeout(t); ok('connected'); });
    s.on('connect_error', (e) => { clearTimeout(t); ok(e.message); });
  });
  return { got, handled };
}

const errCode = (reply) => reply?.error?.code;

async function converge(n, edits, seed) {
  await withServer(ON_DEMAND, async (srv) => {
    const cs = [];
    for (let i = 0; i < n; i++) cs.push(await nativeJoined(srv, 'conv', srv.token(`u${i}`)));
    const r = rng(seed);
    for (let k = 0; k < edits; k++) {
      for (const c of cs) randomEdit(c.doc, r);
      if (k % 10 === 0) await sleep(1);
    }
    const docs = cs.map((c) => c.doc);
    await waitFor(`all ${n} native clients equal (seed ${seed})`,
      () => cs.every((c) => text(c.doc) === text(cs[0].doc)) && text(cs[0].doc).length > 0, 10000, () => texts(docs));
    // Every update was acknowledged as applied.
    await waitFor('every update acked', () => cs.every((c) => c.acks.length > 0 && c.acks.every((a) => a?.ok === true)), 5000,
      () => JSON.stringify(cs.flatMap((c) => c.acks.filter((a) => a?.ok !== true)).slice(0, 3)));
    // A late joiner receives the full document.
    const late = await nativeJoined(srv, 'conv', srv.token('late'));
    assert.equal(text(late.doc), text(cs[0].doc), 'late joiner right after its join + sync step 1');
  });
}

test('two native clients converge under random concurrent edits; a late joiner gets the full document', () => converge(2, 150, 11));
test('five native clients converge under random concurrent edits; a late joiner gets the full document', () => converge(5, 50, 12));

test('join ack carries sessionId, role, participants and chat; user-joined / user-left', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const a = await connectedClient(srv, srv.token('alice', {}, { name: 'Alice' }));
    const ra = await a.join('meta');
    assert.equal(ra.ok, true);
    assert.equal(ra.sessionId, 'meta');
    assert.equal(ra.role, 'owner', 'the on-demand creator owns the session');
    assert.ok(Array.isArray(ra.participants) && Array.isArray(ra.chat));
    const me = ra.participants.find((p) => p.id === 'alice');
    assert.ok(me, JSON.stringify(ra.participants));
    assert.equal(me.name, 'Alice');
    assert.match(me.color, /^#[0-9a-f]{6}$/i);

    const joined = nextEvent(a.socket, 'user-joined', { pred: (e) => e?.user?.id === 'bob' });
    const b = await connectedClient(srv, srv.token('bob', {}, { name: 'Bob' }));
    const rb = await b.join('meta');
    assert.equal(rb.role, 'editor', 'public on-demand session: public role editor');
    const [ev] = await joined;
    assert.equal(ev.sessionId, 'meta');
    assert.equal(ev.user.name, 'Bob');
    assert.ok(rb.participants.some((p) => p.id === 'alice'));

    const v = await connectedClient(srv, srv.token('vera', { meta: 'viewer' }));
    assert.equal((await v.join('meta')).role, 'viewer', 'the token claim decides');

    const left = nextEvent(a.socket, 'user-left', { pred: (e) => e?.userId === 'bob' });
    assert.deepEqual(await b.request('leave-session', { sessionId: 'meta' }), { ok: true });
    const [l] = await left;
    assert.equal(l.sessionId, 'meta');
    // After leaving, the session's events are NOT_JOINED.
    assert.equal(errCode(await b.sendUpdate('meta', Y.encodeStateAsUpdate(new Y.Doc()))), 'NOT_JOINED');
  });
});

test('offline edits made before joining reach the others', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const a = await nativeJoined(srv, 'off', srv.token('a'));
    a.doc.getText('monaco').insert(0, 'online ');
    const doc = new Y.Doc();
    doc.getText('monaco').insert(0, 'OFFLINE ');
    const b = await nativeJoined(srv, 'off', srv.token('b'), { doc });
    await waitFor('a sees b\'s offline edit', () => text(a.doc).includes('OFFLINE'), 5000, () => texts([a.doc, b.doc]));
    await waitFor('same text', () => text(a.doc) === text(b.doc) && text(b.doc).includes('online'), 3000, () => texts([a.doc, b.doc]));
  });
});

test('no token, expired, wrongly signed and malformed tokens get connect_error UNAUTHORIZED', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const cases = {
      'no auth': {},
      'empty token': { token: '' },
      expired: { token: srv.expiredToken() },
      'wrongly signed': { token: srv.wronglySignedToken() },
      malformed: { token: 'abc.def' },
      'number token': { token: 42 },
      'no sub': { token: signJwt({ name: 'N', exp: nowSecs() + 60 }, srv.secret) },
    };
    for (const [what, auth] of Object.entries(cases)) {
      const { got, handled } = await handshake(srv, auth);
      assert.equal(got, 'UNAUTHORIZED', what);
      assert.deepEqual(handled, [], `${what}: no event reaches a refused socket`);
    }
    assert.equal((await handshake(srv, { token: srv.token('fine') })).got, 'connected');
  });
});

test('a viewer\'s update is FORBIDDEN and changes nothing', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const owner = await nativeJoined(srv, 'ro', srv.token('owner'));
    owner.doc.getText('monaco').insert(0, 'original');
    await waitFor('owner update acked', () => owner.acks.length === 1 && owner.acks[0].ok);
    const viewer = await nativeJoined(srv, 'ro', srv.token('viewer', { ro: 'viewer' }));
    assert.equal(text(viewer.doc), 'original');
    viewer.doc.getText('monaco').insert(0, 'EVIL ');
    await waitFor('viewer update answered', () => viewer.acks.length === 1);
    assert.equal(viewer.acks[0].ok, false);
    assert.equal(errCode(viewer.acks[0]), 'FORBIDDEN', JSON.stringify(viewer.acks[0]));
    // Without an ack the rejection arrives as an `error` event.
    viewer.socket.emit('yjs-update', 'ro', Y.encodeStateAsUpdate(viewer.doc));
    await waitFor('error event FORBIDDEN', () => viewer.errors.some((e) => e?.code === 'FORBIDDEN'), 3000, () => JSON.stringify(viewer.errors));
    await sleep(200);
    assert.equal(text(owner.doc), 'original');
    const fresh = await nativeJoined(srv, 'ro', srv.token('fresh'));
    assert.equal(text(fresh.doc), 'original', 'the server document is unchanged');
    // The viewer still receives edits and may send awareness.
    owner.doc.getText('monaco').insert(8, '!');
    await waitFor('viewer receives later edits', () => text(viewer.doc).endsWith('original!'), 3000, () => texts([viewer.doc]));
  });
});

test('an unknown session is SESSION_NOT_FOUND without --on-demand-sessions', async () => {
  await withServer([], async (srv) => {
    const c = await connectedClient(srv, srv.token('u'));
    const r = await c.join('nobody-made-this');
    assert.equal(r.ok, false);
    assert.equal(errCode(r), 'SESSION_NOT_FOUND', JSON.stringify(r));
    const d = await connectedClient(srv, srv.token('w', { 'nobody-made-this': 'owner' }));
    assert.equal(errCode(await d.join('nobody-made-this')), 'SESSION_NOT_FOUND', 'a sessions claim does not create a session');
  });
});

// Depends on the HTTP API (`POST /api/sessions`, PROTOCOL.md "HTTP API").
test('[HTTP API] a session created with POST /api/sessions can be joined without --on-demand-sessions', async () => {
  await withServer([], async (srv) => {
    const ownerTok = srv.token('owner');
    const res = await srv.http('/api/sessions', { method: 'POST', token: ownerTok, body: { title: 'made over HTTP', public: true, publicRole: 'editor' } });
    assert.ok(res.ok, `POST /api/sessions: ${res.status} ${await res.clone().text()}`);
    const session = await res.json();
    assert.match(session.id, /^[A-Za-z0-9_-]{1,64}$/);
    const a = await nativeJoined(srv, session.id, ownerTok);
    const b = await nativeJoined(srv, session.id, srv.token('someone'));
    a.doc.getText('monaco').insert(0, 'over http');
    await waitFor('b sees a', () => text(b.doc) === 'over http');
    const t = await srv.http(`/api/sessions/${session.id}/text`, { token: ownerTok });
    assert.equal(await t.text(), 'over http');
  });
});

test('events for a session not joined get NOT_JOINED', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const other = await nativeJoined(srv, 'elsewhere', srv.token('o'));
    const c = await nativeJoined(srv, 'mine', srv.token('u'));
    const u = new Y.Doc();
    u.getText('monaco').insert(0, 'sneaky');
    assert.equal(errCode(await c.sendUpdate('elsewhere', Y.encodeStateAsUpdate(u))), 'NOT_JOINED', 'yjs-update');
    const ss1 = await c.request('yjs-sync-step-1', 'elsewhere', Y.encodeStateVector(new Y.Doc()));
    assert.equal(errCode(ss1), 'NOT_JOINED', `yjs-sync-step-1 replied ${JSON.stringify(ss1)}`);
    assert.equal(errCode(await c.request('chat-message', { sessionId: 'elsewhere', content: 'hi' })), 'NOT_JOINED', 'chat-message');
    c.socket.emit('yjs-awareness', 'elsewhere', new Uint8Array([0]));
    c.socket.emit('typing', { sessionId: 'elsewhere' });
    await waitFor('two NOT_JOINED error events', () => c.errors.filter((e) => e?.code === 'NOT_JOINED').length >= 2, 3000,
      () => JSON.stringify(c.errors));
    await sleep(100);
    assert.equal(text(other.doc), '', 'nothing reached the other session');
    assert.ok(!other.events.some((e) => e.name === 'user-typing'), 'no typing event leaked');
  });
});

test('malformed session ids get INVALID_SESSION_ID', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const c = await connectedClient(srv, srv.token('u'));
    for (const id of ['', 'has space', 'dot.dot', 'a/b', 'x'.repeat(65), 'ümlaut', 'q?x', 'h#x']) {
      const r = await c.join(id);
      assert.equal(errCode(r), 'INVALID_SESSION_ID', `${JSON.stringify(id)} -> ${JSON.stringify(r)}`);
    }
    assert.equal((await c.join('x'.repeat(64))).ok, true, '64 characters are fine');
  });
});

test('arguments of the wrong shape get INVALID_PAYLOAD', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const c = await nativeJoined(srv, 'shape', srv.token('u'));
    const cases = [
      ['join-session', { sessionId: 42 }],
      ['join-session', 'shape'],
      ['join-session', {}],
      ['yjs-update', 42, new Uint8Array([0, 0])],
      ['yjs-update', 'shape', 'not binary'],
      ['yjs-update', 'shape', [0, 0]],
      ['yjs-sync-step-1', 'shape', { not: 'binary' }],
      ['chat-message', { sessionId: 'shape', content: 5 }],
    ];
    for (const [ev, ...args] of cases) {
      const r = await c.request(ev, ...args);
      assert.equal(errCode(r), 'INVALID_PAYLOAD', `${ev}(${JSON.stringify(args)}) -> ${JSON.stringify(r)}`);
    }
    // The socket is still fine.
    c.doc.getText('monaco').insert(0, 'still fine');
    await waitFor('update acked', () => c.acks.some((a) => a?.ok));
  });
});

test('garbage bytes get INVALID_UPDATE; nothing is applied and the session stays usable', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const a = await nativeJoined(srv, 'junk', srv.token('a'));
    const b = await nativeJoined(srv, 'junk', srv.token('b'));
    a.doc.getText('monaco').insert(0, 'before');
    await waitFor('b has it', () => text(b.doc) === 'before');
    for (const g of [[255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1], [1, 2, 3], [0], [9, 9, 9, 9], [1, 1, 1, 1, 1, 1, 1, 1]]) {
      const r = await a.sendUpdate('junk', new Uint8Array(g));
      assert.equal(errCode(r), 'INVALID_UPDATE', `${JSON.stringify(g)} -> ${JSON.stringify(r)}`);
    }
    a.socket.emit('yjs-awareness', 'junk', new Uint8Array([7, 7, 7]));
    await waitFor('awareness garbage: error event INVALID_UPDATE', () => a.errors.some((e) => e?.code === 'INVALID_UPDATE'), 3000,
      () => JSON.stringify(a.errors));
    b.doc.getText('monaco').insert(6, ' after');
    await waitFor('both still converge', () => text(a.doc) === 'before after' && text(b.doc) === 'before after', 3000, () => texts([a.doc, b.doc]));
    const fresh = await nativeJoined(srv, 'junk', srv.token('c'));
    assert.equal(text(fresh.doc), 'before after');
  });
});

test('an update above --max-update-bytes gets UPDATE_TOO_LARGE and is not applied', async () => {
  await withServer([...ON_DEMAND, '--max-update-bytes', '1000'], async (srv) => {
    const a = await nativeJoined(srv, 'big', srv.token('a'));
    const b = await nativeJoined(srv, 'big', srv.token('b'));
    a.doc.getText('monaco').insert(0, 'small');
    await waitFor('b has the small edit', () => text(b.doc) === 'small');
    const big = new Y.Doc();
    big.getText('monaco').insert(0, 'x'.repeat(2000));
    const r = await a.sendUpdate('big', Y.encodeStateAsUpdate(big));
    assert.equal(errCode(r), 'UPDATE_TOO_LARGE', JSON.stringify(r));
    await sleep(200);
    assert.equal(text(b.doc), 'small');
    const fresh = await nativeJoined(srv, 'big', srv.token('c'));
    assert.equal(text(fresh.doc), 'small');
  });
});

test('an update that would grow the document above --max-document-bytes gets DOCUMENT_TOO_LARGE', async () => {
  await withServer([...ON_DEMAND, '--max-document-bytes', '3000'], async (srv) => {
    const a = await nativeJoined(srv, 'grow', srv.token('a'));
    let code = null;
    for (let i = 0; i < 20 && !code; i++) {
      const d = new Y.Doc();
      d.getText('monaco').insert(0, String.fromCharCode(97 + i).repeat(500));
      const r = await a.sendUpdate('grow', Y.encodeStateAsUpdate(d));
      if (!r.ok) code = errCode(r);
    }
    assert.equal(code, 'DOCUMENT_TOO_LARGE');
    const fresh = await nativeJoined(srv, 'grow', srv.token('c'));
    assert.ok(Y.encodeStateAsUpdate(fresh.doc).length <= 3000, 'the server document stayed under the limit');
  });
});

test('chat: a message is broadcast; empty and too long messages are rejected', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const a = await nativeJoined(srv, 'chat', srv.token('a'));
    const b = await nativeJoined(srv, 'chat', srv.token('b'));
    const got = nextEvent(b.socket, 'chat-message');
    const r = await a.request('chat-message', { sessionId: 'chat', content: 'hello' });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.message.content, 'hello');
    const [m] = await got;
    assert.equal(m.content, 'hello');
    assert.equal(m.userId, 'a');
    assert.equal(m.sessionId, 'chat');
    assert.equal(errCode(await a.request('chat-message', { sessionId: 'chat', content: '  \n ' })), 'MESSAGE_EMPTY');
    assert.equal(errCode(await a.request('chat-message', { sessionId: 'chat', content: 'x'.repeat(1001) })), 'MESSAGE_TOO_LONG');
  });
});

test('a flood above the rate limit gets RATE_LIMITED with retryAfterMs, and all replicas still converge', async () => {
  await withServer([...ON_DEMAND, '--updates-per-second', '5', '--update-burst', '5'], async (srv) => {
    const a = await nativeJoined(srv, 'flood', srv.token('a'));
    const b = await nativeJoined(srv, 'flood', srv.token('b'));
    const r = rng(21);
    for (let k = 0; k < 50; k++) randomEdit(a.doc, r); // 50 separate yjs-update events at once
    b.doc.getText('monaco').insert(0, 'B');
    await waitFor('all 50 updates answered', () => a.acks.length === 50, 5000, () => `${a.acks.length} acks`);
    const limited = a.acks.filter((x) => errCode(x) === 'RATE_LIMITED');
    assert.ok(limited.length > 0, `no RATE_LIMITED among ${JSON.stringify(a.acks.slice(0, 3))}...`);
    for (const x of limited) {
      assert.equal(x.ok, false);
      assert.equal(typeof x.error.retryAfterMs, 'number', JSON.stringify(x));
      assert.ok(x.error.retryAfterMs > 0, JSON.stringify(x));
    }
    assert.ok(a.acks.filter((x) => x.ok).length >= 1, 'the burst was accepted');
    // The server asks the throttled socket for what it lacks; the client's plain ack heals the gap.
    await waitFor('a and b converge after the flood', () => text(a.doc) === text(b.doc) && text(b.doc).length > 1, 10000,
      () => `${texts([a.doc, b.doc])}\nserver-initiated sync step 1 at a: ${a.serverSyncs}`);
    assert.ok(a.serverSyncs >= 2, `the server re-sent yjs-sync-step-1 to the throttled socket (${a.serverSyncs} in all)`);
    const late = await nativeJoined(srv, 'flood', srv.token('late'));
    assert.equal(text(late.doc), text(a.doc), 'the server holds everything');
    // Without an ack the rejection is an error event.
    a.ackUpdates = false;
    for (let k = 0; k < 30; k++) randomEdit(a.doc, r);
    await waitFor('RATE_LIMITED error event', () => a.errors.some((e) => e?.code === 'RATE_LIMITED' && typeof e.retryAfterMs === 'number'), 3000,
      () => JSON.stringify(a.errors.slice(0, 3)));
    await waitFor('converge again', () => text(a.doc) === text(b.doc), 10000, () => texts([a.doc, b.doc]));
  });
});

test('awareness: a joiner receives present states; a killed client disappears at the others within one second', async () => {
  await withServer(ON_DEMAND, async (srv) => {
    const a = await nativeJoined(srv, 'aw', srv.token('a'));
    a.awareness.setLocalStateField('user', { name: 'A' });
    const id = a.doc.clientID;
    await sleep(50);
    const b = await nativeJoined(srv, 'aw', srv.token('b'));
    const c = await nativeJoined(srv, 'aw', srv.token('c'));
    await waitFor('b and c see a', () => [b, c].every((x) => x.awareness.getStates().get(id)?.user?.name === 'A'), 3000);
    b.awareness.setLocalStateField('user', { name: 'B' });
    await waitFor('a sees b', () => a.awareness.getStates().get(b.doc.clientID)?.user?.name === 'B');
    a.kill();
    const cut = Date.now();
    await waitFor('a\'s state gone at b and c', () => [b, c].every((x) => !x.awareness.getStates().has(id)), 1000);
    assert.ok(Date.now() - cut <= 1000);
    assert.equal(c.awareness.getStates().get(b.doc.clientID)?.user?.name, 'B', 'b\'s state is untouched');
  });
});

test('one client\'s bad input does not disturb the others', async () => {
  await withServer([...ON_DEMAND, '--max-update-bytes', '1000'], async (srv) => {
    const good = [await nativeJoined(srv, 'mix', srv.token('g1')), await nativeJoined(srv, 'mix', srv.token('g2'))];
    const bad = await nativeJoined(srv, 'mix', srv.token('bad'));
    const r = rng(33);
    const junk = [
      () => bad.socket.emit('yjs-update', 'mix', new Uint8Array([1, 2, 3])),
      () => bad.socket.emit('yjs-update', 'mix', new Uint8Array(3000)),
      () => bad.socket.emit('yjs-update', 42, 'x'),
      () => bad.socket.emit('yjs-awareness', 'mix', new Uint8Array([255, 255])),
      () => bad.socket.emit('join-session', null),
      () => bad.socket.emit('yjs-sync-step-1', 'mix'),
      () => bad.socket.emit('no-such-event', 1, 2, 3),
    ];
    for (let k = 0; k < 60; k++) {
      for (const g of good) randomEdit(g.doc, r);
      junk[k % junk.length]();
      if (k % 10 === 0) await sleep(1);
    }
    const docs = good.map((g) => g.doc).concat([bad.doc]);
    await waitFor('all replicas equal', () => docs.every((d) => text(d) === text(docs[0])) && text(docs[0]).length > 0, 10000, () => texts(docs));
    assert.ok(srv.alive(), 'server still running');
  });
});
