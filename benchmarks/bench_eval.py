"""Realistic-size check of issue 7's acceptance figure: on a Dyck-2 GPT that generates >= 90% grammatical strings,
does some SAE latent track bracket depth or type with AUROC > 0.9?  Also times `concept_scores` and checks the
synthetic-dictionary recovery of a TopK SAE at the true sparsity.

Usage: python benchmarks/bench_eval.py MODEL_DIR CORPUS_DIR OUT_DIR [hooks=0_residpost,1_residpost] [k=8]
"""
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings('ignore')
import numpy as np, torch
from saenb.model import load_model
from saenb.cache import cache_activations, ActivationStore
from saenb.train_sae import train_sae
from saenb.eval import evaluate_sae, write_report, concept_scores, synthetic_activations, recovery_scores

model_dir, corpus_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
hooks = (sys.argv[4] if len(sys.argv) > 4 else '0_residpost,1_residpost').split(',')
k = int(sys.argv[5]) if len(sys.argv) > 5 else 8
torch.set_num_threads(2)
model = load_model(model_dir); model.saenb_path = model_dir
t = time.time()
stores = cache_activations(model, corpus_dir, hooks, out/'acts', n_tokens=200_000, val_tokens=20_000, device='cpu', progress=False)
print('cache_s', round(time.time() - t, 1), flush=True)
results = {}
for h in hooks:
    store = ActivationStore(stores[h])
    t = time.time()
    r = train_sae(store, out/f'sae_{h}_k{k}', arch='topk', k=k, d_sae=8 * store.d, n_tokens=2_000_000, batch_size=1024, lr=1e-3, progress=False)
    print(h, 'sae_train_s', round(time.time() - t, 1), 'ev', round(r.summary['explained_variance'], 4), flush=True)
    t = time.time()
    ev = evaluate_sae(out/f'sae_{h}_k{k}', stores[h], model=model, n_rows=20_000, n_seqs=256, n_gen=200, progress=False)
    write_report(ev, out/f'sae_{h}_k{k}')
    cs = ev['concept_summary']
    results[h] = {'eval_s': round(time.time() - t, 1), **{m: ev['reconstruction'][m] for m in ('explained_variance', 'l0', 'dead_frac')},
                  **{m: ev['downstream'][m] for m in ('ce_clean', 'ce_sae', 'loss_recovered')}, 'grammaticality': ev['grammaticality'],
                  'best_auroc': cs.set_index('concept').best_auroc.to_dict(), 'best_abs_pearson': cs.set_index('concept').get('best_abs_pearson', {}).to_dict() if 'best_abs_pearson' in cs else {}}
    bl = ev['best_latents']
    print(h, json.dumps(results[h]), flush=True)
    print(bl[bl.concept.isin(['depth', 'bracket', 'open'])].round(3).to_string(), flush=True)
# synthetic recovery at the true sparsity
x, D, _ = synthetic_activations(50_000, d=64, n_features=256, p=4 / 256, seed=0)
np.save(out/'synth.npy', x.numpy())
r = train_sae(out/'synth.npy', None, arch='topk', k=4, d_sae=512, n_tokens=2_000_000, batch_size=1024, lr=2e-3, progress=False)
print('synthetic', json.dumps(recovery_scores(r.sae, D)), flush=True)
(out/'bench_eval.json').write_text(json.dumps(results, indent=1, default=str))
# interventions on the first hook's SAE: the latents that best detect some concept values, each zeroed in turn
from saenb.eval import intervention_effect
from saenb.cache import store_sequences
from saenb.sae_io import load_sae
h = hooks[0]
sae = load_sae(out/f'sae_{h}_k{k}'); tok = model.saenb_tokenizer
val = ActivationStore(stores[h], split='validation')
ev_json = json.loads((out/f'sae_{h}_k{k}'/'eval.json').read_text())
picks = {f"{r['concept']}={r['value_name']}": int(r['latent']) for r in ev_json['best_latents'] if r['concept'] in ('depth', 'bracket', 'open')}
picks.update({f"corr:{r['concept']}": int(r['latent']) for r in ev_json['best_corr'] if r['concept'] == 'depth'})
ids = store_sequences(val, tok.bos_id, tok.pad_id, 128)
from saenb.model import load_language
lang = load_language(model_dir)
by_latent = {}
for name, l in picks.items(): by_latent.setdefault(l, []).append(name)  # each latent once, with every value it is best for
for l, names in by_latent.items():
    name = ','.join(names)
    r = intervention_effect(model, h, sae, l, ids, pad_id=tok.pad_id, lang=lang, n_gen=100, tokenizer=tok)
    print('intervention', name, l, json.dumps({k: r[k] for k in ('kl', 'delta_ce', 'grammaticality')}), flush=True)
