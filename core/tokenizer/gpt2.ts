/**
 * GPT-2's byte-level BPE (r50k_base, through js-tiktoken): the tokenizer of GPT-2 folders that carry no
 * tokenizer.json (core/tokenizer/hf.ts reads those; both give the same ids, tested).
 *
 * Sentence pairs (MRPC, MNLI) are encoded as `first <|endoftext|> second`: GPT-2 has no separator token of its own,
 * and <|endoftext|> (50256) is the one token it already treats as a boundary. Padding also uses 50256, but padded
 * positions are told apart by the attention mask, never by their id.
 */
import { Tiktoken } from 'js-tiktoken/lite';
import r50kBase from 'js-tiktoken/ranks/r50k_base';
import { Tokenizer, type SpecialTokens } from './tokenizer.ts';

export const END_OF_TEXT = 50256;
export const PAIR_SEPARATOR = END_OF_TEXT;
export const GPT2_SPECIAL: SpecialTokens = { eos: END_OF_TEXT, separator: PAIR_SEPARATOR, pad: END_OF_TEXT };

let shared: Tiktoken | undefined;

export class GPT2Tokenizer extends Tokenizer {
  readonly special = GPT2_SPECIAL;
  private readonly bpe = (shared ??= new Tiktoken(r50kBase));

  encode(text: string): number[] {
    return this.bpe.encode(text, [], []);
  }

  decode(ids: ArrayLike<number>): string {
    return this.bpe.decode(Array.from(ids));
  }
}
