"""Benchmark: where AuxK's selection (`topk_positive`) should stop reading whole rows and read only the chosen columns.

The kernels (`saenb/csrc/kernels.c`, `column_set`) read only the columns AuxK chooses among (a step's dead latents)
where they are at most 1 / FEW_COLS of the row, and each row whole above that. This script builds the kernels twice,
once forced to read whole rows and once forced to read the columns, and times on each build (the Python wrapper
included, as a training step calls it), on the same bf16 rows (`--tokens` x `--width`, normal values less `--shift`,
so that few are positive, as dead latents' pre-activations are), for each number of columns in `--columns`,
`topk_positive` alone and `topk_blocks` taking each row's top `--top` over all columns in the same pass (its `aux`, a
TopK step's fused selection). The two alternate in `--rounds` rounds of `--reps` calls,
the median round kept; both give the same entries, which the script checks. Prints ONE JSON line: milliseconds per call
of each way at each column count, the whole rows' over the columns', and the smallest column count at which the whole
rows were faster.
"""
import argparse, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit
from bench_kernels import kernels_as, timed


def build(force_columns:bool) -> dict:
    "saenb's kernels built to read the chosen columns always (True) or whole rows always (False)."
    from saenb.kernels import kernel_source, kernels_of
    src = f"#define FEW_COLS {0 if force_columns else 1 << 30}\n" + kernel_source()
    if (fns := kernels_of(src, 'saenb_kernels_columns')) is None:
        raise SystemExit("no C compiler: saenb's kernels cannot be built here")
    return fns


def leaves(out:tuple) -> list:
    "The tensors of `topk_positive`'s output, `(rows, cols, vals)`, or of `topk_blocks`' with `aux`."
    return [t for part in out for t in (part if isinstance(part, tuple) else (part,))]


def on(fns:dict, f):
    "`f` calling saenb's functions on kernels `fns`."
    def g():
        with kernels_as(fns): return f()
    return g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tokens', type=int, default=4096); ap.add_argument('--width', type=int, default=2048)
    ap.add_argument('--columns', default='1,16,64,128,256,512', help='column counts to time, comma-separated')
    ap.add_argument('--aux_k', type=int, default=64); ap.add_argument('--top', type=int, default=32)
    ap.add_argument('--shift', type=float, default=1.0)
    ap.add_argument('--rounds', type=int, default=7); ap.add_argument('--reps', type=int, default=20)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(a.tokens, a.width, generator=g) - a.shift).bfloat16()
    from saenb.kernels import topk_positive, topk_blocks
    from saenb.train_sae import retain_freed_memory
    retain_freed_memory()   # as training does: each call's outputs in memory already mapped, not fresh pages
    ways = {'columns': build(True), 'whole': build(False)}
    rec = {'bench': 'auxk_columns', 'device': device_name('cpu'), 'tokens': a.tokens, 'width': a.width,
           'aux_k': a.aux_k, 'top': a.top, 'shift': a.shift, 'rounds': a.rounds, 'reps': a.reps}
    for top in (0, a.top):
        res, even = {}, None
        for nc in (int(c) for c in a.columns.split(',')):
            cols = torch.randperm(a.width, generator=g)[:nc]
            def select(k=min(a.aux_k, nc), cols=cols, top=top):   # AuxK's entries, and the top-k with `top`
                if not top: return topk_positive(x, k, cols)
                out = (x.new_empty(len(x) * top), torch.empty(len(x) * top, dtype=torch.int64))
                return topk_blocks(x[None], [top], out, aux=([cols], [k], len(x)))
            calls = {w: on(fns, select) for w, fns in ways.items()}
            same = all(torch.equal(p, q) for p, q in zip(*(leaves(c()) for c in calls.values())))
            assert same, f"{nc} columns: the two builds' entries differ"
            t = timed(calls['columns'], calls['whole'], a.rounds, a.reps)
            res[nc] = {'columns': t['kernel'], 'whole': t['reference'], 'whole_over_columns': t['speedup']}
            if even is None and t['speedup'] < 1: even = nc
        rec['with_top' if top else 'alone'] = {'ms': res, 'whole_faster_from': even}
    emit(rec)


if __name__ == '__main__': main()
