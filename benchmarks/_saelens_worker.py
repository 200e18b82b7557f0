"""Train one SAELens SAE on an activation file and print one JSON line (run inside SAELens's own virtual environment).

Called by `sae_vs_saelens.py`; not part of saenb. Usage:
    python _saelens_worker.py ACTS.npy VAL.npy ARCH D_SAE KNOB BATCH N_TOKENS LR AUTOCAST SEED
        [WIDTHS [CFG_JSON [DEVICE]]]

ARCH is a SAELens training architecture: standard, topk, batchtopk, jumprelu, gated or matryoshka (SAELens's
MatryoshkaBatchTopKTrainingSAE, its nested widths WIDTHS: comma-separated, increasing, ending at D_SAE). KNOB is k for
topk, batchtopk and matryoshka, the L1 coefficient for standard and gated, the L0 coefficient for jumprelu (its default
"step" L0 loss). Every other setting is SAELens's default, unless CFG_JSON (a JSON object of training-config fields)
says otherwise. DEVICE (default cpu; cuda or cuda:N) is where it trains and is evaluated.

Validation is done as SAELens's users see the SAE: it is saved in its inference layout (`save_inference_model`) and
loaded back (`SAE.load_from_disk`), so BatchTopK and Matryoshka SAEs are evaluated as the JumpReLU SAEs SAELens turns
them into (one learned threshold, the EMA of each batch's smallest kept activation, for every latent; the codes then
vary in number per token), and the L0 printed is that of the very codes the FVU is computed with. Prints
`train_seconds`, `tokens_per_s`, `fvu` and `l0` on VAL, `eval_arch` (the inference architecture it was evaluated
as) and `dead_feature_window` (the trainer's, in steps: a latent silent that long is dead, for the TopK family's
AuxK); for BatchTopK and Matryoshka also `batch_fvu` and `batch_l0`, those of the training-mode codes (the top k*BATCH of
each batch of BATCH validation rows, L0 = k), and the learned `topk_threshold`.
"""
import json, sys, tempfile, time
import torch
from _peer_data import load, batches, fvu
from sae_lens import SAE, SAETrainer
from sae_lens.config import SAETrainerConfig, LoggingConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig
from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig

acts_path, val_path, arch, d_sae, knob, batch, n_tokens, lr, autocast, seed = sys.argv[1:11]
widths = [int(w) for w in sys.argv[11].split(',')] if len(sys.argv) > 11 and sys.argv[11] not in ('', '-') else None
extra = json.loads(sys.argv[12]) if len(sys.argv) > 12 else {}
device = sys.argv[13] if len(sys.argv) > 13 else 'cpu'   # cpu, cuda or cuda:N
d_sae, batch, n_tokens, seed = int(d_sae), int(batch), int(n_tokens), int(seed)
torch.manual_seed(seed)
acts, val = load(acts_path, val_path, device)
d_in = acts.shape[1]

def make_sae():
    common = dict(d_in=d_in, d_sae=d_sae, device=device, **extra)
    if arch == 'standard': return StandardTrainingSAE(StandardTrainingSAEConfig(**common, l1_coefficient=float(knob)))
    if arch == 'topk': return TopKTrainingSAE(TopKTrainingSAEConfig(**common, k=int(float(knob))))
    if arch == 'batchtopk': return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**common, k=float(knob)))
    if arch == 'matryoshka':
        assert widths and widths[-1] == d_sae, f"matryoshka needs WIDTHS ending at d_sae={d_sae}, got {widths}"
        return MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(**common, k=float(knob),
                                                                                   matryoshka_widths=list(widths)))
    if arch == 'jumprelu': return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**common, l0_coefficient=float(knob)))
    if arch == 'gated': return GatedTrainingSAE(GatedTrainingSAEConfig(**common, l1_coefficient=float(knob)))
    raise SystemExit(f"unknown architecture {arch!r}: standard, topk, batchtopk, jumprelu, gated or matryoshka")

sae = make_sae()

cfg = SAETrainerConfig(total_training_samples=n_tokens, train_batch_size_samples=batch, lr=float(lr), lr_end=float(lr),
                       autocast=autocast == '1', logger=LoggingConfig(log_to_wandb=False), device=device)
trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=batches(acts, batch, seed, device))
sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
sync(); t0 = time.perf_counter(); sae = trainer.fit(); sync(); dt = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as d:   # the inference SAE SAELens saves (BatchTopK, Matryoshka: JumpReLU)
    sae.save_inference_model(d)
    inf = SAE.load_from_disk(d, device=device).eval()
with torch.no_grad():
    feats = inf.encode(val); rec = inf.decode(feats)
    l0 = (feats != 0).float().sum(-1).mean()
    out = {'train_seconds': dt, 'tokens_per_s': n_tokens / dt, 'fvu': fvu(rec, val), 'l0': l0.item(),
           'eval_arch': inf.cfg.architecture(), 'dead_feature_window': cfg.dead_feature_window}
    if arch in ('batchtopk', 'matryoshka'):   # also the training-mode codes: top k*B of each validation batch of BATCH
        sae.eval()
        feats = torch.cat([sae.encode(v) for v in val.split(batch)]); rec = sae.decode(feats)
        out['batch_fvu'] = fvu(rec, val)
        out['batch_l0'] = (feats != 0).float().sum(-1).mean().item()
        out['topk_threshold'] = float(sae.topk_threshold)
print(json.dumps(out))
