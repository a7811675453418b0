// `/s/<session-id>`: the session page — file tree, tabs, Monaco bound to each
// open file's Yjs document, participants (role, online, file, follow mode),
// chat with "X is typing…", connection status with unsynced edits, sharing
// and invites, the workspace download, and a theme that follows the OS.
import { Api, ApiError, setToken, tokenUser, validToken } from '../api';
import { installUndoKeys, MonacoBinding, type AwarenessUser } from '../binding';
import { ask, clear, h, timeAgo, toast } from '../dom';
import { monaco, monacoLanguage } from '../monaco';
import { DocHandle, TandemProvider, type Status } from '../provider';
import { colorFor } from '../textops';
import type { ChatMessage, FileInfo, Participant, Role, Session, TandemError } from '../types';
import { logo, renderSignIn } from './home';

/** Reads `#token=` / `#invite=` and removes the fragment from the address bar. */
function takeFragment(): { token?: string; invite?: string } {
  const p = new URLSearchParams(location.hash.slice(1));
  const out = { token: p.get('token') ?? undefined, invite: p.get('invite') ?? undefined };
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return out;
}

let pendingInvite: string | undefined;

export async function renderSession(root: HTMLElement, sessionId: string) {
  const frag = takeFragment();
  if (frag.token) setToken(frag.token);
  if (frag.invite) pendingInvite = frag.invite;
  const token = validToken();
  if (!token) {
    renderSignIn(root, () => void renderSession(root, sessionId),
      pendingInvite ? 'You were invited to a session: sign in to join it.' : 'Sign in to open this session.');
    return;
  }
  const api = new Api(location.origin, token);
  if (pendingInvite) {
    const invite = pendingInvite;
    pendingInvite = undefined;
    try {
      await api.acceptInvite(invite);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) toast('That invite link is invalid or has expired.', 'error');
      else if (e instanceof ApiError && e.status === 404) return renderGone(root, 'This session no longer exists.');
      else toast(String(e), 'error');
    }
  }
  let session: Session;
  try {
    session = await api.session(sessionId);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      setToken(null);
      return renderSignIn(root, () => void renderSession(root, sessionId), 'Your sign-in expired; sign in again.');
    }
    if (e instanceof ApiError && e.code === 'SESSION_NOT_FOUND') return renderGone(root, 'There is no such session (it may have been deleted).');
    if (e instanceof ApiError && e.code === 'FORBIDDEN') return renderGone(root, 'You have no access to this session. Ask its owner for an invite link.');
    return renderGone(root, `The session could not be opened: ${e instanceof Error ? e.message : String(e)}`);
  }
  new SessionPage(root, api, token, session);
}

function renderGone(root: HTMLElement, text: string) {
  clear(root);
  root.append(h('main', { class: 'home' },
    h('header', { class: 'brand' }, h('h1', {}, logo(), 'Tandem')),
    h('p', { class: 'note', id: 'gone' }, text),
    h('p', {}, h('a', { href: '/' }, 'Back to my sessions'))));
}

interface Peer { id: string; name: string; color: string; role?: Role; online: boolean; file?: string }

class SessionPage {
  private provider: TandemProvider;
  private me: { id: string; name: string };
  private myColor: string;
  private role: Role | null = null;
  private files = new Map<string, FileInfo>();
  private tabs: string[] = [];
  private active: string | null = null;
  private models = new Map<string, monaco.editor.ITextModel>();
  private bindings = new Map<string, MonacoBinding>();
  private editor: monaco.editor.IStandaloneCodeEditor;
  private participants = new Map<string, Peer>();
  private online = new Set<string>();
  private typingUsers = new Map<string, { name: string; timer: ReturnType<typeof setTimeout> }>();
  private following: string | null = null;
  private followTimer: ReturnType<typeof setInterval> | null = null;
  private typingSent = 0;
  private typingStop: ReturnType<typeof setTimeout> | null = null;
  private chatIds = new Set<number>();

