// Logs: a model's output live with its history (its manager's StreamLogs,
// through /logs/stream/<model>), the manager's own log, or the proxy's.
import { api, h, readText } from './api.js';

const KEEP = 256 * 1024; // Characters kept on the page.

export class LogsPage {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.source = 'proxy';
    this.select = h('select', { id: 'log-source', onchange: () => { location.hash = `#logs/${encodeURIComponent(this.select.value)}`; } });
    this.follow = h('input', { type: 'checkbox', checked: true, id: 'log-follow' });
    this.text = h('pre', { id: 'log-text', className: 'log' });
    this.status = h('span', { className: 'message', id: 'log-status' });
    root.append(h('h1', {}, 'Logs'),
      h('div', { className: 'toolbar' }, h('label', {}, 'Source ', this.select),
        h('label', {}, this.follow, ' follow'), this.status),
      this.text);
    state.listeners.add((type) => {
      if (type === 'modelStatus') this.options();
    });
    this.controller = null;
  }

  options() {
    const names = ['proxy', 'manager', ...this.state.models.filter((m) => !m.peerID).map((m) => m.id)];
    if (!names.includes(this.source)) names.push(this.source);
    const current = [...this.select.options].map((o) => o.value).join('\n');
    if (current !== names.join('\n')) {
      this.select.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
    }
    this.select.value = this.source;
  }

  show(source) {
    const next = source || this.source;
    this.options();
    if (next === this.source && this.controller) return;
    this.source = next;
    this.options();
    this.open();
  }

  async open() {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.text.textContent = '';
    this.status.textContent = `reading ${this.source}…`;
    try {
      const res = await api(`/logs/stream/${encodeURIComponent(this.source)}`, { signal: controller.signal });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        this.status.textContent = (body.error && body.error.message) || `${res.status}`;
        return;
      }
      this.status.textContent = `live: ${this.source}`;
      await readText(res, (t) => this.append(t));
      this.status.textContent = `${this.source}: the stream ended`;
    } catch (e) {
      if (!controller.signal.aborted) this.status.textContent = e.message;
    }
  }

  append(t) {
    let all = this.text.textContent + t;
    if (all.length > KEEP) all = all.slice(all.length - KEEP);
    this.text.textContent = all;
    if (this.follow.checked) this.text.scrollTop = this.text.scrollHeight;
  }
}
