"""Benchmark: an SAE's Adam step, PyTorch's fused Adam against saenb's `MemoryOrderAdam`, at several sizes.

An SAE's `W_enc [d_in, d_sae]` is column-major (the transpose of a row-major `[d_sae, d_in]`), which PyTorch's fused
CPU Adam copies to a contiguous tensor and back every step. For each size `d_in x d_sae` this script builds an SAE's
four parameters as `saenb.sae.make_sae` lays them out (with gradients, and the state of a few steps), groups them as
`make_optimizer` does, and times one optimizer step of: `torch.optim.Adam(fused=True)`; `MemoryOrderAdam` checking
layouts only (`reorder_from` above the encoder's size), and `MemoryOrderAdam` stepping the encoder as its row-major
transpose. The three alternate in `--rounds` rounds of `--reps` steps each, and the median round is kept. Prints ONE
JSON line: milliseconds per step of each, at each size.

    OMP_NUM_THREADS=2 python benchmarks/bench_adam.py [--sizes 32x512,128x512,128x1024,256x2048]
"""
import argparse, statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit


def optimizer(kind:str, d:int, S:int) -> torch.optim.Optimizer:
    "An optimizer of `kind` over an SAE's parameters at `d x S`, after a few steps."
    from saenb.sae import make_sae
    from saenb.train_sae import MemoryOrderAdam
    sae = make_sae('topk', d, d_sae=S, k=8)
    groups = [{'params': [sae.W_enc]}, {'params': [sae.W_dec]}, {'params': [sae.b_enc, sae.b_dec]}]
    for p in sae.parameters(): p.grad = torch.randn_like(p)
    opt = (torch.optim.Adam if kind == 'torch' else MemoryOrderAdam)(groups, lr=1e-4, fused=True)
    if kind == 'checks_only': opt.reorder_from = d * S + 1
    if kind == 'reordered': opt.reorder_from = 0
    for _ in range(3): opt.step()
    return opt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', default='32x512,64x512,128x512,128x1024,256x2048')
    ap.add_argument('--rounds', type=int, default=7); ap.add_argument('--reps', type=int, default=300)
    a = ap.parse_args()
    kinds, res = ('torch', 'checks_only', 'reordered'), {}
    for size in a.sizes.split(','):
        d, S = map(int, size.split('x'))
        opts = {k: optimizer(k, d, S) for k in kinds}
        t = {k: [] for k in kinds}
        for _ in range(a.rounds):
            for k, o in opts.items():
                t0 = time.perf_counter()
                for _ in range(a.reps): o.step()
                t[k].append(1000 * (time.perf_counter() - t0) / a.reps)
        res[size] = {'encoder_elements': d * S, **{k: round(statistics.median(v), 4) for k, v in t.items()}}
    emit({'bench': 'adam', 'device': device_name('cpu'), 'torch': torch.__version__, 'rounds': a.rounds,
          'reps': a.reps, 'step_ms': res})


if __name__ == '__main__': main()