  // Elements.
  private treeEl = h('ul', { class: 'tree', id: 'tree' });
  private tabsEl = h('div', { class: 'tabs', id: 'tabs', role: 'tablist' });
  private editorEl = h('div', { class: 'editor', id: 'editor' });
  private peopleEl = h('ul', { class: 'people', id: 'participants' });
  private chatLog = h('ol', { class: 'chat-log', id: 'chat-log' });
  private chatInput = h('input', { id: 'chat-input', placeholder: 'Message', maxlength: 1000, autocomplete: 'off' });
  private typingEl = h('div', { class: 'typing', id: 'typing', 'aria-live': 'polite' });
  private statusEl = h('span', { class: 'status', id: 'status' });
  private noteEl = h('div', { class: 'readonly-note', id: 'readonly-note', hidden: true }, 'You are a viewer: you can read along, but not edit.');
  private followEl = h('div', { class: 'follow-banner', id: 'follow-banner', hidden: true });
  private titleEl = h('span', { class: 'title', id: 'session-title' });

  constructor(private root: HTMLElement, private api: Api, token: string, private session: Session) {
    const u = tokenUser(token)!;
    this.me = { id: u.id, name: u.name };
    this.myColor = session.participants?.find((p) => p.id === u.id)?.color ?? colorFor(u.id);
    for (const p of session.participants ?? []) this.participants.set(p.id, { ...p, online: false });
    this.render();
    this.editor = monaco.editor.create(this.editorEl, {
      automaticLayout: true,
      theme: darkQuery.matches ? 'vs-dark' : 'vs',
      minimap: { enabled: false },
      fontSize: 14,
      tabSize: 4,
      scrollBeyondLastLine: false,
      readOnly: true,
      model: null,
    });
    darkQuery.addEventListener('change', () => monaco.editor.setTheme(darkQuery.matches ? 'vs-dark' : 'vs'));
    installUndoKeys(monaco, this.editor, () => (this.active ? this.bindings.get(this.active) : undefined));
    // Typing or clicking in the editor ends follow mode.
    this.editor.onKeyDown(() => this.stopFollowing());
    this.editor.onMouseDown(() => this.stopFollowing());

    this.provider = new TandemProvider({ url: location.origin, token });
    // For browser tests and benchmarks (read-only use): the page's parts.
    (window as unknown as { __tandem: unknown }).__tandem = this;
    this.wire();
    void this.start();
  }

  private get sid() { return this.session.id; }

  private render() {
    clear(this.root);
    const chatForm = h('form', { class: 'chat-form', id: 'chat-form' }, this.chatInput, h('button', { type: 'submit' }, 'Send'));
    chatForm.addEventListener('submit', (e) => { e.preventDefault(); void this.sendChat(); });
    this.chatInput.addEventListener('input', () => this.onChatTyping());
    this.root.append(h('div', { class: 'session' },
      h('header', { class: 'topbar' },
        h('a', { href: '/', class: 'home-link', title: 'My sessions' }, logo()),
        this.titleEl,
        h('span', { class: 'spacer' }),
        this.statusEl,
        h('button', { class: 'secondary', id: 'download', onclick: () => void this.download() }, 'Download'),
        h('button', { id: 'share', onclick: () => void this.share() }, 'Share')),
      h('aside', { class: 'sidebar left' },
        h('div', { class: 'panel-head' }, h('h2', {}, 'Files'),
          h('button', { class: 'icon', id: 'new-file', title: 'New file', onclick: () => void this.newFile() }, '+')),
        this.treeEl),
      h('section', { class: 'center' }, this.tabsEl, this.noteEl, this.followEl, this.editorEl),
      h('aside', { class: 'sidebar right' },
        h('div', { class: 'panel-head' }, h('h2', {}, 'People')),
        this.peopleEl,
        h('div', { class: 'panel-head' }, h('h2', {}, 'Chat')),
        this.chatLog, this.typingEl, chatForm)));
    this.drawTitle();
    this.drawStatus();
  }

  private drawTitle() {
    this.titleEl.textContent = this.session.title || this.session.id;
    document.title = `${this.session.title || this.session.id} · Tandem`;
  }

  // ---- provider -------------------------------------------------------------

