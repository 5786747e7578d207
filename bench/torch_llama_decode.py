"""The decoding anchor for npm run bench:train: greedy decoding with a KV cache in plain PyTorch (Debian's
python3-torch) at Llama-3.2-1B's width, through the blocks and tied LM head of the step anchor
torch_cpu_llama_step.py (imported from the anchors folder, so both measure one model definition): the prompt in one
pass, then one token per pass, the logits of the last position only, as the server's generate decodes.
usage: torch_llama_decode.py ANCHORS_DIR [THREADS] [BLOCKS] [PROMPT] [NEW]   (defaults 2, 2, 32, 16)
Prints one JSON line with ms per new token (the prompt pass included, as the bench times its own)."""
import json, math, sys, time

sys.path.insert(0, sys.argv[1])
import torch
import torch.nn.functional as F
from torch_cpu_llama_step import Block, RMSNorm, D, H, KV, HD, V, rope


def attend(b, x, cos, sin, cache):
    """One block on the new positions x [1, T, D], its keys and values appended to `cache` (a list of two)."""
    B, T, _ = x.shape
    h = b.n1(x)
    q = b.q(h).view(B, T, H, HD).transpose(1, 2)
    k = b.k(h).view(B, T, KV, HD).transpose(1, 2)
    v = b.v(h).view(B, T, KV, HD).transpose(1, 2)
    q, k = rot(q, cos, sin), rot(k, cos, sin)
    if cache:
        k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
    cache[:] = [k, v]
    k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(HD)
    past = k.shape[2] - T
    att = att.masked_fill(torch.triu(torch.ones(T, k.shape[2], dtype=torch.bool), past + 1), float('-inf')).softmax(-1)
    x = x + b.o((att @ v).transpose(1, 2).reshape(B, T, D))
    h = b.n2(x)
    return x + b.down(F.silu(b.gate(h)) * b.up(h))


def rot(x, cos, sin):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def main():
    a = [int(v) for v in sys.argv[2:]]
    threads, nblocks, prompt, new = (a + [2, 2, 32, 16][len(a) :])[:4]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    blocks = [Block() for _ in range(nblocks)]
    norm = RMSNorm(D)
    emb = torch.randn(V, D) * 0.02
    cos, sin = rope(prompt + new)
    tokens = [(i * 7919) % V for i in range(prompt)]

    def generate():
        out, caches, seen = list(tokens), [[] for _ in blocks], 0
        for _ in range(new):
            x = emb[torch.tensor(out[seen:])][None]
            c, s = cos[:, :, seen : len(out)], sin[:, :, seen : len(out)]
            for b, cache in zip(blocks, caches):
                x = attend(b, x, c, s, cache)
            seen = len(out)
            out.append(int(F.linear(norm(x[:, -1]), emb).argmax()))
        return out

    with torch.no_grad():
        # The cache changes no token: the same greedy tokens as the step anchor's blocks over the whole sequence.
        cached = generate()
        full = list(tokens)
        for _ in range(new):
            x = emb[torch.tensor(full)][None]
            for b in blocks:
                x = b(x, cos[:, :, : len(full)], sin[:, :, : len(full)])
            full.append(int(F.linear(norm(x[:, -1]), emb).argmax()))
        assert cached == full, f'cached decoding {cached[prompt:]} differs from full recomputation {full[prompt:]}'
        t = time.perf_counter()
        generate()
        ms = (time.perf_counter() - t) * 1e3
    print(json.dumps({'device': 'cpu', 'threads': threads, 'torch': torch.__version__, 'model': 'llama-3.2-1b width',
                      'blocks': nblocks, 'prompt_tokens': prompt, 'new_tokens': new,
                      'ms_per_new_token': round(ms / new, 1)}))


if __name__ == '__main__':
    main()
