// The web UI's shell: the pages (by the URL's #hash), the API key, and one
// /api/events stream whose events every page reads.
import { api, apiKey, setApiKey, readText, sseParser, json, AuthError } from './api.js';
import { ModelsPage } from './models.js';
import { LogsPage } from './logs.js';
import { ActivityPage } from './activity.js';
import { PlaygroundPage } from './playground.js';

// What the event stream says, shared by the pages.
export const state = {
  models: [],
  inflight: { total: 0, models: [] },
  listeners: new Set(),
  emit(type, data) {
    for (const fn of this.listeners) fn(type, data);
  },
};

const pages = {
  models: new ModelsPage(document.getElementById('models-page'), state),
  logs: new LogsPage(document.getElementById('logs-page'), state),
  activity: new ActivityPage(document.getElementById('activity-page'), state),
  playground: new PlaygroundPage(document.getElementById('playground-page'), state),
};

let needKey = false;

function show() {
  const [name, arg] = location.hash.replace(/^#/, '').split('/');
  const page = pages[name] ? name : 'models';
  document.getElementById('key-page').hidden = !needKey;
  for (const [n, p] of Object.entries(pages)) {
    p.root.hidden = needKey || n !== page;
    if (!needKey && n === page) p.show(arg ? decodeURIComponent(arg) : undefined);
  }
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
}

function setConn(text, ok) {
  const el = document.getElementById('conn');
  el.textContent = text;
  el.classList.toggle('ok', ok);
}

// The event stream, reconnected a second after it ends.
let events = null;
async function connect() {
  if (events) events.abort();
  const controller = new AbortController();
  events = controller;
  try {
    const res = await api('/api/events', { signal: controller.signal });
    if (!res.ok) throw new Error(`${res.status}`);
    setConn('live', true);
    const parse = sseParser(({ data }) => {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      let payload = msg.data;
      try {
        payload = JSON.parse(msg.data);
      } catch {
        /* a plain string */
      }
      if (msg.type === 'modelStatus') state.models = payload;
      if (msg.type === 'inflight') state.inflight = payload;
      state.emit(msg.type, payload);
    });
    await readText(res, parse);
    setConn('reconnecting…', false);
  } catch (e) {
    if (controller.signal.aborted) return;
    if (e instanceof AuthError) return;
    setConn('disconnected', false);
  }
  if (events === controller) setTimeout(connect, 1000);
}

window.addEventListener('mp-auth', () => {
  needKey = true;
  if (events) events.abort();
  events = null;
  document.getElementById('key-error').textContent = apiKey() ? 'That key was refused.' : '';
  setConn('needs a key', false);
  show();
});

document.getElementById('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setApiKey(document.getElementById('key-input').value.trim());
  needKey = false;
  show();
  start();
});

window.addEventListener('hashchange', show);

async function start() {
  connect();
  try {
    const v = await json('/api/version');
    document.getElementById('version').textContent = `v${v.version} (${v.commit})`;
  } catch {
    /* shown when the key is given */
  }
}

show();
start();
