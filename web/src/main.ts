// The web app's routes (PROTOCOL.md "The web app's routes"): `/` signs in and
// lists my sessions, `/s/<session-id>` is the session page.
import './style.css';
import { renderHome } from './pages/home';

const app = document.getElementById('app')!;
const m = /^\/s\/([A-Za-z0-9_-]{1,64})\/?$/.exec(location.pathname);
if (m) {
  // The editor (and Monaco with it) is loaded only on the session page.
  void import('./pages/session').then(({ renderSession }) => renderSession(app, m[1]));
} else {
  if (location.pathname !== '/') history.replaceState(null, '', '/');
  renderHome(app);
}
