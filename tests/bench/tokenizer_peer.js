// The peer for tokenizer_bench: Hugging Face's Rust tokenizers through its
// official Node binding (npm package "tokenizers"), on the same corpus and
// tokenizer.json files, on one thread (TOKENIZERS_PARALLELISM=false). The
// documents go through encodeBatch in batches of 512 so the binding's
// per-call cost (a promise and a hop to libuv's pool) does not count against
// the Rust code. Prints lines in tokenizer_bench's format.
// Usage: node tokenizer_peer.js CORPUS RUNS DIR...
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [corpusPath, runsText, ...dirs] = process.argv.slice(2);
  const runs = Number(runsText);
  const documents = fs.readFileSync(corpusPath, 'utf8').split('\n\n').filter((d) => d.length > 0);
  const bytes = documents.reduce((sum, d) => sum + Buffer.byteLength(d, 'utf8'), 0);
  for (const dir of dirs) {
    const loadStart = process.hrtime.bigint();
    const tokenizer = Tokenizer.fromFile(dir + '/tokenizer.json');
    const loadMs = Number(process.hrtime.bigint() - loadStart) / 1e6;
    let best = Infinity;
    let tokens = 0;
    for (let run = 0; run < runs; ++run) {
      tokens = 0;
      const start = process.hrtime.bigint();
      for (let i = 0; i < documents.length; i += 512) {
        const encodings = await tokenizer.encodeBatch(documents.slice(i, i + 512), { addSpecialTokens: false });
        for (const encoding of encodings) tokens += encoding.getIds().length;
      }
      best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
    }
    console.log(`hf-rust   ${dir.padEnd(40)} load ${loadMs.toFixed(1).padStart(7)} ms  encode ${(bytes / 1e6 / best).toFixed(2).padStart(6)} MB/s  ${tokens} tokens`);
  }
}

main().catch((error) => { console.error(error); process.exit(1); });
