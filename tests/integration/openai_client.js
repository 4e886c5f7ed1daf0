// Drives `openforce-worker serve` with OpenAI's official Node client: lists
// models, then asks each given model the same question plainly and streamed.
// Prints one JSON object: {"models": [...], "answers": {model: {"plain",
// "streamed", "finish"}}}. Usage: node openai_client.js BASE_URL KEY MODEL...
'use strict';
const OpenAI = require('openai');

async function main() {
  const [baseURL, apiKey, ...models] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const listed = [];
  for await (const model of client.models.list()) listed.push(model.id);
  const answers = {};
  for (const model of models) {
    const request = {
      model,
      messages: [{ role: 'user', content: '3a=' }],
      max_tokens: 6,
      temperature: 0,
    };
    const plain = await client.chat.completions.create(request);
    let streamed = '';
    let finish = null;
    const stream = await client.chat.completions.create({ ...request, stream: true });
    for await (const chunk of stream) {
      streamed += chunk.choices[0].delta.content || '';
      finish = chunk.choices[0].finish_reason || finish;
    }
    answers[model] = {
      plain: plain.choices[0].message.content,
      streamed,
      finish,
      usage: plain.usage,
    };
  }
  console.log(JSON.stringify({ models: listed, answers }));
}

main().catch((error) => {
  console.error(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
