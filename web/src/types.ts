// The wire types of docs/PROTOCOL.md, as the server sends them.

export type Role = 'owner' | 'editor' | 'viewer';

export type ErrorCode =
  | 'UNAUTHORIZED' | 'FORBIDDEN' | 'SESSION_NOT_FOUND' | 'INVALID_SESSION_ID' | 'NOT_JOINED'
  | 'INVALID_PAYLOAD' | 'INVALID_UPDATE' | 'UPDATE_TOO_LARGE' | 'DOCUMENT_TOO_LARGE' | 'RATE_LIMITED'
  | 'MESSAGE_EMPTY' | 'MESSAGE_TOO_LONG' | 'FILE_NOT_FOUND' | 'PATH_EXISTS' | 'INVALID_PATH'
  | 'TOO_MANY_FILES' | 'INTERNAL';

export interface TandemError {
  code: ErrorCode | string;
  message: string;
  sessionId?: string;
  docId?: string;
  retryAfterMs?: number;
}

export interface Participant { id: string; name: string; role: Role; color: string }

export interface ChatMessage {
  id: number;
  sessionId: string;
  userId: string;
  userName: string;
  content: string;
  createdAt: string;
}

export interface FileInfo {
  id: string;
  path: string;
  language: string;
  size: number;
  createdAt: string;
  updatedAt: string;
  updatedBy: string | null;
}

export interface Actor { userId: string; userName: string; role: Role }

export interface Session {
  id: string;
  title: string;
  language: string;
  ownerId: string;
  public: boolean;
  publicRole: Role;
  createdAt: string;
  updatedAt: string;
  participants?: Participant[];
}

export interface User { id: string; name: string }

/** `file:*` events: one shape with the fields each kind carries. */
export interface FileEvent {
  kind: 'created' | 'updated' | 'renamed' | 'moved' | 'deleted';
  sessionId: string;
  file?: FileInfo;
  fileId?: string;
  path?: string;
  oldPath?: string;
  actor: Actor;
  timestamp: string;
  originSocketId: string | null;
}

/** Per-user events (`session:added` …) in one shape. */
export type UserEvent =
  | { kind: 'session:added'; session: Session; role: Role }
  | { kind: 'session:updated'; session: Session }
  | { kind: 'session:removed'; sessionId: string }
  | { kind: 'role:changed'; sessionId: string; role: Role };

export interface JoinAck {
  ok: true;
  sessionId: string;
  role: Role;
  participants: Participant[];
  chat: ChatMessage[];
  files: FileInfo[];
}
