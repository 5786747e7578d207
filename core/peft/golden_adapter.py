"""Independent golden values for parseAdapter and mergeAdapter (core/peft/adapter.ts): a LoRA adapter of a tiny Llama
with use_rslora, a rank_pattern and an alpha_pattern, its tensors in bfloat16, and the change merging makes to each
adapted weight, computed as PEFT does (get_pattern_key's regex; scaling = lora_alpha / sqrt(r) with rsLoRA;
delta W = scaling * lora_B @ lora_A in nn.Linear's [out, in]). Weights come from a formula, rounded to bfloat16 so
that both sides start from the same values.
Run: python3 core/peft/golden_adapter.py > core/peft/golden-adapter.json (numpy only)."""
import json, math, re
import numpy as np

LAYERS, D, HEADS, KV, HD = 2, 8, 2, 1, 4
config = {
    "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny", "r": 2, "lora_alpha": 4,
    "use_rslora": True, "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"model.layers.1.self_attn.v_proj": 6},
    "target_modules": ["q_proj", "v_proj"], "fan_in_fan_out": False, "bias": "none", "lora_dropout": 0.0,
    "use_dora": False, "modules_to_save": None,
}

def bf16(x):
    """Round float32 values to bfloat16 (nearest even), as float64."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)

def get_pattern_key(pattern_keys, key_to_match):
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match

tensors, deltas, n = {}, {}, 0
for layer in range(LAYERS):
    for proj, out in (("q_proj", HEADS * HD), ("v_proj", KV * HD)):
        module = f"model.layers.{layer}.self_attn.{proj}"
        r = config["rank_pattern"].get(get_pattern_key(config["rank_pattern"].keys(), module), config["r"])
        alpha = config["alpha_pattern"].get(get_pattern_key(config["alpha_pattern"].keys(), module), config["lora_alpha"])
        scaling = alpha / math.sqrt(r)
        a = bf16(0.5 * np.sin(0.7 * np.arange(r * D) + n)).reshape(r, D)
        b = bf16(0.5 * np.cos(0.3 * np.arange(out * r) + n)).reshape(out, r)
        n += 1
        tensors[f"base_model.model.{module}.lora_A.weight"] = {"shape": [r, D], "values": a.ravel().tolist()}
        tensors[f"base_model.model.{module}.lora_B.weight"] = {"shape": [out, r], "values": b.ravel().tolist()}
        deltas[f"layers.{layer}.self_attn.{proj}.weight"] = (scaling * b @ a).ravel().tolist()

print(json.dumps({"shape": {"layers": LAYERS, "embd": D, "heads": HEADS, "kvHeads": KV, "inner": 12, "positions": 16},
                  "config": config, "tensors": tensors, "deltas": deltas}))
