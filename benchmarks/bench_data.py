"""Benchmark: 100k Dyck-2 sequences with labels.

Times, in one run and on the same machine:
- `generate_s`: `Dyck.generate` alone (vectorised numpy sampler in `saenb.grammars`);
- `corpus_s`: the full `make_corpus` (chunked generation, tokenisation, label alignment, Arrow tables) plus `save_corpus`;
- `reference_s`: a straightforward pure-Python per-sequence sampler of the same distribution (uniform even length,
  uniform balanced string within the depth cap, random bracket types) producing the same labels;
and prints ONE JSON line. Usage: python benchmarks/bench_data.py [--n 100000]
"""
import argparse, json, random, sys, tempfile, time

import numpy as np

from saenb.data import make_corpus, save_corpus, load_corpus, pack
from saenb.grammars import get_language


def reference_dyck(n:int, n_brackets:int=2, min_len:int=2, max_len:int=64, max_depth:int=8, seed:int=0) -> dict:
    "Pure-Python Dyck sampler: one sequence at a time, one token at a time, with depth/bracket/open/match_pos/position labels."
    rng = random.Random(seed)
    # ways[r][d]: number of ways to close from depth d in r steps, staying within [0, max_depth]
    ways = [[0] * (max_depth + 2) for _ in range(max_len + 1)]
    ways[0][0] = 1
    for r in range(1, max_len + 1):
        for d in range(max_depth + 1):
            ways[r][d] = (ways[r-1][d+1] if d + 1 <= max_depth else 0) + (ways[r-1][d-1] if d > 0 else 0)
    pairs = [('(', ')'), ('[', ']'), ('{', '}'), ('<', '>')][:n_brackets]
    out = {k: [] for k in ('tokens', 'depth', 'bracket', 'open', 'match_pos', 'position')}
    lengths = list(range(min_len, max_len + 1, 2))
    for _ in range(n):
        L = rng.choice(lengths)
        toks, depth, brk, opn, match = [], [], [], [], [0] * L
        stack = []
        for i in range(L):
            r, d = L - i, len(stack)
            p_open = ways[r-1][d+1] / ways[r][d] if d + 1 <= max_depth else 0.0
            if rng.random() < p_open:
                t = rng.randrange(n_brackets)
                stack.append((t, i)); toks.append(pairs[t][0]); depth.append(len(stack)); brk.append(t); opn.append(1)
            else:
                t, j = stack.pop()
                toks.append(pairs[t][1]); depth.append(len(stack) + 1); brk.append(t); opn.append(0)
                match[i], match[j] = j, i
        out['tokens'].append(toks); out['depth'].append(depth); out['bracket'].append(brk)
        out['open'].append(opn); out['match_pos'].append(match); out['position'].append(list(range(L)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=100_000, help='number of sequences')
    args = ap.parse_args()
    n, lang = args.n, get_language('dyck', n_brackets=2)

    t0 = time.perf_counter()
    with np.errstate(invalid='ignore', divide='ignore'): cols = lang.generate(n, seed=0)
    generate_s = time.perf_counter() - t0
    n_tokens = sum(map(len, cols['tokens']))

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        corpus = make_corpus(lang, n, seed=0)
        make_s = time.perf_counter() - t0
        save_corpus(corpus, f"{d}/dyck2")
        corpus_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = pack(load_corpus(f"{d}/dyck2").train, 128)
        load_pack_s = time.perf_counter() - t0
        corpus_tokens = sum(corpus.train['length'][:]) + sum(corpus.validation['length'][:])

    t0 = time.perf_counter()
    ref = reference_dyck(n, seed=0)
    reference_s = time.perf_counter() - t0
    ref_tokens = sum(map(len, ref['tokens']))
    # sanity: the reference samples the same length distribution and is grammatical
    assert all(lang.is_grammatical(t) for t in ref['tokens'][:200])
    assert all(lang.labels(t) == {k: ref[k][b] for k in lang.concepts} for b, t in enumerate(ref['tokens'][:200]))

    print(json.dumps({
        'bench': f"data_dyck2_{n // 1000}k" if n % 1000 == 0 else f"data_dyck2_{n}",
        'n_seqs': n, 'tokens': n_tokens,
        'generate_s': round(generate_s, 3), 'generate_seqs_per_s': round(n / generate_s), 'generate_tokens_per_s': round(n_tokens / generate_s),
        'make_corpus_s': round(make_s, 3), 'corpus_s': round(corpus_s, 3),
        'corpus_seqs_per_s': round(n / corpus_s), 'corpus_tokens_per_s': round(corpus_tokens / corpus_s),
        'load_pack_s': round(load_pack_s, 3), 'packed_rows_128': int(rows.shape[0]),
        'reference_s': round(reference_s, 3), 'reference_tokens': ref_tokens,
        'speedup_vs_reference': round(reference_s / generate_s, 2),
        'corpus_speedup_vs_reference': round(reference_s / corpus_s, 2),
        'python': sys.version.split()[0],
    }))


if __name__ == '__main__':
    main()
