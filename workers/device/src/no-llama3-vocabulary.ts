/**
 * What the device's bundle holds in place of the llama3-tokenizer-js package (wrangler.toml, `[alias]`). The package
 * bakes Llama 3's 128,000-token vocabulary and 280,147 merges into a module that builds them when it is evaluated: 43
 * MB of JS heap in a Worker that has 128 MB in all, for a table only make-model reads (core/tokenizer/llama3.ts). The
 * device reaches the package only through the model registry it shares with the server, and tokenizes a Llama
 * round with the round's own tokenizer.json. Whatever reads the vocabulary here fails, saying why.
 */
import type llama3 from 'llama3-tokenizer-js';

const absent = (what: string) => (): never => {
  throw new Error(`the device holds no Llama 3 ${what} (wrangler.toml aliases llama3-tokenizer-js away): a round's tokenizer comes as its tokenizer.json`);
};

export default Object.defineProperties({}, { vocabById: { get: absent('vocabulary') }, merges: { get: absent('merges') } }) as typeof llama3;
