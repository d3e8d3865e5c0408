// Playground: a streaming chat against a chosen model; while the model
// starts, the proxy's loading comments (or its sendLoadingState
// reasoning) show how long it has waited.
import { api, h, readText, sseParser } from './api.js';

export class PlaygroundPage {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.messages = [];
    this.model = h('select', { id: 'pg-model' });
    this.input = h('textarea', { id: 'pg-input', rows: 3, placeholder: 'Say something…' });
    this.send = h('button', { id: 'pg-send', onclick: () => this.chat() }, 'Send');
    this.stop = h('button', { id: 'pg-stop', onclick: () => this.controller && this.controller.abort(), disabled: true }, 'Stop');
    this.status = h('div', { id: 'pg-status', className: 'message' });
    this.log = h('div', { id: 'pg-output', className: 'chat' });
    root.append(h('h1', {}, 'Playground'),
      h('div', { className: 'toolbar' }, h('label', {}, 'Model ', this.model),
        h('button', { onclick: () => { this.messages = []; this.log.replaceChildren(); } }, 'Clear')),
      this.log, this.input, h('div', { className: 'toolbar' }, this.send, this.stop), this.status);
    state.listeners.add((type, data) => {
      if (type === 'modelStatus') this.options(data);
    });
  }

  options(models) {
    const names = models.filter((m) => !m.unlisted).map((m) => m.id);
    const value = this.model.value;
    const current = [...this.model.options].map((o) => o.value).join('\n');
    if (current !== names.join('\n')) {
      this.model.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      if (names.includes(value)) this.model.value = value;
    }
  }

  show() {
    this.options(this.state.models);
  }

  async chat() {
    const text = this.input.value.trim();
    const model = this.model.value;
    if (!text || !model) return;
    this.input.value = '';
    this.messages.push({ role: 'user', content: text });
    this.log.append(h('div', { className: 'msg user' }, text));
    const thinking = h('div', { className: 'msg reasoning', hidden: true });
    const out = h('div', { className: 'msg assistant' });
    this.log.append(thinking, out);
    let reasoning = '';
    this.controller = new AbortController();
    this.send.disabled = true;
    this.stop.disabled = false;
    const started = performance.now();
    let first = null;
    let content = '';
    let usage = null;
    this.status.textContent = `Waiting for ${model}…`;
    try {
      const res = await api('/v1/chat/completions', {
        method: 'POST',
        signal: this.controller.signal,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model, messages: this.messages, stream: true, stream_options: { include_usage: true } }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new Error((body.error && body.error.message) || `${res.status}`);
      }
      const parse = sseParser(({ data }) => {
        if (data === '[DONE]') return;
        let chunk;
        try {
          chunk = JSON.parse(data);
        } catch {
          return;
        }
        if (chunk.error) throw new Error(chunk.error.message || 'error');
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (!delta) return;
        if (delta.reasoning_content) {
          // The model's reasoning, or, before it answers, the proxy's
          // loading progress (sendLoadingState): shown apart, never hidden.
          reasoning += delta.reasoning_content;
          thinking.textContent = reasoning;
          thinking.hidden = false;
          if (first === null) this.status.textContent = `Waiting for ${model} (loading or thinking)…`;
        }
        if (delta.content) {
          if (first === null) {
            first = performance.now();
            this.status.textContent = `${model} is answering…`;
          }
          content += delta.content;
          out.textContent = content;
        }
      }, (comment) => {
        if (first === null && comment.startsWith('loading')) this.status.textContent = `Loading ${model}… (${comment})`;
      });
      await readText(res, parse);
      this.messages.push({ role: 'assistant', content });
      const end = performance.now();
      const tokens = usage && usage.completion_tokens;
      const gen = first !== null ? (end - first) / 1000 : null;
      const parts = [`${model}: done in ${((end - started) / 1000).toFixed(2)} s`];
      if (first !== null) parts.push(`first token after ${((first - started) / 1000).toFixed(2)} s`);
      if (tokens) parts.push(`${tokens} tokens`);
      if (tokens && gen > 0) parts.push(`${(tokens / gen).toFixed(1)} tok/s`);
      this.status.textContent = parts.join(', ');
    } catch (e) {
      this.status.textContent = this.controller.signal.aborted ? 'stopped' : `error: ${e.message}`;
    } finally {
      this.send.disabled = false;
      this.stop.disabled = true;
    }
  }
}
