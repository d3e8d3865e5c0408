// A real inference client for tests/e2e/openai_sdk_test.py: the official
// OpenAI Node SDK against modelproxy. Prints one JSON line.
//
//   node chat.mjs BASE_URL stream MODEL      {"text": ..., "chunks": N,
//                                             "node": X-Modelplane-Node}
//   node chat.mjs BASE_URL embed MODEL       {"dimensions": N}
//   node chat.mjs BASE_URL models            {"ids": [...]}
// An API error prints {"error": {"status": ..., "type": ..., "message": ...}}.
import OpenAI from 'openai';

const [baseURL, mode, model] = process.argv.slice(2);
const client = new OpenAI({
  baseURL,
  apiKey: process.env.MODELPLANE_API_KEY || 'none',
  maxRetries: 0,
});

async function main() {
  if (mode === 'stream') {
    const {data: stream, response} = await client.chat.completions
        .create({
          model,
          stream: true,
          messages: [{role: 'user', content: 'hello'}],
        })
        .withResponse();
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    return {text, chunks, node: response.headers.get('x-modelplane-node')};
  }
  if (mode === 'embed') {
    const r = await client.embeddings.create({model, input: 'hello'});
    return {dimensions: r.data[0].embedding.length};
  }
  if (mode === 'models') {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    return {ids};
  }
  throw new Error(`unknown mode ${mode}`);
}

main()
    .then((r) => console.log(JSON.stringify(r)))
    .catch((e) => {
      if (e instanceof OpenAI.APIError) {
        console.log(JSON.stringify(
            {error: {status: e.status ?? null, type: e.type ?? null, message: e.message}}));
      } else {
        console.error(e);
        process.exit(1);
      }
    });
