"""Golden values for python-random.ts and fewshot.ts, written with CPython's own random module and
lm-evaluation-harness's few-shot rules written out plainly: its sampler draws Random(1234).sample(docs, n) per
evaluated doc in turn (n + 1, then the doc itself removed, when the shots come from the evaluated split), and a
shot is doc_to_text + target_delimiter " " + doc_to_target + fewshot_delimiter "\\n\\n". Writes harness-golden.json."""
import json, os, random, sys

cases = []
for seed, n, k, calls in [(1234, 7473, 5, 6), (1234, 7473, 6, 4), (0, 50, 6, 3), (42, 10, 10, 2), (2**40 + 7, 1000, 3, 3)]:
    r = random.Random(seed)
    cases.append({'seed': seed, 'n': n, 'k': k, 'draws': [r.sample(range(n), k) for _ in range(calls)]})
r = random.Random(1234)
bits = [r.getrandbits(b) for b in (1, 13, 32, 7)]

# GSM8K-shaped docs: the train split, and a test split of other docs.
train = [{'question': f'What is {i} + {i % 7}?', 'answer': f'{i} + {i % 7} = {i + i % 7}\n#### {i + i % 7}'} for i in range(30)]
test = [{'question': f'What is {i} times 3?', 'answer': f'#### {3 * i}'} for i in range(4)]
doc_to_text = lambda d: f"Question: {d['question']}\nAnswer:"


def contexts(evaluated, pool, n, seed=1234):
    rnd = random.Random(seed)
    shared = evaluated is pool or any(d in pool for d in evaluated)
    out = []
    for doc in evaluated:
        shots = [x for x in rnd.sample(pool, n + 1) if x != doc][:n] if shared else rnd.sample(pool, n)
        out.append(''.join(doc_to_text(x) + ' ' + x['answer'] + '\n\n' for x in shots))
    return out


fewshot = {
    'train': train,
    'test': test,
    'testFromTrain': contexts(test, train, 5),
    'heldOutOfTrain': contexts(train[25:], train, 5),
    'threeShots': contexts(test, train, 3, seed=7),
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'harness-golden.json')
with open(path, 'w') as f:
    json.dump({'python': '.'.join(map(str, sys.version_info[:3])), 'sample': cases, 'getrandbits1234': bits, 'fewshot': fewshot}, f)
    f.write('\n')