  private wire() {
    const p = this.provider;
    p.on('status', () => this.drawStatus());
    p.on('unacked', () => this.drawStatus());
    p.on('joined', (ack) => {
      this.api.socketId = p.socketId;
      this.online = new Set(ack.participants.map((x) => x.id));
      for (const x of ack.participants) this.upsertPeer(x, true);
      for (const f of ack.files) this.files.set(f.id, f);
      for (const m of ack.chat) this.addChat(m);
      this.drawTree();
      this.drawPeople();
    });
    p.on('role', (role) => this.setRole(role));
    p.on('user-joined', (x) => { this.online.add(x.id); this.upsertPeer(x, true); this.drawPeople(); });
    p.on('user-left', (id) => { this.online.delete(id); const x = this.participants.get(id); if (x) x.online = false; this.drawPeople(); });
    p.on('chat', (m) => this.addChat(m));
    p.on('typing', (t) => this.onTyping(t.userId, t.userName, t.typing));
    p.on('file', (ev) => {
      if (ev.kind === 'deleted') {
        this.files.delete(ev.fileId!);
        this.closeTab(ev.fileId!);
      } else if (ev.file) {
        const before = this.files.get(ev.file.id);
        this.files.set(ev.file.id, ev.file);
        if (before && before.language !== ev.file.language) {
          const model = this.models.get(ev.file.id);
          if (model) monaco.editor.setModelLanguage(model, monacoLanguage(ev.file.language));
        }
      }
      if (ev.originSocketId !== p.socketId && ev.kind !== 'updated') {
        toast(`${ev.actor.userName} ${ev.kind} ${ev.file?.path ?? ev.path}`);
      }
      this.drawTree();
      this.drawTabs();
    });
    p.on('user', (ev) => {
      if (ev.kind === 'session:updated' && ev.session.id === this.sid) {
        this.session = { ...this.session, ...ev.session };
        this.drawTitle();
        const main = this.models.get('main');
        if (main) monaco.editor.setModelLanguage(main, monacoLanguage(this.session.language));
      }
      if (ev.kind === 'session:removed' && ev.sessionId === this.sid) this.lost('You no longer have access to this session.');
    });
    p.on('closed', (h) => this.closeTab(h.fileId));
    p.on('error', (e) => this.onError(e));
  }

  private async start() {
    try {
      await this.provider.join(this.sid);
    } catch (e) {
      return this.onError(e as TandemError);
    }
    const main = this.provider.handle('main')!;
    main.awareness.setLocalState({ user: this.awarenessUser(), file: 'main' });
    main.awareness.on('change', () => { this.drawPeople(); this.followTick(); });
    await this.openTab('main');
  }

  private awarenessUser(): AwarenessUser { return { id: this.me.id, name: this.me.name, color: this.myColor }; }

  private setRole(role: Role) {
    this.role = role;
    const ro = role === 'viewer';
    this.editor.updateOptions({ readOnly: ro, readOnlyMessage: { value: 'You are a viewer: this session is read-only for you.' } });
    this.noteEl.hidden = !ro;
    (document.getElementById('new-file') as HTMLButtonElement | null)?.toggleAttribute('disabled', ro);
    this.drawTree();
  }

  private onError(e: TandemError) {
    switch (e.code) {
      case 'UNAUTHORIZED':
        this.provider.destroy();
        setToken(null);
        renderSignIn(this.root, () => void renderSession(this.root, this.sid), 'Your sign-in expired; sign in again.');
        return;
      case 'SESSION_NOT_FOUND':
        return this.lost('This session was deleted.');
      case 'FORBIDDEN':
        if (e.docId || this.provider.role === 'viewer') { this.setRole('viewer'); toast('You can only view this session.', 'error'); return; }
        return this.lost('You no longer have access to this session.');
      case 'FILE_NOT_FOUND':
        toast('That file was deleted.', 'error');
        return;
      case 'RATE_LIMITED':
        toast(`Slow down: edits resume in ${Math.ceil((e.retryAfterMs ?? 1000) / 1000)} s.`, 'error');
        return;
      default:
        toast(`${e.code}: ${e.message}`, 'error');
    }
  }

  private lost(text: string) {
    this.provider.destroy();
    this.editor.dispose();
    renderGone(this.root, text);
  }

