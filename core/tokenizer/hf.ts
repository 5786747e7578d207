/**
 * A model folder's own tokenizer: Hugging Face's `tokenizer.json`, run by Hugging Face's Tokenizers.js (runtime-neutral,
 * no dependencies). Control tokens (start, end, separator) are added by id here, never parsed out of text: the text is
 * encoded by a copy of the tokenizer that knows no added tokens, so `<|eot_id|>` written in a shard stays text.
 */
import { Tokenizer as HfTokenizerJs } from '@huggingface/tokenizers';
import { parseJsonObject } from '../model/config-json.ts';
import { familyOf, type ModelConfig } from '../model/family.ts';
import { Tokenizer, type SpecialTokens } from './tokenizer.ts';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

export class HfTokenizer extends Tokenizer {
  readonly special: SpecialTokens;
  private readonly plain: HfTokenizerJs;
  /** The tokenizer with its special tokens, for decoding; none where only encoding is needed. */
  private readonly withSpecial: HfTokenizerJs | undefined;

  /**
   * `json`: tokenizer.json parsed; `config`: tokenizer_config.json parsed ({} if the folder has none). A device only
   * encodes (`decoder: false`): each copy of Llama 3's tokenizer holds ~70 MB of JS heap, and a Worker has 128 MB.
   */
  constructor(json: Record<string, unknown>, config: Record<string, unknown>, special: SpecialTokens, { decoder = true } = {}) {
    super();
    this.special = special;
    this.plain = new HfTokenizerJs({ ...json, added_tokens: [], post_processor: null }, config);
    if (decoder) this.withSpecial = new HfTokenizerJs(json, config);
  }

  private get full(): HfTokenizerJs {
    if (!this.withSpecial) throw new Error('this tokenizer was made to encode only (decoder: false)');
    return this.withSpecial;
  }

  encode(text: string): number[] {
    return this.plain.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>, { skipSpecial = false } = {}): string {
    return this.full.decode(Array.from(ids), { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false });
  }

  /** The id of a token string (`<|eot_id|>`), or undefined. */
  tokenId(token: string): number | undefined {
    return this.full.token_to_id(token);
  }
}

/** The special tokens a family's config names (GPT-2: <|endoftext|> for all; Llama: BOS, first EOS). */
export function specialTokens(c: ModelConfig): SpecialTokens {
  return familyOf(c).specialTokens(c);
}

/** The tokenizer of a model folder from its files' text; `file` names tokenizer.json in errors. */
export function tokenizerFromFiles(config: ModelConfig, tokenizerJson: string, tokenizerConfig: string | undefined, file = TOKENIZER_FILE): HfTokenizer {
  const json = parseJsonObject(tokenizerJson, file);
  if (!json.model || typeof json.model !== 'object') throw new Error(`${file}: no 'model' object: not a Hugging Face tokenizer.json`);
  const tokenizer = new HfTokenizer(
    json,
    tokenizerConfig === undefined ? {} : parseJsonObject(tokenizerConfig, file.replace(TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)),
    specialTokens(config),
  );
  for (const [name, id] of Object.entries(tokenizer.special)) {
    if (id !== undefined && id >= config.vocabSize) throw new Error(`${file}: the ${name} token ${id} is outside the model's vocabulary (${config.vocabSize})`);
  }
  return tokenizer;
}
