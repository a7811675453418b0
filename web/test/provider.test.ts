// TandemProvider against the real server binary (no mocks): join and sync
// both ways, many open files, acks, errors, rate limits and reconnects.
// The server comes from the Node suite's harness (target/debug/tandem).
import { afterEach, describe, expect, test } from 'vitest';
import * as Y from 'yjs';
// @ts-expect-error plain JS helper shared with tests/node
import { startServer, waitFor, NativeClient } from '../../tests/node/test/harness.js';
import { TandemProvider, type DocHandle } from '../src/provider';
import type { TandemError } from '../src/types';

type Srv = Awaited<ReturnType<typeof startServer>>;
const servers: Srv[] = [];
const providers: TandemProvider[] = [];
afterEach(async () => {
  for (const p of providers.splice(0)) p.destroy();
  for (const s of servers.splice(0)) await s.stop();
});

async function server(extra: string[] = []): Promise<Srv> {
  const s = await startServer(extra);
  servers.push(s);
  return s;
}

function provider(srv: Srv, token: string) {
  const p = new TandemProvider({ url: srv.url, token, socketOptions: { forceNew: true } });
  providers.push(p);
  return p;
}

async function session(srv: Srv, owner: string, body: object = { title: 't' }) {
  const r = await srv.http('/api/sessions', { token: owner, method: 'POST', body });
  expect(r.status).toBe(201);
  return (await r.json()).id as string;
}

const text = (h: DocHandle | undefined) => h?.text.toString();