  private drawStatus() {
    const p = this.provider;
    const status: Status = p?.status ?? 'connecting';
    const n = p?.unacked ?? 0;
    const label = {
      connecting: 'Connecting…',
      connected: n > 0 ? `Connected · saving ${n}` : 'Connected',
      reconnecting: `Reconnecting…${n ? ` · ${n} unsynced edit${n === 1 ? '' : 's'}` : ''}`,
      offline: `Offline${n ? ` · ${n} unsynced edit${n === 1 ? '' : 's'}` : ''}`,
    }[status];
    this.statusEl.textContent = label;
    this.statusEl.dataset.status = status;
    this.statusEl.dataset.unacked = String(n);
  }

  // ---- files, tabs, editor --------------------------------------------------

  private async openTab(fileId: string) {
    if (!this.tabs.includes(fileId)) this.tabs.push(fileId);
    this.active = fileId;
    this.drawTabs();
    this.drawTree();
    let handle: DocHandle;
    try {
      handle = await this.provider.openFile(fileId);
    } catch {
      this.closeTab(fileId);
      return;
    }
    await handle.whenSynced();
    if (this.active !== fileId) return;
    let model = this.models.get(fileId);
    if (!model) {
      const lang = fileId === 'main' ? this.session.language : this.files.get(fileId)?.language;
      model = monaco.editor.createModel(handle.text.toString(), monacoLanguage(lang));
      this.models.set(fileId, model);
    }
    this.bindings.get(this.previousActive ?? '')?.setActive(false);
    this.editor.setModel(model);
    let binding = this.bindings.get(fileId);
    if (!binding) {
      // Bound only now, after the first sync: the model takes the synced text.
      handle.awareness.setLocalState({ user: this.awarenessUser() });
      binding = new MonacoBinding(monaco, handle.text, model, this.editor, handle.awareness);
      this.bindings.set(fileId, binding);
    }
    binding.setActive(true);
    this.previousActive = fileId;
    this.announceFile(fileId);
    this.drawTabs();
  }

  private previousActive: string | null = null;

  private announceFile(fileId: string) {
    this.provider.handle('main')?.awareness.setLocalStateField('file', fileId);
  }

  private closeTab(fileId: string) {
    const i = this.tabs.indexOf(fileId);
    if (i >= 0) this.tabs.splice(i, 1);
    this.bindings.get(fileId)?.destroy();
    this.bindings.delete(fileId);
    const model = this.models.get(fileId);
    this.models.delete(fileId);
    if (this.active === fileId) {
      this.active = null;
      this.previousActive = null;
      this.editor.setModel(null);
      const next = this.tabs[Math.max(0, i - 1)] ?? (fileId === 'main' ? null : 'main');
      if (next) void this.openTab(next);
    }
    model?.dispose();
    void this.provider.closeFile(fileId);
    this.drawTabs();
    this.drawTree();
  }

  private fileName(fileId: string): string {
    const f = this.files.get(fileId);
    return f ? f.path : fileId === 'main' ? 'main' : fileId;
  }

  private drawTabs() {
    clear(this.tabsEl);
    for (const id of this.tabs) {
      const f = this.files.get(id);
      const name = (f?.path ?? this.fileName(id)).split('/').pop()!;
      const tab = h('div', { class: `tab${id === this.active ? ' active' : ''}`, role: 'tab', 'data-file-id': id, title: f?.path ?? '' },
        h('span', { class: 'tab-name', onclick: () => void this.openTab(id) }, name),
        id === 'main' ? null : h('button', { class: 'icon close', title: 'Close', onclick: () => this.closeTab(id) }, '×'));
      this.tabsEl.append(tab);
    }
  }

