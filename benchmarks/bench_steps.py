"""Benchmark: the training step of each TopK-family architecture against TopK's, at the same width, k and batch.

Trains each architecture of `--archs` on the same synthetic activations (sparse nonnegative combinations of 4*d random
unit directions), in the precision `saenb_train_sae` picks on this CPU (bf16 autocast where the CPU has bf16 matrix
units, else fp32; `--precision` to force one), and times its full optimizer step (loss, backward, Adam,
`after_step`). The architectures are interleaved in 5 rounds of 6 timed steps each, so a busy machine slows them alike;
the figure is the median step. Prints ONE JSON line: milliseconds per step and the ratio of each to the first.

    python benchmarks/bench_steps.py [--d_in 256] [--d_sae 2048] [--k 16] [--batch 4096]
                                     [--archs topk,batchtopk,matryoshka] [--precision auto|bf16|fp32]
"""
import argparse, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, emit, training_precision


def step_fn(arch:str, X:torch.Tensor, d_sae:int, k:int, dtype:torch.dtype):
    "A closure doing one optimizer step of a fresh `arch` SAE on `X`."
    from saenb.sae import make_sae
    kw = dict(k=k) if arch != 'matryoshka' else dict(k=k, prefixes=[d_sae // 8, d_sae // 4, d_sae // 2, d_sae])
    sae = make_sae(arch, X.shape[1], d_sae=d_sae, seed=0, **kw)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    amp = dict(device_type='cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    def step(i):
        with torch.autocast(**amp): o = sae.loss(X, step=i, total_steps=1000)
        o['loss'].backward(); sae.before_step(); opt.step(); opt.zero_grad(set_to_none=True)
        with torch.no_grad(): sae.after_step(o, i)
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--d_in', type=int, default=256); ap.add_argument('--d_sae', type=int, default=2048)
    ap.add_argument('--k', type=int, default=16); ap.add_argument('--batch', type=int, default=4096)
    ap.add_argument('--archs', default='topk,batchtopk,matryoshka')
    ap.add_argument('--rounds', type=int, default=5); ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--precision', default='auto', choices=['auto', 'bf16', 'fp32'])
    a = ap.parse_args()
    dtypes = {'bf16': torch.bfloat16, 'fp32': torch.float32}
    precision, dtype = training_precision() if a.precision == 'auto' else (a.precision, dtypes[a.precision])
    from saenb.train_sae import retain_freed_memory
    retain_freed_memory()   # as training does: no fresh pages for each step's large tensors
    g, d = torch.Generator().manual_seed(0), a.d_in
    D = torch.randn(4 * d, d, generator=g); D /= D.norm(dim=1, keepdim=True)
    on = torch.rand(a.batch, 4 * d, generator=g) < 16 / (4 * d)
    codes = on * torch.empty(a.batch, 4 * d).exponential_(generator=g)
    X = codes @ D
    archs = a.archs.split(',')
    steps, t = {x: step_fn(x, X, a.d_sae, a.k, dtype) for x in archs}, {x: [] for x in archs}
    for r in range(a.rounds):
        for x in archs:
            steps[x](r * (a.steps + 1))   # one untimed step first
            for i in range(a.steps):
                t0 = time.perf_counter(); steps[x](r * (a.steps + 1) + i + 1); t[x].append(time.perf_counter() - t0)
    ms = {x: 1000 * float(np.median(v)) for x, v in t.items()}
    emit({'bench': 'steps', 'device': device_name('cpu'), 'd_in': a.d_in, 'd_sae': a.d_sae, 'k': a.k, 'batch': a.batch,
          'precision': precision,
          'step_ms': {x: round(v, 2) for x, v in ms.items()},
          'ratio': {x: round(v / ms[archs[0]], 3) for x, v in ms.items()}})


if __name__ == '__main__': main()
