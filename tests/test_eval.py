"End-to-end tests of SAE evaluation: a tiny Dyck-2 pipeline (GPT, cached hook, TopK SAE) trained once per module."
import json, subprocess
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from saenb.grammars import get_language
from saenb.data import make_corpus
from saenb.model import GPTConfig
from saenb.train_gpt import train_gpt, TrainConfig
from saenb.cache import cache_activations, ActivationStore
from saenb.train_sae import train_sae
from saenb.sae import make_sae
from saenb.sae_io import load_sae
from saenb.utils import resolve_precision
from conftest import wandb_offline, run, assert_fails
from saenb.cache import splice, store_sequences
from saenb.train_sae import causal_loss
from saenb.eval import (reconstruction_metrics, downstream_metrics, spliced_grammaticality,
                        concept_scores, concept_summary, probe_ceilings, synthetic_activations, recovery_scores,
                        intervention_effect, evaluate_sae, write_report, _auroc_exact)

HOOK = '0_residpost'

@pytest.fixture(scope='module')
def pipe(tmp_path_factory):
    "Corpus, GPT, store and SAE, trained once (a few seconds)."
    d = tmp_path_factory.mktemp('pipe')
    lang = get_language('dyck', max_len=16, max_depth=4)
    corpus = make_corpus(lang, 1500, seed=0)
    model = train_gpt(corpus, d/'gpt', GPTConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=32),
                      TrainConfig(steps=150, batch_size=32, warmup_steps=10, lr=1e-2, eval_every=1000, ckpt_every=1000), progress=False)
    store = ActivationStore(cache_activations(model, corpus, HOOK, d/'acts', device='cpu', progress=False)[HOOK])
    res = train_sae(store, d/'sae', arch='topk', k=4, d_sae=64, n_tokens=150_000, batch_size=512, lr=3e-3, progress=False)
    ids = store_sequences(store, corpus.tokenizer.bos_id, corpus.tokenizer.pad_id, 64)
    return dict(dir=d, lang=lang, corpus=corpus, model=model, store=store, sae=res.sae, tok=corpus.tokenizer, ids=ids)

@pytest.fixture(scope='module')
def scores(pipe):
    return concept_scores(pipe['sae'], pipe['store'], n_rows=20_000)

def test_splice_restores_hooks(pipe):
    m, ids = pipe['model'], pipe['ids'][:4]
    with torch.no_grad():
        a = m(ids)
        with splice(m, HOOK, torch.zeros_like): b = m(ids)
        c = m(ids)
    assert (a - b).abs().max() > 0.1 and torch.allclose(a, c)
    with pytest.raises(ValueError, match='Valid hooks'):
        with splice(m, 'blocks.9.nope', torch.zeros_like): pass

def test_store_sequences_match_corpus(pipe):
    ids, tok = pipe['ids'], pipe['tok']
    for i in range(5):
        row = ids[i]
        assert row[row != tok.pad_id].tolist() == pipe['corpus'].train[i]['input_ids']

def test_reconstruction_and_downstream(pipe):
    rm = reconstruction_metrics(pipe['sae'], pipe['store'], n_rows=5000)
    assert rm['explained_variance'] > 0.8 and rm['l0'] <= 4 and abs(rm['fvu'] + rm['explained_variance'] - 1) < 1e-9
    assert rm['density'].shape == (64,) and 0 <= rm['dead_frac'] <= 1
    dm = downstream_metrics(pipe['model'], HOOK, pipe['sae'], pipe['ids'], pipe['tok'].pad_id, mean=pipe['store'].stats['mean'])
    assert dm['ce_clean'] <= dm['ce_sae'] + 1e-3 < dm['ce_zero']
    assert 0.5 < dm['loss_recovered'] <= 1.01 and dm['kl_sae'] >= 0
    ident = downstream_metrics(pipe['model'], HOOK, lambda x: x, pipe['ids'], pipe['tok'].pad_id, ablations=False)
    assert abs(ident['kl_sae']) < 1e-5 and abs(ident['ce_sae'] - ident['ce_clean']) < 1e-5

def test_grammaticality_spliced(pipe):
    kw = dict(n=40, tokenizer=pipe['tok'])
    clean = spliced_grammaticality(pipe['model'], HOOK, None, pipe['lang'], **kw)
    zero = spliced_grammaticality(pipe['model'], HOOK, torch.zeros_like, pipe['lang'], **kw)
    assert clean.fraction > 0.5 and zero.fraction < clean.fraction

