"""Train one SAELens SAE on an activation file and print one JSON line (run inside SAELens's own virtual environment).

Called by `sae_vs_saelens.py`; not part of saenb. Usage:
    python _saelens_worker.py ACTS.npy VAL.npy ARCH D_SAE K_OR_L1 BATCH N_TOKENS LR AUTOCAST SEED
"""
import json, sys, time
import numpy as np, torch
from sae_lens import SAETrainer
from sae_lens.config import SAETrainerConfig, LoggingConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

acts_path, val_path, arch, d_sae, k_or_l1, batch, n_tokens, lr, autocast, seed = sys.argv[1:11]
d_sae, batch, n_tokens, seed = int(d_sae), int(batch), int(n_tokens), int(seed)
torch.manual_seed(seed)
torch.set_num_threads(torch.get_num_threads())
acts = torch.from_numpy(np.array(np.load(acts_path, mmap_mode='r'))).float()
val = torch.from_numpy(np.load(val_path)).float()
d_in = acts.shape[1]
if arch == 'topk': sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=int(k_or_l1)))
else: sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=float(k_or_l1)))

def provider():
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(acts), generator=g).split(batch):
            if len(idx) == batch: yield acts[idx]

cfg = SAETrainerConfig(total_training_samples=n_tokens, train_batch_size_samples=batch, lr=float(lr), lr_end=float(lr),
                       autocast=autocast == '1', logger=LoggingConfig(log_to_wandb=False), device='cpu')
trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=provider())
t0 = time.perf_counter(); sae = trainer.fit(); dt = time.perf_counter() - t0
with torch.no_grad():
    feats = sae.encode(val); rec = sae.decode(feats)
    fvu = ((rec - val) ** 2).sum() / ((val - val.mean(0)) ** 2).sum()
    l0 = (feats != 0).float().sum(-1).mean()
print(json.dumps({'train_seconds': dt, 'tokens_per_s': n_tokens / dt, 'fvu': fvu.item(), 'l0': l0.item()}))
