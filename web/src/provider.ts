// TandemProvider: the native dialect of docs/PROTOCOL.md over one Socket.IO
// connection, with no UI code (usable from Node as well as the browser).
//
// - One socket, one joined session, any number of open documents (the main
//   file, whose document id is the session id, plus `open-file`d files).
// - Every document syncs both ways by state vector: the server's
//   `yjs-sync-step-1` is answered with our diff, and ours brings what we lack.
// - Local updates are sent at once, each with an ack, and kept in `pending`
//   until the server says they are applied and durably logged; `unacked`
//   counts them. Edits made while offline or while rate limited wait there
//   and go out merged into one update when sending is possible again.
// - Reconnects (socket.io-client's backoff) re-join and resync every open
//   document; awareness of others is dropped on disconnect and re-announced
//   by the server after the join.
// - Every error code is surfaced as an `error` event with the document it
//   concerns; RATE_LIMITED pauses sending for `retryAfterMs`, FORBIDDEN on
//   an update makes the provider read-only, UNAUTHORIZED stops reconnecting.
import { io, type Socket } from 'socket.io-client';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import type {
  ChatMessage, FileEvent, FileInfo, JoinAck, Participant, Role, TandemError, UserEvent,
} from './types';

export type Status = 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** What a provider reports; listeners get the value as their only argument. */
export interface ProviderEvents {
  status: Status;
  /** The session was joined (first time or again after a reconnect). */
  joined: JoinAck;
  /** Local updates not yet acknowledged by the server changed. */
  unacked: number;
  role: Role;
  readOnly: boolean;
  participants: Participant[];
  'user-joined': Participant;
  'user-left': string;
  chat: ChatMessage;
  typing: { userId: string; userName: string; typing: boolean };
  file: FileEvent;
  user: UserEvent;
  /** A document is in sync with the server (after each (re)join). */
  synced: DocHandle;
  /** A document was closed by the server (its file was deleted). */
  closed: DocHandle;
  error: TandemError;
}

type Listener<K extends keyof ProviderEvents> = (value: ProviderEvents[K]) => void;

/** One open document: its Yjs doc, its awareness, and whether it synced. */
export class DocHandle {
  readonly doc: Y.Doc;
  readonly awareness: awarenessProtocol.Awareness;
  /** Local updates sent or waiting, not yet acknowledged. */
  pending: Pending[] = [];
  synced = false;
  private syncWaiters: Array<() => void> = [];

  constructor(readonly docId: string, readonly fileId: string) {
    this.doc = new Y.Doc();
    this.awareness = new awarenessProtocol.Awareness(this.doc);
  }

  get text(): Y.Text { return this.doc.getText('monaco'); }

  /** Resolves once the document first synced with the server. */
  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((ok) => this.syncWaiters.push(ok));
  }

  markSynced() {
    this.synced = true;
    const w = this.syncWaiters;
    this.syncWaiters = [];
    for (const ok of w) ok();
  }
}

export interface ProviderOptions {
  /** Server base URL, e.g. `location.origin`. */
  url: string;
  token: string;
  /** Socket.IO path (the server's `--socketio-path`). */
  path?: string;
  /** Extra socket.io-client options (tests pass `transports`, `forceNew` …). */
  socketOptions?: Record<string, unknown>;
}

/** The origin of updates the provider applies from the server. */
export const REMOTE = Symbol('tandem-remote');

export class TandemProvider {
  readonly socket: Socket;
  sessionId: string | null = null;
  role: Role | null = null;
  status: Status = 'connecting';
  readonly docs = new Map<string, DocHandle>();
  /** Sending is paused until this time (RATE_LIMITED). */
  private pausedUntil = 0;
  private pauseTimer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Map<string, Set<(v: unknown) => void>>();
  private everConnected = false;
  private destroyed = false;

