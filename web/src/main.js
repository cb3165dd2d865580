// The console's shell: hash routes (#/search, #/people, #/people/ID, #/pipeline), signing in when
// the server needs a token, and one page at a time in <main>.

import './style.css';
import { api } from './api.js';
import { h, notify } from './dom.js';
import { peoplePage, personPage } from './people.js';
import { pipelinePage } from './pipeline.js';
import { searchPage } from './search.js';

const app = document.getElementById('app');
const signOut = document.getElementById('sign-out');
let leave = null;
let routes = 0;

async function route() {
  if (leave) leave();
  leave = null;
  // A newer navigation while this one waits for the server wins.
  const current = ++routes;
  notify('');
  const [page = 'search', argument] = location.hash.replace(/^#\/?/, '').split('/');
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  let info;
  try {
    info = await api.info();
  } catch (error) {
    if (current !== routes) return;
    if (error.status === 401) return signInPage();
    app.replaceChildren(h('h1', {}, 'facedex'), h('p', { class: 'error' }, error.message));
    return;
  }
  if (current !== routes) return;
  signOut.hidden = !info.needs_token;
  if (page === 'people' && argument) leave = await personPage(app, info, decodeURIComponent(argument));
  else if (page === 'people') leave = await peoplePage(app, info);
  else if (page === 'pipeline') leave = pipelinePage(app, info);
  else leave = searchPage(app, info);
  app.focus({ preventScroll: true });
}

function signInPage() {
  signOut.hidden = true;
  const token = h('input', { type: 'password', id: 'token', autocomplete: 'current-password', required: true });
  const form = h(
    'form',
    {
      class: 'sign-in',
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api.signIn(token.value);
          route();
        } catch (error) {
          notify(error.message, true);
        }
      },
    },
    h('label', { for: 'token' }, 'Access token'),
    token,
    h('button', { type: 'submit' }, 'Sign in'),
  );
  app.replaceChildren(
    h('h1', {}, 'Sign in'),
    h('p', {}, "This server needs a token: the read token to look, the write token to edit people."),
    form,
  );
  token.focus();
}

signOut.addEventListener('click', async () => {
  await api.signOut().catch(() => {});
  route();
});
window.addEventListener('hashchange', route);
route();