describe('TandemProvider', () => {
  test('two providers sync both ways; acks empty the queue; GET /text agrees', async () => {
    const srv = await server();
    const alice = srv.token('alice');
    const sid = await session(srv, alice);
    const a = provider(srv, alice);
    const b = provider(srv, alice);
    const ack = await a.join(sid);
    expect(ack.role).toBe('owner');
    expect(ack.files.map((f) => f.path)).toEqual(['main.txt']);
    a.handle('main')!.text.insert(0, 'hello');
    await b.join(sid);
    await waitFor('b has a\'s text', () => text(b.handle('main')) === 'hello');
    b.handle('main')!.text.insert(5, ' world');
    await waitFor('a has b\'s edit', () => text(a.handle('main')) === 'hello world');
    await waitFor('everything acked', () => a.unacked === 0 && b.unacked === 0);
    const r = await srv.http(`/api/sessions/${sid}/text`, { token: alice });
    expect(await r.text()).toBe('hello world');
  });

  test('many files open at once, each its own document; close-file stops its updates', async () => {
    const srv = await server();
    const alice = srv.token('alice');
    const sid = await session(srv, alice);
    const ids: string[] = [];
    for (const path of ['a.rs', 'b/c.rs', 'd.md']) {
      const r = await srv.http(`/api/sessions/${sid}/files`, { token: alice, method: 'POST', body: { path, content: `// ${path}\n` } });
      ids.push((await r.json()).id);
    }
    const a = provider(srv, alice);
    const b = provider(srv, alice);
    await a.join(sid);
    await b.join(sid);
    const ha = await Promise.all(ids.map((id) => a.openFile(id)));
    const hb = await Promise.all(ids.map((id) => b.openFile(id)));
    expect(ha.map(text)).toEqual(['// a.rs\n', '// b/c.rs\n', '// d.md\n']);
    expect(ha[1].docId).toBe(`${sid}~${ids[1]}`);
    ha.forEach((h, i) => h.text.insert(0, `${i}`));
    await waitFor('b sees each file\'s edit in that file only', () => hb.map(text).join('|') === '0// a.rs\n|1// b/c.rs\n|2// d.md\n');
    expect(text(b.handle('main'))).toBe('');
    await b.closeFile(ids[0]);
    expect(b.handle(ids[0])).toBeUndefined();
    ha[0].text.insert(0, 'x');
    ha[2].text.insert(0, 'y');
    await waitFor('still-open files keep syncing', () => text(hb[2]) === 'y2// d.md\n');
    await new Promise((r) => setTimeout(r, 200));
    expect(text(hb[0])).toBe('0// a.rs\n'); // closed: the later 'x' never came
  });

  test('errors: a viewer becomes read-only, a deleted file closes, a bad token is UNAUTHORIZED', async () => {
    const srv = await server();
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    const viewer = provider(srv, srv.token('vic', { [sid]: 'viewer' }));
    const errors: TandemError[] = [];
    viewer.on('error', (e) => errors.push(e));
    const ro: boolean[] = [];
    viewer.on('readOnly', (x) => ro.push(x));
    await viewer.join(sid);
    expect(viewer.readOnly).toBe(true);
    // Edits of a viewer are never sent (the editor is read-only anyway).
    viewer.handle('main')!.text.insert(0, 'nope');
    await new Promise((r) => setTimeout(r, 200));
    expect(await (await srv.http(`/api/sessions/${sid}/text`, { token: owner })).text()).toBe('');

    const r = await srv.http(`/api/sessions/${sid}/files`, { token: owner, method: 'POST', body: { path: 'gone.txt' } });
    const fid = (await r.json()).id;
    await viewer.openFile(fid);
    const closed: string[] = [];
    viewer.on('closed', (h) => closed.push(h.fileId));
    expect((await srv.http(`/api/sessions/${sid}/files/${fid}`, { token: owner, method: 'DELETE' })).status).toBe(204);
    await waitFor('the deleted file is closed', () => closed.includes(fid));
    expect(errors.some((e) => e.code === 'FILE_NOT_FOUND' && e.docId === `${sid}~${fid}`)).toBe(true);
    await expect(viewer.openFile('nope')).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });

    const bad = provider(srv, srv.expiredToken());
    const badErrors: TandemError[] = [];
    bad.on('error', (e) => badErrors.push(e));
    await expect(bad.join(sid)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect(badErrors[0]?.code).toBe('UNAUTHORIZED');
    expect(bad.status).toBe('offline');
  });

  test('a role lowered to viewer while connected makes the provider read-only at once (role:changed)', async () => {
    const srv = await server();
    const owner = srv.token('owner');
    const sid = await session(srv, owner);
    expect((await srv.http(`/api/sessions/${sid}/participants/ed`, { token: owner, method: 'PUT', body: { role: 'editor' } })).ok).toBe(true);
    const p = provider(srv, srv.token('ed'));
    await p.join(sid);
    expect(p.readOnly).toBe(false);
    expect((await srv.http(`/api/sessions/${sid}/participants/ed`, { token: owner, method: 'PUT', body: { role: 'viewer' } })).ok).toBe(true);
    await waitFor('role:changed makes it read-only', () => p.readOnly);
    expect(p.role).toBe('viewer');
  });

  test('RATE_LIMITED: the provider waits retryAfterMs and everything arrives', async () => {
    const srv = await server(['--updates-per-second', '5', '--update-burst', '5']);
    const alice = srv.token('alice');
    const sid = await session(srv, alice);
    const a = provider(srv, alice);
    const b = provider(srv, alice);
    const limited: TandemError[] = [];
    a.on('error', (e) => { if (e.code === 'RATE_LIMITED') limited.push(e); });
    await a.join(sid);
    await b.join(sid);
    const t = a.handle('main')!.text;
    for (let i = 0; i < 40; i++) {
      t.insert(t.length, `${i % 10}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const want = t.toString();
    await waitFor('the server refused some with RATE_LIMITED', () => limited.length > 0, 5000);
    expect(limited[0].retryAfterMs).toBeGreaterThan(0);
    await waitFor('b converges', () => text(b.handle('main')) === want, 15000, () => `${text(b.handle('main'))} vs ${want}`);
    await waitFor('a has nothing unacked', () => a.unacked === 0, 15000);
    expect(await (await srv.http(`/api/sessions/${sid}/text`, { token: alice })).text()).toBe(want);
  }, 30000);

  test('reconnect: kill -9 of the server, edits while down, restart: re-join, resync, acked', async () => {
    let srv = await server();
    const alice = srv.token('alice');
    const sid = await session(srv, alice);
    const r = await srv.http(`/api/sessions/${sid}/files`, { token: alice, method: 'POST', body: { path: 'f.txt', content: 'f' } });
    const fid = (await r.json()).id;
    const a = provider(srv, alice);
    const b = provider(srv, alice);
    await a.join(sid);
    await b.join(sid);
    const af = await a.openFile(fid);
    const bf = await b.openFile(fid);
    const statuses: string[] = [];
    a.on('status', (s) => statuses.push(s));
    await srv.kill();
    await waitFor('a notices', () => a.status === 'reconnecting');
    a.handle('main')!.text.insert(0, 'main while down');
    af.text.insert(1, ' file while down');
    expect(a.unacked).toBe(2);
    srv = await srv.restart();
    servers[0] = srv;
    await waitFor('both files reach b', () => text(b.handle('main')) === 'main while down' && text(bf) === 'f file while down', 15000);
    await waitFor('a has nothing unacked', () => a.unacked === 0, 10000);
    expect(statuses).toEqual(['reconnecting', 'connected']);
    const body = await (await srv.http(`/api/sessions/${sid}/files/${fid}/content`, { token: alice })).text();
    expect(body).toBe('f file while down');
  }, 30000);

  test('interoperates with a plain socket.io-client + yjs native client', async () => {
    const srv = await server();
    const alice = srv.token('alice');
    const sid = await session(srv, alice);
    const p = provider(srv, alice);
    await p.join(sid);
    const c = new NativeClient(srv.url, alice);
    srv.track(c);
    await c.connected();
    await c.join(sid);
    c.doc.getText('monaco').insert(0, 'from plain');
    await waitFor('provider gets it', () => text(p.handle('main')) === 'from plain');
    p.handle('main')!.text.insert(0, '> ');
    await waitFor('plain client gets it', () => c.doc.getText('monaco').toString() === '> from plain');
    expect(Y.encodeStateVector(c.doc)).toEqual(Y.encodeStateVector(p.handle('main')!.doc));
  });
});