  constructor(readonly opts: ProviderOptions) {
    this.socket = io(opts.url, {
      path: opts.path ?? '/socket.io',
      auth: { token: opts.token },
      transports: ['websocket'],
      reconnection: true,
      reconnectionDelay: 250,
      reconnectionDelayMax: 2000,
      ...(opts.socketOptions ?? {}),
    });
    const s = this.socket;
    s.on('connect', () => { void this.onConnect(); });
    s.on('disconnect', (reason) => this.onDisconnect(reason));
    s.on('connect_error', (e: Error) => {
      if (e.message === 'UNAUTHORIZED') {
        // A bad or expired token never becomes good by retrying.
        s.io.reconnection(false);
        this.setStatus('offline');
        this.emit('error', { code: 'UNAUTHORIZED', message: 'sign in again' });
        return;
      }
      this.setStatus(this.everConnected ? 'reconnecting' : 'connecting');
    });
    s.on('yjs-sync-step-1', (docId: string, sv: ArrayBuffer, ack?: (u: Uint8Array) => void) => {
      const h = this.docs.get(docId);
      const diff = h ? Y.encodeStateAsUpdate(h.doc, new Uint8Array(sv)) : new Uint8Array([0, 0]);
      if (typeof ack === 'function') ack(diff);
    });
    s.on('yjs-update', (docId: string, update: ArrayBuffer) => {
      const h = this.docs.get(docId);
      if (h) Y.applyUpdate(h.doc, new Uint8Array(update), REMOTE);
    });
    s.on('yjs-awareness', (docId: string, update: ArrayBuffer) => {
      const h = this.docs.get(docId);
      if (h) awarenessProtocol.applyAwarenessUpdate(h.awareness, new Uint8Array(update), REMOTE);
    });
    s.on('user-joined', (m: { sessionId: string; user: Participant }) => {
      if (m.sessionId === this.sessionId) this.emit('user-joined', m.user);
    });
    s.on('user-left', (m: { sessionId: string; userId: string }) => {
      if (m.sessionId === this.sessionId) this.emit('user-left', m.userId);
    });
    s.on('chat-message', (m: ChatMessage) => {
      if (m.sessionId === this.sessionId) this.emit('chat', m);
    });
    s.on('user-typing', (m: { sessionId: string; userId: string; userName: string }) => {
      if (m.sessionId === this.sessionId) this.emit('typing', { userId: m.userId, userName: m.userName, typing: true });
    });
    s.on('user-stopped-typing', (m: { sessionId: string; userId: string }) => {
      if (m.sessionId === this.sessionId) this.emit('typing', { userId: m.userId, userName: '', typing: false });
    });
    for (const kind of ['created', 'updated', 'renamed', 'moved', 'deleted'] as const) {
      s.on(`file:${kind}`, (m: Omit<FileEvent, 'kind'>) => this.onFileEvent({ ...m, kind }));
    }
    s.on('session:added', (m: { session: UserEvent & object; role: Role }) =>
      this.emit('user', { kind: 'session:added', ...(m as object) } as UserEvent));
    s.on('session:updated', (m: object) => this.emit('user', { kind: 'session:updated', ...m } as UserEvent));
    s.on('session:removed', (m: { sessionId: string }) => {
      this.emit('user', { kind: 'session:removed', sessionId: m.sessionId });
    });
    s.on('role:changed', (m: { sessionId: string; role: Role }) => {
      this.emit('user', { kind: 'role:changed', sessionId: m.sessionId, role: m.role });
      if (m.sessionId === this.sessionId) this.setRole(m.role);
    });
    s.on('error', (e: TandemError) => this.onServerError(e));
  }

  // ---- events -------------------------------------------------------------

  on<K extends keyof ProviderEvents>(event: K, f: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(f as (v: unknown) => void);
    return () => set!.delete(f as (v: unknown) => void);
  }

  private emit<K extends keyof ProviderEvents>(event: K, value: ProviderEvents[K]) {
    for (const f of [...(this.listeners.get(event) ?? [])]) {
      try { f(value); } catch (e) { console.error(`tandem: ${event} listener failed`, e); }
    }
  }

  // ---- state --------------------------------------------------------------

  /** Local updates the server has not acknowledged yet, across documents. */
  get unacked(): number {
    let n = 0;
    for (const h of this.docs.values()) for (const p of h.pending) n += p.count;
    return n;
  }

