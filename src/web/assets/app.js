// The shell of the web interface: signing in, the navigation, the colour theme and
// the routes (in the URL fragment: #/, #/jobs, #/jobs/NAME, #/fires/ID, #/nodes).
// The pages themselves are in pages.js.

import { html, render, useState, useEffect, useCallback } from './vendor/preact-htm.js';
import { api, session } from './api.js';
import { Dashboard, Jobs, JobHistory, Fire, Nodes } from './pages.js';

const THEME = 'loom.theme';

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function currentTheme() {
  const chosen = localStorage.getItem(THEME);
  if (chosen) return chosen;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function route() {
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').map(decodeURIComponent);
  if (parts[0] === 'jobs' && parts[1]) return { page: 'history', job: parts[1] };
  if (parts[0] === 'jobs') return { page: 'jobs' };
  if (parts[0] === 'fires' && parts[1]) return { page: 'fire', id: parts[1] };
  if (parts[0] === 'nodes') return { page: 'nodes' };
  return { page: 'dashboard' };
}

function SignIn({ onSignedIn, reason }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(reason || '');
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const who = await api('/whoami', { token: token.trim() });
      session.token = token.trim();
      onSignedIn(who.role);
    } catch (err) {
      setError(err.status === 401 ? 'That token is not valid for this daemon.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <main id="main" class="signin">
      <img src="/ui/icon.svg" alt="" width="48" height="48" />
      <h1>Sign in to Loom</h1>
      <p>Paste an API token from this daemon's <code>tokens:</code> setting. It is kept only for this browser tab's session.</p>
      <form onSubmit=${submit}>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required
          value=${token} onInput=${(e) => setToken(e.target.value)} />
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy}>Sign in</button>
      </form>
    </main>`;
}

function Header({ where, role, onSignOut, theme, onTheme, open }) {
  const link = (href, label, page) => html`
    <a href=${href} aria-current=${where.page === page ? 'page' : undefined}>${label}</a>`;
  return html`
    <header class="top">
      <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
      <a class="brand" href="#/"><img src="/ui/icon.svg" alt="" width="24" height="24" /> Loom</a>
      <nav aria-label="Main">
        ${link('#/', 'Dashboard', 'dashboard')}
        ${link('#/jobs', 'Jobs', 'jobs')}
        ${link('#/nodes', 'Nodes', 'nodes')}
      </nav>
      <div class="tools">
        <span class="role" title="What this token may do">${role === 'read' ? 'read only' : role === 'admin' ? 'admin' : ''}</span>
        <button type="button" class="quiet" aria-pressed=${theme === 'dark'} onClick=${onTheme}
          title="Switch between light and dark">${theme === 'dark' ? 'Light' : 'Dark'} theme</button>
        ${!open && html`<button type="button" class="quiet" onClick=${onSignOut}>Sign out</button>`}
      </div>
    </header>`;
}

function App() {
  const [where, setWhere] = useState(route());
  const [role, setRole] = useState(null);
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState('');
  const [theme, setTheme] = useState(currentTheme());

  useEffect(() => {
    const changed = () => setWhere(route());
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);

  useEffect(() => {
    // Open daemons (no tokens: loopback only) answer without a token.
    api('/whoami').then((who) => { setOpen(!session.token); setRole(who.role); })
      .catch(() => { session.token = null; setRole('none'); });
    const unauthorized = () => {
      // Without a token this is just a daemon that wants one: no reason to give.
      if (session.token) setReason('The daemon no longer accepts this token; sign in again.');
      session.token = null;
      setRole('none');
    };
    window.addEventListener('loom:unauthorized', unauthorized);
    return () => window.removeEventListener('loom:unauthorized', unauthorized);
  }, []);

  const toggleTheme = useCallback(() => {
    const next = theme === 'dark' ? 'light' : 'dark';
    localStorage.setItem(THEME, next);
    applyTheme(next);
    setTheme(next);
  }, [theme]);

  const signOut = () => { session.token = null; setReason(''); setRole('none'); };

  // The page asks for its data while `/whoami` is on its way (it shows no action
  // until the role is known); a daemon that wants a token refuses both, and the
  // refusal leads to the sign-in page.
  if (role === 'none') return html`<${SignIn} reason=${reason} onSignedIn=${(r) => { setReason(''); setRole(r); }} />`;
  const admin = role === 'admin';
  let page;
  switch (where.page) {
    case 'jobs': page = html`<${Jobs} admin=${admin} />`; break;
    case 'history': page = html`<${JobHistory} key=${where.job} name=${where.job} admin=${admin} />`; break;
    case 'fire': page = html`<${Fire} key=${where.id} id=${where.id} admin=${admin} />`; break;
    case 'nodes': page = html`<${Nodes} />`; break;
    default: page = html`<${Dashboard} />`;
  }
  return html`
    <${Header} where=${where} role=${role} open=${open} onSignOut=${signOut} theme=${theme} onTheme=${toggleTheme} />
    <main id="main" tabindex="-1">${page}</main>`;
}

applyTheme(localStorage.getItem(THEME));
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
