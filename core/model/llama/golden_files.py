"""Independent golden files for core/model/files.ts: a small Llama's config.json and sharded index, written the way
transformers' save_pretrained writes them (json.dumps(indent=2, sort_keys=True), floats as Python floats; shards split
as huggingface_hub's split_state_dict_into_shards does, over LlamaForCausalLM's state_dict order, the tied lm_head
dropped). Run: python3 core/model/llama/golden_files.py > core/model/llama/golden-files.json (standard library only)."""
import json

L, D, HEADS, KV, INNER, POSITIONS, VOCAB = 2, 64, 4, 2, 128, 256, 128256
HD = D // HEADS
BF16 = 2
MAX_SHARD = 100_000

config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": D,
    "intermediate_size": INNER, "num_hidden_layers": L, "num_attention_heads": HEADS, "num_key_value_heads": KV,
    "head_dim": HD, "max_position_embeddings": POSITIONS, "vocab_size": VOCAB, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
    "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True, "bos_token_id": 128000,
    "eos_token_id": 128001, "torch_dtype": "bfloat16",
}

state_dict = [("model.embed_tokens.weight", (VOCAB, D))]
for i in range(L):
    p = f"model.layers.{i}."
    state_dict += [(p + "self_attn.q_proj.weight", (HEADS * HD, D)), (p + "self_attn.k_proj.weight", (KV * HD, D)),
                   (p + "self_attn.v_proj.weight", (KV * HD, D)), (p + "self_attn.o_proj.weight", (D, HEADS * HD)),
                   (p + "mlp.gate_proj.weight", (INNER, D)), (p + "mlp.up_proj.weight", (INNER, D)),
                   (p + "mlp.down_proj.weight", (D, INNER)), (p + "input_layernorm.weight", (D,)),
                   (p + "post_attention_layernorm.weight", (D,))]
state_dict.append(("model.norm.weight", (D,)))

shards, current, current_size, total = [], {}, 0, 0
for name, shape in state_dict:
    size = BF16
    for n in shape:
        size *= n
    if size > MAX_SHARD:
        total += size
        shards.append({name: shape})
        continue
    if current_size + size > MAX_SHARD:
        shards.append(current)
        current, current_size = {}, 0
    current[name] = shape
    current_size += size
    total += size
if current:
    shards.append(current)
weight_map = {}
for i, shard in enumerate(shards):
    for name in shard:
        weight_map[name] = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"

print(json.dumps({
    "shape": {"layers": L, "embd": D, "heads": HEADS, "kvHeads": KV, "inner": INNER, "positions": POSITIONS},
    "maxShardBytes": MAX_SHARD,
    "config": json.dumps(config, indent=2, sort_keys=True) + "\n",
    "index": json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n",
}, indent=2))