  get readOnly(): boolean { return this.role === 'viewer'; }

  get socketId(): string | undefined { return this.socket.id; }

  private setStatus(s: Status) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', s);
  }

  private setRole(role: Role) {
    const wasReadOnly = this.readOnly;
    this.role = role;
    this.emit('role', role);
    if (wasReadOnly !== this.readOnly) this.emit('readOnly', this.readOnly);
  }

  // ---- session and documents ----------------------------------------------

  /** Joins `sessionId` (once connected) and resolves with the join ack. */
  async join(sessionId: string): Promise<JoinAck> {
    this.sessionId = sessionId;
    if (!this.docs.has(sessionId)) this.track(new DocHandle(sessionId, 'main'));
    if (!this.socket.connected) {
      await new Promise<void>((ok, fail) => {
        const offOk = () => { this.socket.off('connect_error', onErr); ok(); };
        const onErr = (e: Error) => {
          if (e.message === 'UNAUTHORIZED') { this.socket.off('connect', offOk); fail(err('UNAUTHORIZED', 'sign in again')); }
        };
        this.socket.once('connect', offOk);
        this.socket.on('connect_error', onErr);
      });
      // onConnect performs the join; wait for its result.
      return this.lastJoin!;
    }
    return (this.lastJoin = this.doJoin());
  }

  private lastJoin: Promise<JoinAck> | null = null;

  private async doJoin(): Promise<JoinAck> {
    const sessionId = this.sessionId!;
    const reply = await this.socket.timeout(10000).emitWithAck('join-session', { sessionId });
    if (!reply?.ok) {
      const e = reply?.error ?? err('INTERNAL', 'join failed');
      this.emit('error', e);
      throw e;
    }
    const ack = reply as JoinAck;
    this.setRole(ack.role);
    this.emit('joined', ack);
    this.emit('participants', ack.participants);
    // Every open document: the main one was opened by the join; files again.
    const syncs: Promise<void>[] = [];
    for (const h of this.docs.values()) {
      if (h.fileId === 'main') syncs.push(this.syncDoc(h));
      else syncs.push(this.reopen(h));
    }
    await Promise.all(syncs);
    return ack;
  }

  private async reopen(h: DocHandle) {
    const reply = await this.socket.timeout(10000).emitWithAck('open-file', { sessionId: this.sessionId, fileId: h.fileId });
    if (!reply?.ok) {
      this.dropDoc(h, reply?.error ?? err('INTERNAL', 'open-file failed'));
      return;
    }
    await this.syncDoc(h);
  }

  /** Opens a file of the joined session; resolves once it is in sync. */
  async openFile(fileId: string): Promise<DocHandle> {
    const sessionId = this.sessionId;
    if (!sessionId) throw err('NOT_JOINED', 'join a session first');
    if (fileId === 'main') return this.docs.get(sessionId)!;
    for (const h of this.docs.values()) if (h.fileId === fileId) { await h.whenSynced(); return h; }
    const reply = await this.socket.timeout(10000).emitWithAck('open-file', { sessionId, fileId });
    if (!reply?.ok) {
      const e = reply?.error ?? err('INTERNAL', 'open-file failed');
      this.emit('error', e);
      throw e;
    }
    const existing = this.docs.get(reply.docId);
    if (existing) { await existing.whenSynced(); return existing; }
    const h = this.track(new DocHandle(reply.docId, fileId));
    await this.syncDoc(h);
    return h;
  }

  /** Closes a file (never the main one); its awareness leaves the others. */
  async closeFile(fileId: string): Promise<void> {
    if (fileId === 'main' || !this.sessionId) return;
    const h = [...this.docs.values()].find((d) => d.fileId === fileId);
    if (!h) return;
    this.docs.delete(h.docId);
    h.awareness.setLocalState(null);
    if (this.socket.connected) {
      await this.socket.timeout(10000).emitWithAck('close-file', { sessionId: this.sessionId, fileId }).catch(() => undefined);
    }
    h.awareness.destroy();
    h.doc.destroy();
  }

  /** The handle of an open document by file id. */
  handle(fileId: string): DocHandle | undefined {
    if (fileId === 'main') return this.sessionId ? this.docs.get(this.sessionId) : undefined;
    return [...this.docs.values()].find((d) => d.fileId === fileId);
  }

  private track(h: DocHandle): DocHandle {
    this.docs.set(h.docId, h);
    h.doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === REMOTE) return;
      h.pending.push({ update, count: 1, sent: 0 });
      this.emit('unacked', this.unacked);
      this.flush(h);
    });
    h.awareness.on('update', ({ added, updated, removed }: AwarenessChange, origin: unknown) => {
      if (origin === REMOTE) return;
      const changed = [...added, ...updated, ...removed].filter((id) => id === h.doc.clientID);
      if (changed.length === 0 || !this.socket.connected || !h.synced) return;
      this.socket.emit('yjs-awareness', h.docId, awarenessProtocol.encodeAwarenessUpdate(h.awareness, changed));
    });
    return h;
  }

  /** State vectors both ways, then our awareness, then what waited. */
  private async syncDoc(h: DocHandle) {
    const diff: ArrayBuffer = await this.socket.timeout(10000).emitWithAck('yjs-sync-step-1', h.docId, Y.encodeStateVector(h.doc));
    if (diff && (diff as ArrayBuffer).byteLength !== undefined) Y.applyUpdate(h.doc, new Uint8Array(diff), REMOTE);
    for (const p of h.pending) p.sent = 0; // acks of the old connection never come
    h.markSynced();
    if (h.awareness.getLocalState() !== null) {
      this.socket.emit('yjs-awareness', h.docId, awarenessProtocol.encodeAwarenessUpdate(h.awareness, [h.doc.clientID]));
    }
    this.flush(h);
    this.emit('synced', h);
  }

  /** Sends what waits (merged into one update) with an ack. */
  private flush(h: DocHandle) {
    if (!this.socket.connected || !h.synced || this.readOnly) return;
    const waiting = h.pending.filter((p) => p.sent === 0);
    if (waiting.length === 0) return;
    const wait = this.pausedUntil - Date.now();
    if (wait > 0) {
      if (!this.pauseTimer) {
        this.pauseTimer = setTimeout(() => {
          this.pauseTimer = null;
          for (const d of this.docs.values()) this.flush(d);
        }, wait);
      }
      return;
    }
    let entry = waiting[0];
    if (waiting.length > 1) {
      entry = { update: Y.mergeUpdates(waiting.map((p) => p.update)), count: waiting.reduce((n, p) => n + p.count, 0), sent: 0 };
      h.pending = [...h.pending.filter((p) => p.sent !== 0), entry];
    }
    const id = (entry.sent = ++sendIds);
    this.socket.timeout(15000).emitWithAck('yjs-update', h.docId, entry.update).then(
      (reply: { ok: boolean; error?: TandemError }) => {
        if (this.docs.get(h.docId) !== h || entry.sent !== id) return;
        if (reply?.ok) {
          h.pending = h.pending.filter((p) => p !== entry);
          this.emit('unacked', this.unacked);
        } else if (reply?.error) {
          this.onUpdateRefused(h, entry, reply.error);
        }
      },
      () => {
        // No ack in time: kept, sent again (now, or after the resync).
        if (entry.sent !== id) return;
        entry.sent = 0;
        this.flush(h);
      },
    );
  }

  private onUpdateRefused(h: DocHandle, entry: Pending, e: TandemError) {
    const error = { ...e, docId: e.docId ?? h.docId };
    switch (e.code) {
      case 'RATE_LIMITED':
        // Kept; sent again (with whatever came since) once the budget allows.
        entry.sent = 0;
        this.pausedUntil = Math.max(this.pausedUntil, Date.now() + (e.retryAfterMs ?? 1000));
        this.flush(h);
        break;
      case 'FORBIDDEN':
        // Never accepted: dropped, and the provider becomes read-only.
        h.pending = h.pending.filter((p) => p !== entry);
        this.setRole('viewer');
        break;
      default:
        // INVALID_UPDATE, UPDATE_TOO_LARGE, DOCUMENT_TOO_LARGE …: not applied;
        // the server will not take these bytes, so they are not sent again.
        h.pending = h.pending.filter((p) => p !== entry);
    }
    this.emit('unacked', this.unacked);
    this.emit('error', error);
  }

  private onFileEvent(ev: FileEvent) {
    if (ev.sessionId !== this.sessionId) return;
    this.emit('file', ev);
  }

  private onServerError(e: TandemError) {
    if (e.code === 'FILE_NOT_FOUND' && e.docId) {
      const h = this.docs.get(e.docId);
      if (h) this.dropDoc(h, e);
      else this.emit('error', e);
      return;
    }
    if (e.code === 'FORBIDDEN' && e.sessionId === this.sessionId && !e.docId) {
      // Access revoked: the server removed us from the session.
      this.role = null;
    }
    if (e.code === 'SESSION_NOT_FOUND' && e.sessionId === this.sessionId) this.role = null;
    this.emit('error', e);
  }

  private dropDoc(h: DocHandle, e: TandemError) {
    this.docs.delete(h.docId);
    this.emit('closed', h);
    this.emit('error', { ...e, docId: h.docId });
    h.awareness.destroy();
    h.doc.destroy();
  }

  // ---- connection ---------------------------------------------------------

  private async onConnect() {
    this.everConnected = true;
    this.setStatus('connected');
    if (!this.sessionId) return;
    try {
      this.lastJoin = this.doJoin();
      await this.lastJoin;
    } catch (e) {
      // Reported through `error`; a throttled re-join is tried again.
      const retry = (e as TandemError)?.code === 'RATE_LIMITED' ? (e as TandemError).retryAfterMs ?? 1000 : null;
      if (retry !== null) setTimeout(() => { if (this.socket.connected) void this.onConnect(); }, retry);
    }
  }

  private onDisconnect(reason: string) {
    for (const h of this.docs.values()) {
      h.synced = false;
      for (const p of h.pending) p.sent = 0;
      const others = [...h.awareness.getStates().keys()].filter((id) => id !== h.doc.clientID);
      awarenessProtocol.removeAwarenessStates(h.awareness, others, REMOTE);
    }
    if (this.destroyed || reason === 'io client disconnect') this.setStatus('offline');
    else this.setStatus('reconnecting');
  }

  // ---- chat, typing ---------------------------------------------------------

  async sendChat(content: string): Promise<ChatMessage> {
    const reply = await this.socket.timeout(10000).emitWithAck('chat-message', { sessionId: this.sessionId, content });
    if (!reply?.ok) {
      const e = reply?.error ?? err('INTERNAL', 'chat failed');
      this.emit('error', e);
      throw e;
    }
    return reply.message as ChatMessage;
  }

  typing(on: boolean) {
    if (this.sessionId && this.socket.connected) this.socket.emit(on ? 'typing' : 'stop-typing', { sessionId: this.sessionId });
  }

  async leave(): Promise<void> {
    if (!this.sessionId) return;
    const id = this.sessionId;
    this.sessionId = null;
    if (this.socket.connected) await this.socket.timeout(5000).emitWithAck('leave-session', { sessionId: id }).catch(() => undefined);
    for (const h of this.docs.values()) { h.awareness.destroy(); h.doc.destroy(); }
    this.docs.clear();
  }

  /** Closes the connection for good. */
  destroy() {
    this.destroyed = true;
    for (const h of this.docs.values()) h.awareness.setLocalState(null);
    this.socket.disconnect();
    for (const h of this.docs.values()) { h.awareness.destroy(); h.doc.destroy(); }
    this.docs.clear();
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
  }
}

/** A local update waiting for its ack: `count` local updates merged, `sent` the send's id (0: not sent). */
interface Pending { update: Uint8Array; count: number; sent: number }

let sendIds = 0;

type AwarenessChange = { added: number[]; updated: number[]; removed: number[] };

function err(code: string, message: string): TandemError { return { code, message }; }
