"""Benchmark GPT training: tokens per second and achieved FLOP/s as a fraction of this machine's matmul peak.

Trains the default `GPTConfig` for a fixed number of steps on a freshly generated corpus (nothing is downloaded),
once in fp32 and once under bf16 autocast, measures the machine's matrix-multiply peak in the same run for each
dtype, and prints one JSON line:

    python benchmarks/bench_train_gpt.py --steps 40
    python benchmarks/bench_train_gpt.py --device cuda --steps 200

Achieved FLOP/s counts the usual training estimate (6 FLOPs per matmul parameter per token plus the attention
scores, see `saenb.model.train_flops_per_token`) over all positions of each batch (padding to the longest
sequence in the batch included, since it is computed).
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

import pandas as pd
import torch

from saenb.data import make_corpus
from saenb.model import GPTConfig, train_flops_per_token
from saenb.train_gpt import TrainConfig, train_gpt
sys.path.insert(0, str(Path(__file__).parent))
from _common import matmul_peak


def measure_training(corpus, cfg: GPTConfig, steps: int, batch_size: int, bf16: bool, device: str, warmup: int) -> dict:
    "Train for `steps` steps; tokens/s and FLOP/s over the steps after the first `warmup`."
    tc = TrainConfig(steps=steps, batch_size=batch_size, bf16=bf16, warmup_steps=10, eval_every=steps + 1,
                     ckpt_every=steps + 1)
    with tempfile.TemporaryDirectory() as d:
        train_gpt(corpus, Path(d) / 'bench', cfg, tc, device=device, progress=False, live_plot=False)
        m = pd.read_csv(Path(d) / 'bench' / 'metrics.csv')
    timed = m.iloc[warmup:]
    seconds = timed.elapsed_s.iloc[-1] - m.elapsed_s.iloc[warmup - 1]
    flops = sum(t * train_flops_per_token(cfg, seq_len=max(1, t // batch_size)) for t in timed.tokens)
    return {'tokens_per_s': float(timed.tokens.sum() / seconds), 'achieved_flops_per_s': flops / seconds,
            'seconds': float(seconds), 'final_train_loss': float(m.train_loss.iloc[-1])}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=40, help='training steps per dtype')
    p.add_argument('--warmup', type=int, default=5, help='first steps left out of the timing')
    p.add_argument('--batch_size', type=int, default=128)
    p.add_argument('--lang', default='dyck')
    p.add_argument('--n_seqs', type=int, default=6000, help='sequences in the generated corpus')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: torch default)')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    corpus = make_corpus(args.lang, args.n_seqs, seed=0)
    cfg = GPTConfig(d_vocab=corpus.tokenizer.vocab_size)
    result = {'benchmark': 'train_gpt', 'device': args.device, 'torch': torch.__version__,
              'threads': torch.get_num_threads(), 'lang': args.lang, 'steps': args.steps, 'batch_size': args.batch_size,
              'model': {k: v for k, v in cfg.__dict__.items() if k != 'seed'}}
    for name, dtype, bf16 in [('fp32', torch.float32, False), ('bf16', torch.bfloat16, True)]:
        r = measure_training(corpus, cfg, args.steps, args.batch_size, bf16, args.device, args.warmup)
        r['peak_matmul_flops_per_s'] = matmul_peak(dtype, args.device)
        r['fraction_of_peak'] = r['achieved_flops_per_s'] / r['peak_matmul_flops_per_s']
        result[name] = r
    print(json.dumps(result))


if __name__ == '__main__': main()