def test_splices_leave_untrained_positions_alone(pipe):
    "The positions of tokens a store drops (<bos>, <pad>) keep their activation: no SAE was trained on them."
    m, ids, tok = pipe['model'], pipe['ids'], pipe['tok']
    every = tuple(range(m.cfg.d_vocab))
    none_spliced = downstream_metrics(m, HOOK, torch.zeros_like, ids, tok.pad_id, skip_tokens=every, ablations=False)
    assert abs(none_spliced['kl_sae']) < 1e-6
    calls = []
    def spy(x): calls.append(x.shape); return torch.zeros_like(x)
    default = downstream_metrics(m, HOOK, spy, ids, tok.pad_id, ablations=False)
    everywhere = downstream_metrics(m, HOOK, torch.zeros_like, ids, tok.pad_id, skip_tokens=(), ablations=False)
    assert calls and default['kl_sae'] != everywhere['kl_sae']  # <bos> zeroed too changes the output
    kw = dict(n=20, tokenizer=tok)
    clean = spliced_grammaticality(m, HOOK, None, pipe['lang'], **kw)
    skipped = spliced_grammaticality(m, HOOK, torch.zeros_like, pipe['lang'], skip_tokens=every, **kw)
    assert skipped.fraction == clean.fraction

def test_binned_auroc_matches_exact(pipe, scores):
    store, sae = pipe['store'], pipe['sae']
    n = len(store)  # concept_scores scored min(20_000, len(store)) rows
    lab = store.labels(np.arange(n)); z = sae.encode(store[:n])
    keep = lab['depth'] >= 0
    t = scores.table.query("concept == 'depth' and value == 2").set_index('latent').auroc
    for l in [int(t.idxmax()), int(t.idxmin()), 5]:
        assert abs(t[l] - _auroc_exact(z[keep, l], lab['depth'][keep] == 2)) < 0.01

def test_concepts_beat_chance(pipe, scores):
    "Some latent detects a depth value with AUROC > 0.75, and the trained SAE beats an untrained one of the same shape."
    assert scores.table.query("concept == 'depth'").auroc.max() > 0.75
    untrained = make_sae('topk', pipe['store'].d, d_sae=64, k=4); untrained.init_from_data(pipe['store'][:4096])
    s0 = concept_scores(untrained, pipe['store'], n_rows=20_000)
    assert (scores.table.auroc > 0.75).sum() > (s0.table.auroc > 0.75).sum()
    assert scores.best_corr().set_index('concept').abs_pearson['depth'] > s0.best_corr().set_index('concept').abs_pearson['depth']

def test_concept_table_shapes(pipe, scores):
    t = scores.table
    assert {'depth', 'bracket', 'open'} <= set(t.concept) and set(scores.corr.concept) == {'depth', 'match_pos', 'position'}
    assert len(t.query("concept == 'bracket'")) == 2 * 64
    assert t.auroc.between(0, 1).all() and t.f1.between(0, 1).all()
    s = concept_summary(scores)
    assert s.coverage.between(0, 1).all() and {'best_auroc', 'coverage', 'purity'} <= set(s.columns)
    with pytest.raises(ValueError, match='this store has'): concept_scores(pipe['sae'], pipe['store'], concepts=['colour'])

def test_probe_ceiling(pipe):
    pc = probe_ceilings(pipe['store'], n_rows=6000, concepts=['open', 'depth'])
    assert pc.query("concept == 'open'").probe_accuracy.iloc[0] > 0.95
    assert pc.probe_auroc.between(0, 1).all()

def test_synthetic_topk_recovers_dictionary(tmp_path):
    "A TopK SAE at the true sparsity recovers a known dictionary: MMCS > 0.9 (small size)."
    x, D, codes = synthetic_activations(20_000, d=32, n_features=64, p=0.05, seed=0)
    np.save(tmp_path/'x.npy', x.numpy())
    r = train_sae(tmp_path/'x.npy', None, arch='topk', k=3, d_sae=128, n_tokens=300_000, batch_size=512, lr=3e-3, progress=False)
    rec = recovery_scores(r.sae, D)
    assert rec['mmcs'] > 0.9, rec
    assert recovery_scores(torch.randn(128, 32, generator=torch.Generator().manual_seed(5)), D)['mmcs'] < 0.75

def test_synthetic_structure():
    _, _, c = synthetic_activations(5000, n_features=32, hierarchy=3, correlation=0.5, seed=2)
    par, ch = c[:, :8] > 0, c[:, 8:32] > 0
    assert not (ch & ~par.repeat_interleave(3, 1)).any()
    with pytest.raises(ValueError, match='one entry per feature'): synthetic_activations(10, n_features=8, p=[0.1, 0.2])

