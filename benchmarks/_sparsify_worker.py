"""Train one EleutherAI sparsify TopK SAE on an activation file and print one JSON line (run inside sparsify's own
virtual environment, `_common.sparsify_python`).

Called by `sae_vs_saelens.py`; not part of saenb. Usage:
    python _sparsify_worker.py ACTS.npy VAL.npy D_SAE K BATCH N_TOKENS LR SEED [OPTIMIZER [DEVICE [SAVE_DIR]]]

sparsify's `Trainer` reads a language model's activations through hooks; what it does with one batch of them is its
inner step, which this script runs on the file's rows (`loss_fn='fvu'`, one micro-batch, no gradient accumulation):
before the first step `b_dec` is set to the batch's mean; each step sets the decoder rows to unit norm, runs
`SparseCoder.forward` (its fused TopK encoder and `embedding_bag` decoder; the Triton decoder on a GPU) with the batch's
total variance, backpropagates the FVU, removes the decoder gradient parallel to its rows
(`remove_gradient_parallel_to_decoder_directions`), steps the optimizer and updates the fired-latent bookkeeping.
AuxK is off, as in its default (`auxk_alpha=0`). OPTIMIZER is `adam` (default: torch's Adam, the branch it takes without
bitsandbytes) or `signum` (its default: schedule-free sign descent); the learning rate is held at LR (its Adam
schedule warms up over 1,000 steps, longer than these runs). Prints `train_seconds`, `tokens_per_s`, `fvu` and `l0`
of the eval-mode codes on VAL, and the training FVU of the first and last steps. With SAVE_DIR, the SAE is saved there
by its own `save_to_disk`, beside `val_recon.npy`, its reconstruction of VAL (tests/test_sae_interop.py loads both).
"""
import json, os, sys, time
import numpy as np, torch
from _peer_data import load, batches, fvu

acts_path, val_path, d_sae, k, batch, n_tokens, lr, seed = sys.argv[1:9]
optimizer = sys.argv[9] if len(sys.argv) > 9 else 'adam'
device = sys.argv[10] if len(sys.argv) > 10 else 'cpu'
save_dir = sys.argv[11] if len(sys.argv) > 11 else None
# its Triton decoder on a GPU only (installed with a CUDA torch, it is chosen at import and fails on CPU tensors)
os.environ['SPARSIFY_DISABLE_TRITON'] = '0' if device.startswith('cuda') else '1'
from sparsify import SparseCoder, SparseCoderConfig

d_sae, k, batch, n_tokens, lr, seed = int(d_sae), int(float(k)), int(batch), int(n_tokens), float(lr), int(seed)
torch.manual_seed(seed)
acts, val = load(acts_path, val_path, device)
d_in = acts.shape[1]
sae = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k), device=device, dtype=torch.float32)
if optimizer == 'adam': opt = torch.optim.Adam(sae.parameters(), lr=lr)
elif optimizer == 'signum':
    from schedulefree import ScheduleFreeWrapper
    from sparsify.sign_sgd import SignSGD
    opt = ScheduleFreeWrapper(SignSGD(sae.parameters(), lr=lr), momentum=0.95); opt.train()
else: raise SystemExit(f"unknown optimizer {optimizer!r}: adam or signum")

n_steps = n_tokens // batch
since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
did_fire = torch.zeros(d_sae, dtype=torch.bool, device=device)
sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
sync(); t0 = time.perf_counter()
AUXK_ALPHA = 0.0   # its TrainConfig's default: no AuxK
for step, x in zip(range(n_steps), batches(acts, batch, seed, device)):
    if step == 0: sae.b_dec.data = x.mean(0)
    sae.set_decoder_norm_to_unit_norm()
    total_variance = (x - x.mean(0)).pow(2).sum()
    out = sae(x=x, y=x, dead_mask=None, total_variance=total_variance)
    did_fire[out.latent_indices.flatten()] = True
    fvu_step = float(out.fvu.detach())   # the trainer's running average reads it every step
    if step == 0: first_fvu = fvu_step
    (out.fvu + AUXK_ALPHA * out.auxk_loss + out.multi_topk_fvu / 8).backward()   # its trainer's loss
    sae.remove_gradient_parallel_to_decoder_directions()
    opt.step(); opt.zero_grad()
    with torch.no_grad():
        since_fired += len(x); since_fired[did_fire] = 0; did_fire.zero_()
sync(); dt = time.perf_counter() - t0
if optimizer == 'signum': opt.eval()   # schedule-free: evaluate at the averaged weights, as its trainer saves them
sae.eval()
with torch.no_grad():
    sae.set_decoder_norm_to_unit_norm()
    rec, l0 = [], []
    for v in val.split(4096):
        enc = sae.encode(v)
        rec.append(sae.decode(enc.top_acts, enc.top_indices)); l0.append((enc.top_acts > 0).sum(-1).float())
    rec = torch.cat(rec)
if save_dir:
    sae.save_to_disk(save_dir); np.save(f'{save_dir}/val_recon.npy', rec.cpu().numpy())
print(json.dumps({'train_seconds': dt, 'tokens_per_s': n_steps * batch / dt, 'fvu': fvu(rec, val),
                  'l0': torch.cat(l0).mean().item(), 'optimizer': optimizer, 'steps': n_steps,
                  'first_train_fvu': first_fvu, 'last_train_fvu': fvu_step}))
