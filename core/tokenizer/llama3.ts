/**
 * Llama 3's tokenizer.json and tokenizer_config.json, as Meta publishes them for Llama-3.2, rebuilt from the
 * vocabulary and merges that the llama3-tokenizer-js package ships (the same 128,000 byte-level BPE tokens and
 * 280,147 merges, plus 256 special tokens). Written into generated Llama folders; a downloaded folder has its own.
 */
import llama3 from 'llama3-tokenizer-js';

/** Llama 3's pre-tokenizer split (tiktoken's cl100k pattern, as tokenizer.json states it). */
const SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const FIRST_SPECIAL = 128000;

export function llama3TokenizerFiles(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const vocab: Record<string, number> = {};
  llama3.vocabById.forEach((token, id) => {
    if (id < FIRST_SPECIAL) vocab[token] = id;
  });
  const added = llama3.vocabById
    .slice(FIRST_SPECIAL)
    .map((content, i) => ({ id: FIRST_SPECIAL + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const bos = llama3.vocabById[FIRST_SPECIAL]!;
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: SPLIT }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: bos, type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [FIRST_SPECIAL], tokens: [bos] } },
        },
      ],
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab,
      merges: [...llama3.merges.keys()],
    },
  };
  const config = {
    bos_token: bos,
    eos_token: llama3.vocabById[FIRST_SPECIAL + 1],
    clean_up_tokenization_spaces: true,
    model_input_names: ['input_ids', 'attention_mask'],
    model_max_length: 131072,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  return { json, config };
}
