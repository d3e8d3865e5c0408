// Activity: the requests served, newest first (GET /api/metrics/activity,
// then live from /api/events), filtered by model and status, exported as
// CSV, with p50/p95 per model.
import { json, h, num, percentile } from './api.js';

const COLUMNS = [
  ['Time', (e) => e.timestamp.replace('T', ' ').replace('Z', '')],
  ['Model', (e) => e.model],
  ['Node', (e) => e.node || '–'],
  ['Path', (e) => e.path],
  ['Status', (e) => e.status],
  ['In', (e) => num(e.input_tokens)],
  ['Out', (e) => num(e.output_tokens)],
  ['Prompt tok/s', (e) => num(e.prompt_tokens_per_second, 1)],
  ['Gen tok/s', (e) => num(e.tokens_per_second, 1)],
  ['TTFT ms', (e) => num(e.time_to_first_token_ms, 1)],
  ['Queue ms', (e) => num(e.queue_wait_ms, 1)],
  ['Load ms', (e) => num(e.load_wait_ms, 1)],
  ['Duration ms', (e) => num(e.duration_ms, 1)],
];

// Rows kept on the page.
const KEEP = 1000;

const CSV_FIELDS = ['id', 'timestamp', 'model', 'node', 'path', 'status', 'input_tokens', 'output_tokens',
  'cached_tokens', 'draft_tokens', 'draft_accepted_tokens', 'prompt_tokens_per_second', 'tokens_per_second', 'time_to_first_token_ms',
  'queue_wait_ms', 'load_wait_ms', 'duration_ms', 'error'];

export class ActivityPage {
  constructor(root, state) {
    this.root = root;
    this.entries = [];
    this.next = null;
    this.model = h('select', { id: 'activity-model', onchange: () => this.load() }, h('option', { value: '' }, 'all models'));
    this.status = h('input', { id: 'activity-status', type: 'number', placeholder: 'any status', onchange: () => this.load() });
    this.message = h('span', { className: 'message' });
    this.body = h('tbody');
    this.stats = h('tbody');
    this.more = h('button', { onclick: () => this.load(true), hidden: true }, 'Older');
    root.append(h('h1', {}, 'Activity'),
      h('div', { className: 'toolbar' }, h('label', {}, 'Model ', this.model), h('label', {}, 'Status ', this.status),
        h('button', { id: 'activity-csv', onclick: () => this.csv() }, 'Export CSV'), this.message),
      h('table', { className: 'stats' },
        h('thead', {}, h('tr', {}, ['Model', 'Requests', 'Duration p50', 'p95', 'TTFT p50', 'p95', 'Gen tok/s p50'].map((t) => h('th', {}, t)))),
        this.stats),
      h('table', { className: 'activity' }, h('thead', {}, h('tr', {}, COLUMNS.map(([t]) => h('th', {}, t)))), this.body),
      this.more);
    state.listeners.add((type, data) => {
      if (type === 'modelStatus') this.options(data);
      if (type === 'activity' && data && data.model !== undefined && this.matches(data)) {
        this.entries.unshift(data);
        // The page keeps the newest KEEP (Older pages back from there).
        if (this.entries.length > KEEP) {
          this.entries.length = KEEP;
          this.next = this.entries[KEEP - 1].id;
        }
        if (!this.root.hidden) this.render();
      }
    });
    this.loaded = false;
  }

  options(models) {
    const names = models.map((m) => m.id);
    const value = this.model.value;
    const current = [...this.model.options].slice(1).map((o) => o.value).join('\n');
    if (current !== names.join('\n')) {
      this.model.replaceChildren(h('option', { value: '' }, 'all models'), ...names.map((n) => h('option', { value: n }, n)));
      this.model.value = value;
    }
  }

  matches(e) {
    if (this.model.value && e.model !== this.model.value) return false;
    if (this.status.value && String(e.status) !== this.status.value) return false;
    return true;
  }

  show() {
    if (!this.loaded) this.load();
    else this.render();
  }

  async load(older = false) {
    const q = new URLSearchParams({ limit: '200' });
    if (this.model.value) q.set('model', this.model.value);
    if (this.status.value) q.set('status', this.status.value);
    if (older && this.next) q.set('before', this.next);
    try {
      const page = await json(`/api/metrics/activity?${q}`);
      this.entries = older ? this.entries.concat(page.activity) : page.activity;
      this.next = page.next_before;
      this.loaded = true;
      this.message.textContent = '';
      this.render();
    } catch (e) {
      this.message.textContent = e.message;
    }
  }

  render() {
    this.body.replaceChildren(...this.entries.map((e) => h('tr', { className: 'activity-row', dataset: { id: e.id, model: e.model } },
      COLUMNS.map(([t, f]) => h('td', {
        className: t === 'Gen tok/s' ? 'tps' : t === 'Status' && e.status >= 400 ? 'error' : '',
        title: t === 'Status' && e.error ? e.error : undefined,
      }, f(e))))));
    this.more.hidden = !this.next;
    const by = new Map();
    for (const e of this.entries) {
      if (!by.has(e.model)) by.set(e.model, []);
      by.get(e.model).push(e);
    }
    this.stats.replaceChildren(...[...by.entries()].sort().map(([model, es]) => {
      const d = es.map((e) => e.duration_ms);
      const t = es.map((e) => e.time_to_first_token_ms);
      const g = es.map((e) => e.tokens_per_second);
      return h('tr', {}, h('td', {}, model), h('td', {}, es.length),
        h('td', {}, num(percentile(d, 50), 1)), h('td', {}, num(percentile(d, 95), 1)),
        h('td', {}, num(percentile(t, 50), 1)), h('td', {}, num(percentile(t, 95), 1)),
        h('td', {}, num(percentile(g, 50), 1)));
    }));
  }

  csv() {
    const cell = (v) => {
      if (v === null || v === undefined) return '';
      const s = String(v);
      return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    };
    const lines = [CSV_FIELDS.join(',')].concat(this.entries.map((e) => CSV_FIELDS.map((f) => cell(e[f])).join(',')));
    const blob = new Blob([`${lines.join('\n')}\n`], { type: 'text/csv' });
    const a = h('a', { href: URL.createObjectURL(blob), download: 'modelplane-activity.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }
}
