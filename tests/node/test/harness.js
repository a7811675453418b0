// Test harness: starts the real `tandem` binary on port 0 with a fresh SQLite
// database, mints tokens with `tandem token`, and offers a native-dialect
// client built on plain socket.io-client + yjs.
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
export const BIN = process.env.TANDEM_BIN ?? resolve(here, '../../../target/debug/tandem');

/** A running server. `extra` are additional CLI flags. */
export async function startServer(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-node-'));
  const secret = randomBytes(16).toString('hex');
  const args = ['serve', '--bind', '127.0.0.1:0', '--database-url', `sqlite://${dir}/t.db`,
    '--data-dir', dir, '--secret', secret, ...extra];
  const child = spawn(BIN, args, { env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn,tandem=info' } });
  let log = '';
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${log}`)), 15000);
    const onData = (d) => {
      log += d.toString();
      const m = log.match(/listening on (http:\/\/[0-9.:]+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => fail(new Error(`server exited with ${code}:\n${log}`)));
  });
  const sockets = [];
  return {
    url, secret, dir,
    /** A token from the real CLI. `sessions`: { id: role }. */
    token(user, sessions = {}, ttl = 3600) {
      const a = ['token', '--secret', secret, '--user', user, '--name', user.toUpperCase(), '--ttl-secs', String(ttl)];
      for (const [id, role] of Object.entries(sessions)) a.push('--session', `${id}=${role}`);
      return execFileSync(BIN, a).toString().trim();
    },
    track(x) { sockets.push(x); return x; },
    async stop() {
      for (const s of sockets) { try { s.destroy?.(); s.disconnect?.(); } catch { /* already gone */ } }
      child.kill('SIGTERM');
      await new Promise((ok) => { child.once('exit', ok); setTimeout(ok, 5000); });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** HS256 JWT signed here (for expired and wrongly signed tokens). */
export function signJwt(payload, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

export async function waitFor(what, cond, timeout = 5000) {
  const end = Date.now() + timeout;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Seeded PRNG (mulberry32): failures are reproducible. */
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

/** One random insert or delete on `doc`'s `monaco` text. */
export function randomEdit(doc, r) {
  const t = doc.getText('monaco');
  if (t.length > 10 && r() < 0.3) {
    const pos = Math.floor(r() * (t.length - 1));
    t.delete(pos, 1 + Math.floor(r() * Math.min(3, t.length - pos - 1)));
  } else {
    t.insert(Math.floor(r() * (t.length + 1)), String.fromCharCode(97 + Math.floor(r() * 26)));
  }
}

export const text = (doc) => doc.getText('monaco').toString();

/**
 * A native-dialect client (namespace `/`) as the web editor implements it:
 * answers the server's sync step 1, sends its own, relays local updates.
 */
export class NativeClient {
  constructor(url, token, doc = new Y.Doc(), opts = {}) {
    this.doc = doc;
    this.awareness = new awarenessProtocol.Awareness(doc);
    this.events = [];
    this.socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth: token ? { token } : {}, ...opts });
    this.session = null;
    this.socket.on('yjs-sync-step-1', (sessionId, sv, ack) => {
      ack(Y.encodeStateAsUpdate(this.doc, new Uint8Array(sv)));
    });
    this.socket.on('yjs-update', (sessionId, update) => Y.applyUpdate(this.doc, new Uint8Array(update), this));
    this.socket.on('yjs-awareness', (sessionId, u) => awarenessProtocol.applyAwarenessUpdate(this.awareness, new Uint8Array(u), this));
    this.socket.onAny((name, ...args) => this.events.push({ name, args }));
    this.doc.on('update', (update, origin) => {
      if (origin !== this && this.session) this.socket.emit('yjs-update', this.session, update);
    });
    this.awareness.on('update', ({ added, updated, removed }, origin) => {
      if (origin === this || !this.session) return;
      const changed = added.concat(updated, removed);
      this.socket.emit('yjs-awareness', this.session, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed));
    });
  }

  connected() {
    return new Promise((ok, fail) => {
      if (this.socket.connected) return ok();
      this.socket.once('connect', ok);
      this.socket.once('connect_error', fail);
    });
  }

  async join(sessionId) {
    const reply = await this.socket.timeout(5000).emitWithAck('join-session', { sessionId });
    if (reply.ok) {
      this.session = sessionId;
      const diff = await this.socket.timeout(5000).emitWithAck('yjs-sync-step-1', sessionId, Y.encodeStateVector(this.doc));
      Y.applyUpdate(this.doc, new Uint8Array(diff), this);
    }
    return reply;
  }

  /** Sends an update by hand with an ack; returns the reply. */
  sendUpdate(sessionId, update) {
    return this.socket.timeout(5000).emitWithAck('yjs-update', sessionId, update);
  }

  close() { this.socket.disconnect(); }
}
