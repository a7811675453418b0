// `/`: sign in (as a guest with a name, or with a token), my sessions — kept
// current by the per-user events — and a form to create a session.
import { Api, ApiError, LANGUAGES, setToken, tokenUser, validToken } from '../api';
import { clear, h, timeAgo, toast } from '../dom';
import { TandemProvider } from '../provider';
import type { Role, Session } from '../types';

export function renderHome(root: HTMLElement) {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) { setToken(fromHash); history.replaceState(null, '', '/'); }
  const token = validToken();
  clear(root);
  if (!token) renderSignIn(root);
  else renderSessions(root, token);
}

/** Sign-in form; `then` runs after a successful sign-in (default: the home page). */
export function renderSignIn(root: HTMLElement, then?: () => void, note?: string) {
  clear(root);
  const api = new Api(location.origin, null);
  const name = h('input', { id: 'guest-name', placeholder: 'Your name', maxlength: 64, required: true, autocomplete: 'nickname' });
  const tokenInput = h('textarea', { id: 'token-input', placeholder: 'eyJhbGciOi…', rows: 3 });
  const done = then ?? (() => renderHome(root));
  const guest = h('form', { class: 'card', id: 'guest-form' },
    h('h2', {}, 'Join as a guest'),
    h('label', {}, h('span', {}, 'Name'), name),
    h('button', { type: 'submit' }, 'Continue'));
  guest.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await api.guest(name.value.trim() || 'Guest');
      setToken(r.token);
      done();
    } catch (err) {
      toast(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err), 'error');
    }
  });
  const withToken = h('form', { class: 'card', id: 'token-form' },
    h('h2', {}, 'Sign in with a token'),
    h('p', { class: 'muted' }, 'A token from your server admin (', h('code', {}, 'tandem token'), ').'),
    tokenInput,
    h('button', { type: 'submit', class: 'secondary' }, 'Sign in'));
  withToken.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = tokenInput.value.trim();
    const u = tokenUser(t);
    if (!u) { toast('That is not a token.', 'error'); return; }
    if (u.exp * 1000 < Date.now()) { toast('That token has expired.', 'error'); return; }
    setToken(t);
    done();
  });
  root.append(h('main', { class: 'home signin' },
    h('header', { class: 'brand' }, h('h1', {}, logo(), 'Tandem'), h('p', { class: 'muted' }, 'Real-time collaborative code editing.')),
    note ? h('p', { class: 'note' }, note) : null,
    h('div', { class: 'cards' }, guest, withToken)));
  name.focus();
}

function renderSessions(root: HTMLElement, token: string) {
  const user = tokenUser(token)!;
  const api = new Api(location.origin, token);
  const list = h('ul', { class: 'sessions', id: 'session-list' });
  const sessions = new Map<string, { session: Session; role?: Role }>();
  const draw = () => {
    clear(list);
    const items = [...sessions.values()].sort((a, b) => b.session.updatedAt.localeCompare(a.session.updatedAt));
    if (items.length === 0) list.append(h('li', { class: 'muted empty' }, 'No sessions yet. Create one, or open a link someone sent you.'));
    for (const { session, role } of items) {
      list.append(h('li', { 'data-session-id': session.id },
        h('a', { href: `/s/${session.id}` }, session.title || session.id),
        h('span', { class: 'lang' }, session.language),
        role ? h('span', { class: `role role-${role}` }, role) : null,
        h('span', { class: 'muted' }, timeAgo(session.updatedAt))));
    }
  };
  const title = h('input', { id: 'new-title', placeholder: 'Title', maxlength: 200 });
  const language = h('select', { id: 'new-language' }, ...LANGUAGES.map((l) => h('option', { value: l }, l)));
  const create = h('form', { class: 'card', id: 'new-session' },
    h('h2', {}, 'New session'),
    h('label', {}, h('span', {}, 'Title'), title),
    h('label', {}, h('span', {}, 'Language'), language),
    h('button', { type: 'submit' }, 'Create'));
  create.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const s = await api.createSession({ title: title.value.trim(), language: language.value });
      location.assign(`/s/${s.id}`);
    } catch (err) {
      toast(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err), 'error');
    }
  });
  const signOut = h('button', { class: 'secondary', id: 'sign-out', onclick: () => { setToken(null); provider.destroy(); renderHome(root); } }, 'Sign out');
  root.append(h('main', { class: 'home' },
    h('header', { class: 'brand row' }, h('h1', {}, logo(), 'Tandem'),
      h('span', { class: 'spacer' }), h('span', { id: 'whoami' }, `Signed in as ${user.name}`), signOut),
    h('div', { class: 'cards' }, create, h('section', { class: 'card wide' }, h('h2', {}, 'My sessions'), list))));

  api.sessions().then((all) => { for (const s of all) sessions.set(s.id, { session: s }); draw(); }, (err) => {
    if (err instanceof ApiError && err.status === 401) { setToken(null); renderSignIn(root, undefined, 'Your sign-in expired; sign in again.'); return; }
    toast(String(err), 'error');
  });
  // Per-user events: another tab or person changed my sessions.
  const provider = new TandemProvider({ url: location.origin, token });
  provider.on('user', (ev) => {
    switch (ev.kind) {
      case 'session:added': sessions.set(ev.session.id, { session: ev.session, role: ev.role }); break;
      case 'session:updated': sessions.set(ev.session.id, { ...sessions.get(ev.session.id), session: ev.session }); break;
      case 'session:removed': sessions.delete(ev.sessionId); break;
      case 'role:changed': { const s = sessions.get(ev.sessionId); if (s) s.role = ev.role; break; }
    }
    draw();
  });
  provider.on('error', (e) => { if (e.code === 'UNAUTHORIZED') { setToken(null); renderSignIn(root, undefined, 'Your sign-in expired; sign in again.'); } });
  draw();
}

export function logo(): SVGElement {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', 'logo');
  svg.innerHTML = "<circle cx='5.5' cy='8' r='4.5' fill='#3b82f6'/><circle cx='10.5' cy='8' r='4.5' fill='#f59e0b' fill-opacity='.8'/>";
  return svg;
}
