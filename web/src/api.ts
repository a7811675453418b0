// The HTTP API of docs/PROTOCOL.md and the signed-in user's token
// (`localStorage["tandem.token"]`).
import type { FileInfo, Role, Session, TandemError, User } from './types';

const TOKEN_KEY = 'tandem.token';

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) { super(message); }
}

export function getToken(): string | null {
  try { return localStorage.getItem(TOKEN_KEY); } catch { return null; }
}
export function setToken(t: string | null) {
  if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
}

/** The user a token names (read, not verified: the server verifies). */
export function tokenUser(token: string | null): (User & { exp: number }) | null {
  if (!token) return null;
  try {
    const part = token.split('.')[1];
    const json = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))));
    if (typeof json.sub !== 'string') return null;
    return { id: json.sub, name: String(json.name ?? json.sub), exp: Number(json.exp ?? 0) };
  } catch {
    return null;
  }
}

/** A token that is present and not expired. */
export function validToken(): string | null {
  const t = getToken();
  const u = tokenUser(t);
  return u && u.exp * 1000 > Date.now() + 5000 ? t : null;
}

export class Api {
  /** Sent as `X-Socket-Id` so file events name us as their origin. */
  socketId: string | undefined;
  constructor(readonly base: string, private token: string | null) {}

  private async call<T>(method: string, path: string, body?: unknown, raw = false): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (this.socketId) headers['x-socket-id'] = this.socketId;
    let payload: BodyInit | undefined;
    if (typeof body === 'string') { payload = body; headers['content-type'] = 'text/plain; charset=utf-8'; }
    else if (body !== undefined) { payload = JSON.stringify(body); headers['content-type'] = 'application/json'; }
    const res = await fetch(`${this.base}${path}`, { method, headers, body: payload });
    if (!res.ok) {
      let e: TandemError = { code: 'INTERNAL', message: res.statusText };
      try { e = (await res.json()).error ?? e; } catch { /* not JSON */ }
      throw new ApiError(res.status, e.code, e.message);
    }
    if (raw) return res as unknown as T;
    if (res.status === 204) return undefined as T;
    const type = res.headers.get('content-type') ?? '';
    return (type.includes('json') ? res.json() : res.text()) as Promise<T>;
  }

  guest(name: string) { return this.call<{ token: string; user: User }>('POST', '/api/auth/guest', { name }); }
  sessions() { return this.call<Session[]>('GET', '/api/sessions'); }
  session(id: string) { return this.call<Session>('GET', `/api/sessions/${encodeURIComponent(id)}`); }
  createSession(b: { title?: string; language?: string; public?: boolean; publicRole?: Role }) {
    return this.call<Session>('POST', '/api/sessions', b);
  }
  updateSession(id: string, b: { title?: string; language?: string; public?: boolean; publicRole?: Role }) {
    return this.call<Session>('PATCH', `/api/sessions/${encodeURIComponent(id)}`, b);
  }
  setRole(id: string, userId: string, role: Role | null) {
    const p = `/api/sessions/${encodeURIComponent(id)}/participants/${encodeURIComponent(userId)}`;
    return role ? this.call<unknown>('PUT', p, { role }) : this.call<unknown>('DELETE', p);
  }
  files(id: string) { return this.call<FileInfo[]>('GET', `/api/sessions/${encodeURIComponent(id)}/files`); }
  createFile(id: string, path: string, content?: string) {
    return this.call<FileInfo>('POST', `/api/sessions/${encodeURIComponent(id)}/files`, { path, content });
  }
  moveFile(id: string, fileId: string, path: string) {
    return this.call<FileInfo>('PATCH', `/api/sessions/${encodeURIComponent(id)}/files/${encodeURIComponent(fileId)}`, { path });
  }
  deleteFile(id: string, fileId: string) {
    return this.call<unknown>('DELETE', `/api/sessions/${encodeURIComponent(id)}/files/${encodeURIComponent(fileId)}`);
  }
  invite(id: string, role: 'editor' | 'viewer', expiresInSecs?: number) {
    return this.call<{ token: string; url: string; expiresAt: string }>('POST', `/api/sessions/${encodeURIComponent(id)}/invites`, { role, expiresInSecs });
  }
  acceptInvite(token: string) { return this.call<Session>('POST', '/api/invites/accept', { token }); }
  async archive(id: string): Promise<Blob> {
    const res = await this.call<Response>('GET', `/api/sessions/${encodeURIComponent(id)}/archive`, undefined, true);
    return res.blob();
  }
}

export const LANGUAGES = [
  'plaintext', 'rust', 'typescript', 'javascript', 'python', 'go', 'java', 'c', 'cpp', 'csharp',
  'ruby', 'markdown', 'json', 'html', 'css', 'shell', 'sql', 'yaml',
];
