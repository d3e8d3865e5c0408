// Models: every model with its state live (from /api/events), per node its
// pid, uptime, TTL left, leases, this proxy's requests in flight and
// queued, and the last failure with the model's last lines; Load and
// Unload.
import { api, h, duration } from './api.js';

export class ModelsPage {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.message = h('p', { className: 'message', id: 'models-message' });
    this.body = h('tbody');
    root.append(
      h('h1', {}, 'Models'),
      this.message,
      h('table', { className: 'models' },
        h('thead', {}, h('tr', {}, ['Model', 'State', 'Node', 'Group', 'PID', 'Uptime', 'TTL left',
          'Leases', 'In flight', 'Queued', ''].map((t) => h('th', {}, t)))),
        this.body));
    state.listeners.add((type) => {
      if (type === 'modelStatus' || type === 'inflight') this.render();
    });
    setInterval(() => {
      if (!this.root.hidden) this.render();
    }, 1000);
  }

  show() {
    this.render();
  }

  async act(verb, id, node) {
    const q = node ? `?node=${encodeURIComponent(node)}` : '';
    this.message.textContent = `${verb === 'load' ? 'Loading' : 'Unloading'} ${id}…`;
    try {
      const res = await api(`/api/models/${verb}/${encodeURIComponent(id)}${q}`, { method: 'POST' });
      const body = await res.json().catch(() => ({}));
      this.message.textContent = res.ok
        ? `${verb === 'load' ? 'Starting' : 'Stopped'} ${id}${body.node ? ` on ${body.node}` : ''}`
        : `${id}: ${(body.error && body.error.message) || res.status}`;
    } catch (e) {
      this.message.textContent = `${id}: ${e.message}`;
    }
  }

  render() {
    const now = Date.now();
    const flight = new Map();
    for (const f of this.state.inflight.models || []) flight.set(`${f.model}\u0000${f.node}`, f);
    const rows = [];
    for (const m of this.state.models) {
      if (m.peerID) {
        rows.push(h('tr', { dataset: { model: m.id } },
          h('td', {}, h('span', { className: 'id' }, m.id)), h('td', {}, h('span', { className: 'state peer' }, 'peer')),
          h('td', {}, m.peerID), h('td', { colSpan: 8 })));
        continue;
      }
      const nodes = m.nodes && m.nodes.length ? m.nodes : [{ node: '', state: m.state }];
      nodes.forEach((n, i) => {
        const f = flight.get(`${m.id}\u0000${n.node}`) || { in_flight: 0, queued: 0 };
        const up = n.state === 'ready' && n.since_ms ? (now - n.since_ms) / 1000 : null;
        let ttl = null;
        if (n.state === 'ready' && n.ttl_s > 0 && n.leases === 0 && n.last_used_ms) {
          ttl = n.ttl_s - (now - n.last_used_ms) / 1000;
        }
        const name = i === 0
          ? h('td', { className: 'name' },
            h('span', { className: 'id' }, m.id),
            m.name && m.name !== m.id ? h('span', { className: 'display' }, m.name) : null,
            m.aliases && m.aliases.length ? h('div', { className: 'aliases' }, `aliases: ${m.aliases.join(', ')}`) : null,
            m.description ? h('div', { className: 'description' }, m.description) : null)
          : h('td');
        const failure = n.failure
          ? h('details', { className: 'failure' },
            h('summary', {}, `${n.failure.reason}: ${n.failure.message}`),
            h('pre', {}, (n.failure.last_lines || []).join('\n')))
          : null;
        const busy = n.state === 'starting' || n.state === 'stopping';
        rows.push(h('tr', { dataset: { model: m.id, node: n.node } },
          name,
          h('td', {}, h('span', { className: `state ${n.state}` }, n.state), failure),
          h('td', { className: 'node' }, n.node || '–'),
          h('td', {}, n.group || '–'),
          h('td', { className: 'pid' }, n.pid ? String(n.pid) : '–'),
          h('td', { className: 'uptime' }, up === null ? '–' : duration(up)),
          h('td', { className: 'ttl' }, ttl === null ? '–' : duration(ttl)),
          h('td', {}, n.leases === undefined ? '–' : String(n.leases)),
          h('td', { className: 'inflight' }, String(f.in_flight)),
          h('td', {}, `${f.queued}${n.queued ? ` (+${n.queued} at manager)` : ''}`),
          h('td', { className: 'actions' },
            h('button', { className: 'load', disabled: busy || n.state === 'ready', onclick: () => this.act('load', m.id, n.node) }, 'Load'),
            h('button', { className: 'unload', disabled: n.state === 'stopped', onclick: () => this.act('unload', m.id) }, 'Unload'),
            h('a', { className: 'logs-link', href: `#logs/${encodeURIComponent(m.id)}` }, 'Logs'))));
      });
    }
    this.body.replaceChildren(...rows);
  }
}