  private drawTree() {
    clear(this.treeEl);
    const files = [...this.files.values()].sort((a, b) => a.path.localeCompare(b.path));
    const ro = this.role === 'viewer';
    const shownDirs = new Set<string>();
    for (const f of files) {
      const parts = f.path.split('/');
      for (let d = 1; d < parts.length; d++) {
        const dir = parts.slice(0, d).join('/');
        if (shownDirs.has(dir)) continue;
        shownDirs.add(dir);
        this.treeEl.append(h('li', { class: 'dir', style: `padding-left:${(d - 1) * 12 + 8}px` }, `${parts[d - 1]}/`));
      }
      const viewers = [...this.peers()].filter((x) => x.file === f.id && x.id !== this.me.id);
      this.treeEl.append(h('li', {
        class: `file${f.id === this.active ? ' active' : ''}`, 'data-file-id': f.id, 'data-path': f.path,
        style: `padding-left:${(parts.length - 1) * 12 + 8}px`,
      },
      h('span', { class: 'name', onclick: () => void this.openTab(f.id) }, parts[parts.length - 1]),
      ...viewers.map((x) => h('span', { class: 'dot', title: x.name, style: `background:${x.color}` })),
      ro ? null : h('button', { class: 'icon', title: 'Rename or move', 'data-action': 'rename', onclick: () => void this.renameFile(f) }, '✎'),
      ro || f.id === 'main' ? null : h('button', { class: 'icon', title: 'Delete', 'data-action': 'delete', onclick: () => void this.deleteFile(f) }, '✕')));
    }
  }

  private async newFile() {
    const dir = this.active && this.files.get(this.active)?.path.includes('/') ? this.files.get(this.active)!.path.replace(/[^/]*$/, '') : '';
    const r = await ask('New file', [{ name: 'path', label: 'Path', value: dir }], 'Create');
    if (!r?.path.trim()) return;
    try {
      const f = await this.api.createFile(this.sid, r.path.trim());
      this.files.set(f.id, f);
      this.drawTree();
      await this.openTab(f.id);
    } catch (e) { this.apiError(e); }
  }

  private async renameFile(f: FileInfo) {
    const r = await ask(`Rename or move ${f.path}`, [{ name: 'path', label: 'New path', value: f.path }], 'Rename');
    if (!r || r.path.trim() === f.path) return;
    try {
      const nf = await this.api.moveFile(this.sid, f.id, r.path.trim());
      this.files.set(nf.id, nf);
      this.drawTree();
      this.drawTabs();
    } catch (e) { this.apiError(e); }
  }

  private async deleteFile(f: FileInfo) {
    const r = await ask(`Delete ${f.path}?`, [], 'Delete');
    if (!r) return;
    try {
      await this.api.deleteFile(this.sid, f.id);
      this.files.delete(f.id);
      this.closeTab(f.id);
    } catch (e) { this.apiError(e); }
  }

  private apiError(e: unknown) {
    if (e instanceof ApiError) toast(`${e.code}: ${e.message}`, 'error');
    else toast(String(e), 'error');
  }