def test_interventions(pipe, scores):
    m, sae, ids, pad = pipe['model'], pipe['sae'], pipe['ids'], pipe['tok'].pad_id
    null = intervention_effect(m, HOOK, sae, [0, 1], ids, mode='add', value=0., pad_id=pad)
    assert abs(null['kl']) < 1e-6
    alive = np.flatnonzero(reconstruction_metrics(sae, pipe['store'], 5000)['density'] > 0.05)
    effects = [intervention_effect(m, HOOK, sae, int(l), ids, pad_id=pad)['kl'] for l in alive[:4]]
    assert all(e >= 0 for e in effects) and max(effects) > 1e-4
    allz = intervention_effect(m, HOOK, sae, list(range(64)), ids, mode='zero', pad_id=pad, lang=pipe['lang'], n_gen=30, tokenizer=pipe['tok'])
    assert allz['kl'] > max(effects) and 0 <= allz['grammaticality'] <= 1

def test_causal_loss_differentiable_and_zero_cases(pipe):
    m, sae, ids, pad = pipe['model'], load_sae(pipe['dir']/'sae'), pipe['ids'][:6], pipe['tok'].pad_id
    m.requires_grad_(False)
    loss = causal_loss(m, HOOK, sae, ids, pad_id=pad, seed=0)
    loss.backward()
    assert loss.item() > 0 and sae.W_enc.grad.abs().sum() > 0 and sae.W_dec.grad.abs().sum() > 0
    with torch.no_grad():
        assert causal_loss(m, HOOK, sae, ids, alpha=torch.ones(6), pad_id=pad).item() < 1e-8
        assert causal_loss(m, HOOK, sae, torch.stack([ids[0]] * 3)).item() < 1e-8  # identical inputs

