// Test harness: starts the real `tandem` binary on port 0 with a fresh SQLite
// database, mints tokens with `tandem token` (and signs broken ones itself),
// and offers a native-dialect client built on plain socket.io-client + yjs.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac, randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';

const here = dirname(fileURLToPath(import.meta.url));
/** The server binary: `TANDEM_BIN`, else `target/debug/tandem` of this repository. */
export const BIN = process.env.TANDEM_BIN
  ? resolve(process.cwd(), process.env.TANDEM_BIN)
  : resolve(here, '../../../target/debug/tandem');

// A crashed test must not leave servers behind.
const live = new Set();
process.on('exit', () => { for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

/**
 * Starts a server on 127.0.0.1:0 with a fresh SQLite database in a temporary
 * directory and a random secret. `extra` are additional CLI flags, e.g.
 * `['--on-demand-sessions', '--anonymous', 'editor']`. `reuse` restarts a
 * stopped server's database, secret and port (`{ dir, secret, port }`).
 */
export async function startServer(extra = [], reuse = null) {
  const dir = reuse?.dir ?? mkdtempSync(join(tmpdir(), 'tandem-node-'));
  const secret = reuse?.secret ?? randomBytes(16).toString('hex');
  const args = ['serve', '--bind', `127.0.0.1:${reuse?.port ?? 0}`, '--database-url', `sqlite://${dir}/t.db`,
    '--data-dir', dir, '--secret', secret, ...extra];
  const child = spawn(BIN, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let log = '';
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; live.delete(child); });
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not log "listening on" within 15 s:\n${log}`)), 15000);
    const onData = (d) => {
      log += d.toString();
      const m = log.match(/listening on (http:\/\/[0-9.]+:[0-9]+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => { clearTimeout(timer); fail(new Error(`cannot start ${BIN}: ${e.message}`)); });
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`server exited with ${code} before listening:\n${log}`)); });
  });
  const tracked = [];
  let keepDir = false;
  const srv = {
    url, secret, dir, args, extra,
    port: Number(new URL(url).port),
    /** Kills the process at once (no flush, no shutdown): `kill -9`. */
    kill() {
      child.kill('SIGKILL');
      return new Promise((ok) => (exited !== null ? ok() : child.once('exit', () => ok())));
    },
    /** Everything the server logged so far (for failure messages). */
    log: () => log,
    /** Whether the process is still running. */
    alive: () => exited === null,
    /**
     * A token from the real CLI (`tandem token`). `sessions`: `{ id: role }`
     * becomes `--session id=role` claims.
     */
    token(user, sessions = {}, { name = user.toUpperCase(), ttl = 3600 } = {}) {
      const a = ['token', '--secret', secret, '--user', user, '--name', name, '--ttl-secs', String(ttl)];
      for (const [id, role] of Object.entries(sessions)) a.push('--session', `${id}=${role}`);
      return execFileSync(BIN, a).toString().trim();
    },
    /** A well-formed token, correctly signed, that expired ten minutes ago. */
    expiredToken(user = 'expired') {
      return signJwt({ sub: user, name: user, exp: nowSecs() - 600 }, secret);
    },
    /** A well-formed, unexpired token signed with the wrong secret. */
    wronglySignedToken(user = 'forger') {
      return signJwt({ sub: user, name: user, exp: nowSecs() + 3600 }, `${secret}-not`);
    },
    /** Registers a provider / client / socket to be closed on `stop()`. */
    track(x) { tracked.push(x); return x; },
    /** `fetch` against the server with an optional bearer token. */
    http(path, { token, method = 'GET', body, headers = {} } = {}) {
      const h = { ...headers };
      if (token) h.authorization = `Bearer ${token}`;
      if (body !== undefined && !(body instanceof Uint8Array)) h['content-type'] = 'application/json';
      const b = body === undefined ? undefined : (body instanceof Uint8Array ? body : JSON.stringify(body));
      return fetch(`${url}${path}`, { method, headers: h, body: b });
    },
    async stop() {
      for (const x of tracked) {
        try {
          if (typeof x.destroy === 'function') x.destroy();
          else if (typeof x.close === 'function') x.close();
          else if (typeof x.disconnect === 'function') x.disconnect();
        } catch { /* already gone */ }
        // A socket refused by the namespace middleware is "disconnected" but its
        // manager's connection stays open: close that too.
        const sock = x.socket ?? (x.io ? x : null);
        try { sock?.disconnect(); sock?.io?.engine?.close(); } catch { /* already gone */ }
      }
      if (exited === null) {
        child.kill('SIGTERM');
        await new Promise((ok) => {
          const t = setTimeout(() => { child.kill('SIGKILL'); ok(); }, 5000);
          child.once('exit', () => { clearTimeout(t); ok(); });
        });
      }
      if (!keepDir) rmSync(dir, { recursive: true, force: true });
    },
    /** Stops (or has killed) this server and starts it again on the same port and database. */
    async restart() {
      keepDir = true;
      await srv.stop();
      keepDir = false;
      return startServer(extra, { dir, secret, port: srv.port });
    },
  };
  return srv;
}

/** Runs `body(srv)` against a fresh server and always stops it. */
export async function withServer(extra, body) {
  const srv = await startServer(extra);
  try {
    return await body(srv);
  } catch (e) {
    if (!srv.alive()) e.message += `\n--- the server died; its log:\n${srv.log().slice(-4000)}`;
    throw e;
  } finally {
    await srv.stop();
  }
}

export const nowSecs = () => Math.floor(Date.now() / 1000);

/** HS256 JWT signed here with node's crypto (for expired and wrongly signed tokens). */
export function signJwt(payload, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/**
 * Polls `cond` every 20 ms until it is truthy; fails after `timeout` ms with
 * `what` and, if given, `detail()` (the state that did not match).
 */
export async function waitFor(what, cond, timeout = 5000, detail = null) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) {
      let d = '';
      if (detail) { try { d = `\n${detail()}`; } catch (e) { d = `\n(detail failed: ${e.message})`; } }
      throw new Error(`timed out after ${timeout} ms waiting for: ${what}${d}`);
    }
    await sleep(20);
  }
}

/** Resolves with the arguments of the first `event` on `emitter` that satisfies `pred`. */
export function nextEvent(emitter, event, { pred = () => true, timeout = 5000 } = {}) {
  return new Promise((ok, fail) => {
    const t = setTimeout(() => { emitter.off(event, h); fail(new Error(`no "${event}" event within ${timeout} ms`)); }, timeout);
    function h(...args) {
      if (!pred(...args)) return;
      clearTimeout(t);
      emitter.off(event, h);
      ok(args);
    }
    emitter.on(event, h);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Seeded PRNG (mulberry32): failures are reproducible from the seed. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One random insert (1–4 chars) or delete (1–4 chars) on `doc`'s `monaco` text. */
export function randomEdit(doc, r) {
  const t = doc.getText('monaco');
  if (t.length > 10 && r() < 0.35) {
    const pos = Math.floor(r() * t.length);
    t.delete(pos, Math.min(1 + Math.floor(r() * 4), t.length - pos));
  } else {
    let s = '';
    const n = 1 + Math.floor(r() * 4);
    for (let i = 0; i < n; i++) s += String.fromCharCode(97 + Math.floor(r() * 26));
    t.insert(Math.floor(r() * (t.length + 1)), s);
  }
}

export const text = (doc) => doc.getText('monaco').toString();

/** Failure detail: every replica's text, shortened. */
export const texts = (docs) => docs.map((d, i) => `  [${i}] (${text(d).length}) ${JSON.stringify(text(d).slice(0, 80))}`).join('\n');

/**
 * Cuts a socket.io-client socket's transport abruptly: the TCP connection is
 * destroyed without a WebSocket close frame or a socket.io DISCONNECT packet,
 * as if the process had been killed. Works for any socket (provider or native).
 */
export function cutTransport(socket) {
  const transport = socket.io.engine?.transport;
  const ws = transport?.ws;
  if (!ws) throw new Error(`no websocket transport to cut (transport: ${transport?.name})`);
  if (typeof ws.terminate === 'function') ws.terminate();
  else ws._socket.destroy();
}

/**
 * A native-dialect client (namespace `/`), implemented per PROTOCOL.md as the
 * web editor does it: joins with an ack, answers the server's
 * `yjs-sync-step-1` with its diff, sends its own sync step 1 to fetch the
 * server state, relays local updates (`yjs-update`, with an ack whose replies
 * are collected in `acks`) and awareness, applies incoming updates.
 * One client joins one session.
 */
export class NativeClient {
  constructor(url, token, { doc = new Y.Doc(), io: ioOpts = {}, ackUpdates = true } = {}) {
    this.doc = doc;
    this.awareness = new awarenessProtocol.Awareness(doc);
    this.events = [];         // every event received: { name, args }
    this.errors = [];         // payloads of `error` events
    this.acks = [];           // replies to our own `yjs-update`s
    this.serverSyncs = 0;     // server-initiated `yjs-sync-step-1`s answered
    this.session = null;
    this.joining = null;
    this.ackUpdates = ackUpdates;
    this.socket = io(url, {
      transports: ['websocket'], forceNew: true, reconnection: false,
      auth: token ? { token } : {}, ...ioOpts,
    });
    this.socket.on('yjs-sync-step-1', (sessionId, sv, ack) => {
      this.serverSyncs++;
      if (typeof ack === 'function') ack(Y.encodeStateAsUpdate(this.doc, new Uint8Array(sv)));
    });
    this.socket.on('yjs-update', (sessionId, update) => {
      if (this.mine(sessionId)) Y.applyUpdate(this.doc, new Uint8Array(update), this);
    });
    this.socket.on('yjs-awareness', (sessionId, u) => {
      if (this.mine(sessionId)) awarenessProtocol.applyAwarenessUpdate(this.awareness, new Uint8Array(u), this);
    });
    this.socket.on('error', (e) => this.errors.push(e));
    // Like the web editor: after an automatic reconnect, join again (the join's
    // sync steps exchange whatever either side missed meanwhile).
    this.rejoins = 0;
    this.socket.io.on('reconnect', () => {
      const s = this.session;
      if (!s) return;
      this.session = null;
      this.rejoins++;
      this.join(s).catch(() => { /* the test sees the divergence */ });
    });
    this.socket.onAny((name, ...args) => this.events.push({ name, args }));
    this.onDocUpdate = (update, origin) => {
      if (origin === this || !this.session) return;
      if (this.ackUpdates) this.socket.emit('yjs-update', this.session, update, (reply) => this.acks.push(reply));
      else this.socket.emit('yjs-update', this.session, update);
    };
    this.doc.on('update', this.onDocUpdate);
    this.onAwarenessUpdate = ({ added, updated, removed }, origin) => {
      if (origin === this || !this.session) return;
      const changed = added.concat(updated, removed);
      this.socket.emit('yjs-awareness', this.session, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed));
    };
    this.awareness.on('update', this.onAwarenessUpdate);
  }

  /**
   * Whether an incoming event is for our session. The server may send the
   * present awareness states and updates before our join ack arrives, so the
   * session being joined counts too.
   */
  mine(sessionId) { return sessionId === this.session || sessionId === this.joining; }

  /** Resolves on `connect`, rejects with the `connect_error`. */
  connected() {
    return new Promise((ok, fail) => {
      if (this.socket.connected) return ok();
      this.socket.once('connect', ok);
      this.socket.once('connect_error', fail);
    });
  }

  /**
   * `join-session`; on success also fetches the server state with our own
   * sync step 1 (the server's sync step 1 pulls our offline edits). Returns
   * the join ack.
   */
  async join(sessionId) {
    this.joining = sessionId;
    let reply;
    try {
      reply = await this.socket.timeout(5000).emitWithAck('join-session', { sessionId });
    } finally {
      this.joining = null;
    }
    if (reply && reply.ok) {
      this.session = sessionId;
      const diff = await this.socket.timeout(5000).emitWithAck('yjs-sync-step-1', sessionId, Y.encodeStateVector(this.doc));
      Y.applyUpdate(this.doc, new Uint8Array(diff), this);
      // Announce our presence if it was set before joining.
      if (this.awareness.getLocalState() !== null) {
        this.socket.emit('yjs-awareness', sessionId, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]));
      }
    }
    return reply;
  }

  /** Any event with an ack (5 s timeout); returns the ack's first argument. */
  request(event, ...args) {
    return this.socket.timeout(5000).emitWithAck(event, ...args);
  }

  /** Sends an update by hand with an ack; returns the reply. */
  sendUpdate(sessionId, update) {
    return this.request('yjs-update', sessionId, update);
  }

  /** Closes cleanly (socket.io DISCONNECT). */
  close() {
    this.doc.off('update', this.onDocUpdate);
    this.awareness.off('update', this.onAwarenessUpdate);
    this.awareness.destroy();
    this.socket.disconnect();
  }

  /** Drops the connection abruptly (no DISCONNECT packet, no close frame). */
  kill() { cutTransport(this.socket); }
}

/** A connected, joined native client; throws with the ack if the join fails. */
export async function nativeJoined(srv, sessionId, token, opts = {}) {
  const c = srv.track(new NativeClient(srv.url, token, opts));
  await c.connected();
  const reply = await c.join(sessionId);
  if (!reply?.ok) throw new Error(`join ${sessionId} failed: ${JSON.stringify(reply)}`);
  return c;
}
