// The proxy's API as the pages use it: every call carries the API key when
// one is set (a 401 asks for it), streams are read with fetch (so that the
// key goes as a header), and a small DOM helper.

const KEY = 'modelplane.apiKey';

export function apiKey() {
  return localStorage.getItem(KEY) || '';
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

export class AuthError extends Error {}

// fetch with the key; a 401 raises AuthError and tells the app to ask.
export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  // A 401 to this then carries no Basic challenge: the page asks for the
  // key itself, the browser does not.
  headers.set('X-Requested-With', 'XMLHttpRequest');
  const key = apiKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) {
    window.dispatchEvent(new CustomEvent('mp-auth'));
    throw new AuthError('an API key is required');
  }
  return res;
}

// The JSON of a call; an error status raises its message.
export async function json(path, options) {
  const res = await api(path, options);
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    throw new Error((body && body.error && body.error.message) || `${res.status} ${res.statusText}`);
  }
  return body;
}

// Reads a response body as text pieces until it ends (or `signal` aborts).
export async function readText(res, onText) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
  const rest = decoder.decode();
  if (rest) onText(rest);
}

// A parser of server-sent events: feed it text; it calls onEvent with
// {event, data} for each event and onComment for each comment line.
export function sseParser(onEvent, onComment = () => {}) {
  let buf = '';
  return (text) => {
    buf += text.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          onComment(line.slice(1).trim());
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) onEvent({ event, data: data.join('\n') });
    }
  };
}

// h('td', {className: 'x', onclick: f}, 'text', child...): an element.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el) el[k] = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Display helpers: "–" for what is unknown.
export function num(v, digits = 0) {
  return v === null || v === undefined ? '–' : Number(v).toFixed(digits);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

export function percentile(values, p) {
  const v = values.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (!v.length) return null;
  return v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)];
}
