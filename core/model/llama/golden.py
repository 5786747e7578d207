"""Independent golden values for core/model/llama/reference.ts: LlamaForCausalLM's forward written with numpy the way
transformers writes it (rotate_half, repeat_kv, llama3 inv_freq), on weights both sides generate from one formula.
Run: python3 core/model/llama/golden.py > core/model/llama/golden.json (numpy only)."""
import json, math
import numpy as np

C = dict(layers=2, d=16, heads=4, kv=2, hd=4, inner=24, vocab=40, theta=10000.0, eps=1e-5,
         factor=8.0, low=1.0, high=4.0, original=16)
IDS = [[3, 17, 5, 39, 0, 22], [8, 8, 30, 2, 0, 0]]
MASK = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]

def shapes():
    d, q, kv, inner = C['d'], C['heads'] * C['hd'], C['kv'] * C['hd'], C['inner']
    out = [('embed_tokens.weight', (C['vocab'], d))]
    for i in range(C['layers']):
        out += [(f'layers.{i}.input_layernorm.weight', (d,)), (f'layers.{i}.self_attn.q_proj.weight', (q, d)),
                (f'layers.{i}.self_attn.k_proj.weight', (kv, d)), (f'layers.{i}.self_attn.v_proj.weight', (kv, d)),
                (f'layers.{i}.self_attn.o_proj.weight', (d, q)), (f'layers.{i}.post_attention_layernorm.weight', (d,)),
                (f'layers.{i}.mlp.gate_proj.weight', (inner, d)), (f'layers.{i}.mlp.up_proj.weight', (inner, d)),
                (f'layers.{i}.mlp.down_proj.weight', (d, inner))]
    return out + [('norm.weight', (d,)), ('lm_head.weight', (C['vocab'], d))]

def weights():
    w = {}
    for n, (name, shape) in enumerate(shapes()):
        k = np.arange(int(np.prod(shape)), dtype=np.float64)
        v = 0.3 * np.sin(0.37 * k + n)
        if len(shape) == 1:
            v = 1 + v
        w[name] = v.astype(np.float32).astype(np.float64).reshape(shape)
    return w

def inv_freq():
    base = 1.0 / C['theta'] ** (np.arange(0, C['hd'], 2) / C['hd'])
    wavelen = 2 * math.pi / base
    low_wl, high_wl = C['original'] / C['low'], C['original'] / C['high']
    scaled = np.where(wavelen > low_wl, base / C['factor'], base)
    smooth = (C['original'] / wavelen - C['low']) / (C['high'] - C['low'])
    smoothed = (1 - smooth) * scaled / C['factor'] + smooth * scaled
    medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
    return np.where(medium, smoothed, scaled)

def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + C['eps']) * w

def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], -1)

def forward(w):
    ids, mask = np.array(IDS), np.array(MASK)
    B, T = ids.shape
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    freqs = pos[..., None] * inv_freq()[None, None]
    emb = np.concatenate([freqs, freqs], -1)
    cos, sin = np.cos(emb)[:, None], np.sin(emb)[:, None]  # [B, 1, T, hd]
    allowed = np.tril(np.ones((T, T), bool))[None, None] & (mask[:, None, None, :] == 1)
    x = w['embed_tokens.weight'][ids]
    hidden = []
    for i in range(C['layers']):
        p = lambda n: w[f'layers.{i}.{n}.weight']
        h = rms(x, p('input_layernorm'))
        q = (h @ p('self_attn.q_proj').T).reshape(B, T, C['heads'], C['hd']).transpose(0, 2, 1, 3)
        k = (h @ p('self_attn.k_proj').T).reshape(B, T, C['kv'], C['hd']).transpose(0, 2, 1, 3)
        v = (h @ p('self_attn.v_proj').T).reshape(B, T, C['kv'], C['hd']).transpose(0, 2, 1, 3)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = C['heads'] // C['kv']
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.where(allowed, q @ k.transpose(0, 1, 3, 2) / math.sqrt(C['hd']), -1e9)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, -1)
        x = x + o @ p('self_attn.o_proj').T
        h = rms(x, p('post_attention_layernorm'))
        g = h @ p('mlp.gate_proj').T
        x = x + ((g / (1 + np.exp(-g))) * (h @ p('mlp.up_proj').T)) @ p('mlp.down_proj').T
        hidden.append(x.copy())
    logits = rms(x, w['norm.weight']) @ w['lm_head.weight'].T
    return hidden, logits

hidden, logits = forward(weights())
print(json.dumps({'config': C, 'ids': IDS, 'mask': MASK, 'inv_freq': inv_freq().tolist(),
                  'hidden_cut1': hidden[0].ravel().tolist(), 'logits': logits.ravel().tolist()}))