def test_evaluate_and_cli(pipe, tmp_path):
    ev = evaluate_sae(pipe['dir']/'sae', pipe['store'].path, model=pipe['dir']/'gpt', n_rows=10_000, n_seqs=32, n_gen=20, progress=False)
    write_report(ev, tmp_path/'rep')
    saved = json.loads((tmp_path/'rep'/'eval.json').read_text())
    assert saved['hook'] == HOOK and 'grammaticality' in saved and saved['concept_summary']
    assert saved['precision'] == resolve_precision('auto')  # the default, recorded resolved
    assert 0 <= saved['faithfulness'] <= 1 and {'sae', 'random', 'residual'} <= set(saved['causal_faithfulness'][0])
    # a second SAE for the sweep; the CLI writes eval.json, report.html and pareto.html
    train_sae(pipe['store'], tmp_path/'sae_k2', arch='topk', k=2, d_sae=64, n_tokens=20_000, batch_size=512, lr=3e-3, progress=False)
    r = subprocess.run(['saenb_eval', '--sae', f"{pipe['dir']/'sae'},{tmp_path/'sae_k2'}", '--acts', str(pipe['store'].path),
                        '--model', str(pipe['dir']/'gpt'), '--out', str(tmp_path/'sweep'), '--n_rows', '5000', '--n_seqs', '16',
                        '--n_gen', '10', '--no_probes', '--quiet', '--precision', 'fp32'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'saenb_eval: precision fp32' in r.stderr, r.stderr
    assert json.loads((tmp_path/'sweep'/'sae_k2'/'eval.json').read_text())['precision'] == 'fp32'
    lines = [json.loads(l) for l in r.stdout.strip().splitlines()]
    assert len(lines) == 2 and all('loss_recovered' in l for l in lines)
    for n in ('sae', 'sae_k2'): assert {'eval.json', 'report.html'} <= {p.name for p in (tmp_path/'sweep'/n).iterdir()}
    assert (tmp_path/'sweep'/'pareto.html').stat().st_size > 1_000_000
    bad = subprocess.run(['saenb_eval', '--sae', str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and '--acts is required' in bad.stderr
    fp16 = run('saenb_eval', '--sae', pipe['dir']/'sae', '--acts', pipe['store'].path, '--out', tmp_path/'f',
               '--precision', 'fp16')
    assert_fails(fp16, 'saenb_eval', 'fp16 runs on CUDA only')
    assert not (tmp_path/'f'/'eval.json').exists()

def test_cli_trains_with_the_causal_term(pipe, tmp_path):
    "saenb_train_sae --causal_coeff trains with the Menon et al. term, logged in history.csv; without a model it says what to pass."
    from conftest import console
    store = pipe['dir']/'acts'/HOOK
    args = ['--acts', str(store), '--arch', 'topk', '--k', '4', '--d_sae', '64', '--n_tokens', str(20 * 256), '--batch_size', '256', '--quiet']
    r = subprocess.run(console('saenb_train_sae') + args + ['--causal_coeff', '0.5', '--model', str(pipe['dir']/'gpt'), '--out', str(tmp_path/'c')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    hist = pd.read_csv(tmp_path/'c'/'history.csv')
    assert hist.causal_loss.notna().all() and (hist.causal_loss > 0).all()
    assert json.loads((tmp_path/'c'/'train_config.json').read_text())['causal_coeff'] == 0.5
    bad = subprocess.run(console('saenb_train_sae') + args + ['--causal_coeff', '0.5', '--out', str(tmp_path/'d')], capture_output=True, text=True)
    assert not (Path(str(pipe['store'].manifest.get('model')))/'config.json').exists()  # the store names no model directory
    assert bad.returncode == 2 and '--model' in bad.stderr and 'Traceback' not in bad.stderr, bad.stderr[-2000:]

def test_ground_truth_metrics_in_eval_json_and_report(pipe, tmp_path):
    "saenb_eval reports k-sparse probing, absorption and the assignment score in eval.json, stdout and the report."
    r = run('saenb_eval', '--sae', pipe['dir']/'sae', '--acts', pipe['store'].path, '--out', tmp_path/'gt',
            '--n_rows', '6000', '--quiet')
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0.5 <= line['assignment_score'] <= 1 and 0 <= line['absorption_rate'] <= 1
    saved = json.loads((tmp_path/'gt'/'eval.json').read_text())
    sp = pd.DataFrame(saved['sparse_probing'])
    assert set(sp.query("probe == 'sparse'").k) == {1, 2, 4, 8, 16} and {'latents', 'residual'} <= set(sp.probe)
    summary = pd.DataFrame(saved['sparse_probing_summary']).set_index('concept')
    assert (summary['k=16'] >= summary['k=1'] - 0.05).all()          # more latents never hurt much
    assert summary.loc['open', 'residual'] > 0.95                       # opening vs closing is linearly there
    a = pd.DataFrame(saved['assignment'])
    assert a.latent.is_unique and len(a) == len(saved['best_latents'])
    ab = pd.DataFrame(saved['absorption'])
    assert {'main_latent', 'miss_rate', 'absorption_rate', 'absorbers', 'context'} <= set(ab.columns)
    page = (tmp_path/'gt'/'report.html').read_text()
    assert '<h2>Feature absorption</h2>' in page and 'k-sparse probing' in page
    no = run('saenb_eval', '--sae', pipe['dir']/'sae', '--acts', pipe['store'].path, '--out', tmp_path/'np',
             '--n_rows', '3000', '--quiet', '--no_probes')
    assert no.returncode == 0 and 'sparse_probing' not in json.loads((tmp_path/'np'/'eval.json').read_text())

def test_sweep_compares_widths_by_concept(pipe, tmp_path):
    "A sweep over widths on a labelled store writes each concept value's split tree to comparisons.json (issue 18)."
    from saenb.sweep import run_sweep
    base = {'acts': str(pipe['store'].path), 'n_tokens': 20_000, 'batch_size': 512, 'lr': 3e-3,
            'saes': {'arch': 'topk', 'k': 4, 'exp_factor': 1}}
    run_sweep(base, {'saes.exp_factor': [1, 4]}, tmp_path/'sw', sequential=True, progress=False)
    cmp_ = json.loads((tmp_path/'sw'/'comparisons.json').read_text())
    (s,) = cmp_['splits']
    assert (s['d_small'], s['d_large']) == (32, 128) and cmp_['stability'] == []
    t = pd.DataFrame(s['splits'])
    assert {'bracket', 'depth', 'open'} <= set(t.concept)
    assert t.n_children.sum() > 0 and all(len(c) == n for c, n in zip(t.children, t.n_children))
    assert s['tree'].count('latent') == len(t)

def test_cli_logs_the_figures_to_weights_and_biases(pipe, tmp_path, monkeypatch):
    "--wandb_project writes one W&B run per SAE evaluated, its figures as the summary."
    from saenb.utils import offline_run
    wandb_offline(monkeypatch, tmp_path)
    r = run('saenb_eval', '--sae', pipe['dir']/'sae', '--acts', pipe['store'].path, '--out', tmp_path/'ev',
            '--n_rows', '3000', '--n_gen', '0', '--quiet', '--no_probes', '--wandb_project', 'p', '--wandb_run_name', 'ev')
    assert r.returncode == 0, r.stderr[-2000:]
    line = json.loads(r.stdout.strip().splitlines()[-1])
    w = offline_run(next((tmp_path/'wandb').glob('offline-run-*')))
    assert w['run']['display_name'] == 'ev'
    assert w['config']['sae'] == str(pipe['dir']/'sae') and abs(w['summary']['fvu'] - line['fvu']) < 1e-6