  private async download() {
    try {
      const blob = await this.api.archive(this.sid);
      const a = h('a', { href: URL.createObjectURL(blob), download: `${this.session.title || this.sid}.zip` });
      document.body.append(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    } catch (e) { this.apiError(e); }
  }

  // ---- people, follow mode -------------------------------------------------

  private upsertPeer(p: Participant, online: boolean) {
    const prev = this.participants.get(p.id);
    this.participants.set(p.id, { ...prev, ...p, online: online || (prev?.online ?? false) });
  }

  /** Everyone known: participants with roles, plus who the awareness shows. */
  private *peers(): Generator<Peer> {
    const files = new Map<string, string>();
    const main = this.provider?.handle('main');
    const seen = new Set<string>();
    if (main) {
      for (const [, st] of main.awareness.getStates()) {
        const u = st.user as AwarenessUser | undefined;
        if (u?.id && typeof st.file === 'string') files.set(u.id, st.file);
        if (u?.id && !this.participants.has(u.id)) {
          seen.add(u.id);
          yield { id: u.id, name: u.name, color: u.color, online: true, file: st.file as string };
        }
      }
    }
    for (const p of this.participants.values()) {
      if (seen.has(p.id)) continue;
      yield { ...p, online: this.online.has(p.id) || p.id === this.me.id, file: p.id === this.me.id ? this.active ?? undefined : files.get(p.id) };
    }
  }

  private drawPeople() {
    clear(this.peopleEl);
    const all = [...this.peers()].sort((a, b) => Number(b.online) - Number(a.online) || a.name.localeCompare(b.name));
    for (const p of all) {
      const me = p.id === this.me.id;
      const where = p.online && p.file ? this.fileName(p.file) : '';
      this.peopleEl.append(h('li', {
        class: `${p.online ? 'online' : 'offline'}${this.following === p.id ? ' following' : ''}`,
        'data-user-id': p.id,
        title: me ? 'You' : p.online ? `Follow ${p.name}` : `${p.name} is offline`,
        onclick: () => { if (!me && p.online) this.follow(p.id); },
      },
      h('span', { class: 'avatar', style: `background:${p.color}` }, (p.name[0] ?? '?').toUpperCase()),
      h('span', { class: 'who' }, h('span', { class: 'name' }, `${p.name}${me ? ' (you)' : ''}`),
        h('span', { class: 'muted' }, [p.role, p.online ? (where ? `in ${where}` : 'online') : 'offline'].filter(Boolean).join(' · '))),
      ));
    }
    this.drawTree();
  }

  private follow(userId: string) {
    this.following = userId;
    const name = this.participants.get(userId)?.name ?? [...this.peers()].find((x) => x.id === userId)?.name ?? userId;
    clear(this.followEl);
    this.followEl.append(`Following ${name} — type or click in the editor to stop. `,
      h('button', { class: 'secondary', onclick: () => this.stopFollowing() }, 'Stop'));
    this.followEl.hidden = false;
    if (!this.followTimer) this.followTimer = setInterval(() => this.followTick(), 250);
    this.followTick();
    this.drawPeople();
  }

  private stopFollowing() {
    if (!this.following) return;
    this.following = null;
    this.followEl.hidden = true;
    if (this.followTimer) clearInterval(this.followTimer);
    this.followTimer = null;
    this.drawPeople();
  }

  /** Follow mode: open the leader's file, then keep their caret in view. */
  private followTick() {
    const leader = this.following;
    if (!leader) return;
    const peer = [...this.peers()].find((x) => x.id === leader);
    if (!peer?.online) return;
    if (peer.file && peer.file !== this.active && (peer.file === 'main' || this.files.has(peer.file))) {
      void this.openTab(peer.file);
      return;
    }
    const handle = this.active ? this.provider.handle(this.active) : undefined;
    const binding = this.active ? this.bindings.get(this.active) : undefined;
    if (!handle || !binding) return;
    for (const [clientId, st] of handle.awareness.getStates()) {
      if ((st.user as AwarenessUser | undefined)?.id !== leader || clientId === handle.awareness.clientID) continue;
      const head = binding.remoteHead(clientId);
      if (head === null) continue;
      const pos = binding.model.getPositionAt(head);
      this.editor.revealPositionInCenterIfOutsideViewport(pos);
      return;
    }
  }

  // ---- chat ----------------------------------------------------------------

  private addChat(m: ChatMessage) {
    if (this.chatIds.has(m.id)) return;
    this.chatIds.add(m.id);
    const color = this.participants.get(m.userId)?.color ?? colorFor(m.userId);
    this.chatLog.append(h('li', { 'data-message-id': m.id },
      h('span', { class: 'author', style: `color:${color}` }, m.userName),
      h('time', { datetime: m.createdAt, class: 'muted' }, timeAgo(m.createdAt)),
      h('div', { class: 'content' }, m.content)));
    this.chatLog.scrollTop = this.chatLog.scrollHeight;
    this.onTyping(m.userId, m.userName, false);
  }

  private async sendChat() {
    const content = this.chatInput.value.trim();
    if (!content) return;
    try {
      const m = await this.provider.sendChat(content);
      this.chatInput.value = '';
      this.addChat(m);
      this.provider.typing(false);
      this.typingSent = 0;
    } catch { /* reported through the provider's error event */ }
  }

  private onChatTyping() {
    const now = Date.now();
    if (now - this.typingSent > 2000) { this.provider.typing(true); this.typingSent = now; }
    if (this.typingStop) clearTimeout(this.typingStop);
    this.typingStop = setTimeout(() => { this.provider.typing(false); this.typingSent = 0; }, 3000);
  }

  private onTyping(userId: string, name: string, on: boolean) {
    if (userId === this.me.id) return;
    const prev = this.typingUsers.get(userId);
    if (prev) clearTimeout(prev.timer);
    if (on) {
      this.typingUsers.set(userId, { name: name || prev?.name || userId, timer: setTimeout(() => this.onTyping(userId, '', false), 6000) });
    } else {
      this.typingUsers.delete(userId);
    }
    const names = [...this.typingUsers.values()].map((x) => x.name);
    this.typingEl.textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
  }

  // ---- sharing -------------------------------------------------------------

  private async share() {
    const link = `${location.origin}/s/${this.sid}`;
    const isOwner = this.role === 'owner';
    const body = h('div', { class: 'share' });
    const close = () => overlay.remove();
    const overlay = h('div', { class: 'overlay', onclick: (e: Event) => { if (e.target === overlay) close(); } },
      h('div', { class: 'modal wide', role: 'dialog', 'aria-label': 'Share' },
        h('h2', {}, 'Share'), body,
        h('div', { class: 'actions' }, h('button', { class: 'secondary', onclick: close }, 'Close'))));
    body.append(h('label', {}, h('span', {}, 'Link'),
      h('input', { readonly: true, value: link, id: 'share-link' }),
      h('button', { onclick: () => void copy(link) }, 'Copy')));
    if (isOwner) {
      const inviteOut = h('div', { id: 'invite-out' });
      const invite = async (role: 'editor' | 'viewer') => {
        try {
          const r = await this.api.invite(this.sid, role);
          clear(inviteOut);
          inviteOut.append(h('label', {}, h('span', {}, `${role} invite (until ${new Date(r.expiresAt).toLocaleDateString()})`),
            h('input', { readonly: true, value: r.url, id: 'invite-url', 'data-role': role }),
            h('button', { onclick: () => void copy(r.url) }, 'Copy')));
        } catch (e) { this.apiError(e); }
      };
      body.append(h('h3', {}, 'Invite links'),
        h('div', { class: 'row' },
          h('button', { id: 'invite-editor', onclick: () => void invite('editor') }, 'Editor invite'),
          h('button', { id: 'invite-viewer', class: 'secondary', onclick: () => void invite('viewer') }, 'Viewer invite')),
        inviteOut);
      const pub = h('input', { type: 'checkbox', id: 'share-public', checked: this.session.public });
      const pubRole = h('select', { id: 'share-public-role' }, ...(['viewer', 'editor'] as const).map((r) => h('option', { value: r, selected: this.session.publicRole === r }, r)));
      const save = async () => {
        try {
          this.session = await this.api.updateSession(this.sid, { public: pub.checked, publicRole: pubRole.value as Role });
          toast('Visibility saved.');
        } catch (e) { this.apiError(e); }
      };
      pub.addEventListener('change', save);
      pubRole.addEventListener('change', save);
      body.append(h('h3', {}, 'Visibility'),
        h('label', { class: 'row' }, pub, h('span', {}, 'Anyone with the link can open it, as'), pubRole));
      const people = h('ul', { class: 'roles' });
      try {
        const s = await this.api.session(this.sid);
        for (const p of s.participants ?? []) {
          if (p.id === this.me.id) continue;
          const sel = h('select', { 'data-user-id': p.id }, ...['owner', 'editor', 'viewer', 'remove'].map((r) => h('option', { value: r, selected: r === p.role }, r)));
          sel.addEventListener('change', async () => {
            try {
              await this.api.setRole(this.sid, p.id, sel.value === 'remove' ? null : (sel.value as Role));
              toast(`${p.name}: ${sel.value}`);
            } catch (e) { this.apiError(e); }
          });
          people.append(h('li', {}, h('span', {}, p.name), sel));
        }
      } catch (e) { this.apiError(e); }
      body.append(h('h3', {}, 'People'), people);
    }
    document.body.append(overlay);
  }
}

const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');

async function copy(text: string) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied.');
  } catch {
    toast('Copy it from the field.');
  }
}

