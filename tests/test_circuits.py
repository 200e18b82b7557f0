"""Tests of `saenb.circuits`: attribution against exact ablation where the path between two hooks is linear (a planted
edge between hand-built SAEs), `saenb_circuits` end to end on a tiny model, its one-line errors with no output left
behind, and the page offline in headless Chromium (Debian's `chromium` with the `playwright` package; skipped with the
reason when either is missing)."""
import json, os, re, shutil
from pathlib import Path
import pandas as pd, pytest, torch
from conftest import run, assert_fails

os.environ.setdefault('OMP_NUM_THREADS', '1')
from saenb.grammars import get_language
from saenb.data import Tokenizer, make_corpus
from saenb.model import GPTConfig, build_model, save_model
from saenb.cache import cache_activations, ActivationStore, store_sequences, capture
from saenb.sae import make_sae
import saenb.sae_io  # noqa: F401 (adds SAE.save)
from saenb.circuits import (latent_attributions, target_attributions, ablation_check, check_summary, grammar_target,
                            token_attributions)

H0, H1 = '0_residpost', '1_residpost'
D = 16   # the tiny model's width


def relu_sae(d_in:int, W_enc:torch.Tensor, W_dec:torch.Tensor, b_enc:torch.Tensor):
    "A ReLU SAE with the given weights (no decoder bias)."
    sae = make_sae('relu', d_in, d_sae=W_dec.shape[0], sparsity_coeff=0.1)
    with torch.no_grad():
        sae.W_enc.copy_(W_enc); sae.W_dec.copy_(W_dec); sae.b_enc.copy_(b_enc); sae.b_dec.zero_()
    return sae.eval()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "An untrained 2-layer GPT of width 16 saved with its Dyck tokenizer, its stores at two hooks, a TopK SAE per hook."
    d = tmp_path_factory.mktemp('circ')
    lang = get_language('dyck', max_len=12, max_depth=4)
    corpus = make_corpus(lang, 240, seed=0)
    cfg = GPTConfig(n_layers=2, d_model=D, n_heads=2, d_mlp=32, n_ctx=16, d_vocab=corpus.tokenizer.vocab_size)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    save_model(model, cfg, d/'gpt', tokenizer=corpus.tokenizer, language=lang)
    cache_activations(model, corpus, [H0, H1], d/'acts', device='cpu', progress=False)
    for i, h in enumerate((H0, H1)): make_sae('topk', D, d_sae=32, k=4, seed=i).save(d/f'sae_{h}')
    make_sae('topk', 8, d_sae=32, k=4).save(d/'sae_narrow')
    model.saenb_tokenizer = corpus.tokenizer
    return dict(dir=d, model=model, tok=corpus.tokenizer, lang=lang, store=ActivationStore(d/'acts'/H0))


def test_attribution_is_exact_on_a_planted_linear_path(tiny):
    """Between `0_residpost` and `1_residpre` the model is the identity, and the SAEs are linear where they are read: the
    downstream ReLU latents' bias keeps them active, so zeroing an upstream latent moves each exactly as attribution
    predicts. Down latent 2 reads up latent 5's direction with weight 3 (the planted edge); the others read weakly."""
    model, tok = tiny['model'], tiny['tok']
    ids = store_sequences(tiny['store'], tok.bos_id, tok.pad_id, 32)
    E = torch.eye(D)
    up = relu_sae(D, E[:8].T, E[:8], torch.zeros(8))                 # z_i = relu(x_i), decoder e_i
    g = torch.Generator().manual_seed(0)
    W = 0.3 * torch.randn(D, 4, generator=g); W[5, 2] = 3.   # down latent j reads 0.3 * noise, plus 3 x_5 for j = 2
    down = relu_sae(D, W, torch.randn(4, D, generator=g), torch.full((4,), 100.))  # pre-activations stay positive
    attr = latent_attributions(model, ids, (H0, up), ('1_residpre', down), latents=[0, 1, 2, 3], batch_size=8)
    x = capture(model, ids, [H0])[H0]
    keep = ~torch.isin(ids, torch.tensor([tok.bos_id, tok.pad_id]))
    z = torch.relu(x[..., :8]) * keep[..., None]
    torch.testing.assert_close(attr.weights, (z.sum((0, 1))[:, None] * W[:8]).float(), rtol=1e-4, atol=1e-3)
    chk = ablation_check(model, ids, (H0, up), attr, down, n_edges=12, batch_size=8)
    assert (chk.iloc[0].up_latent, chk.iloc[0].down_latent) == (5, 2)      # the strongest edge is the planted one
    torch.testing.assert_close(torch.tensor(chk.actual.to_numpy(float)), torch.tensor(chk.predicted.to_numpy(float)),
                               rtol=1e-3, atol=1e-3)
    s = check_summary(chk)
    assert s['within_tolerance'] == 1 and s['correlation'] > 0.9999 and s['sign_agreement'] == 1


def test_logit_attribution_is_exact_where_the_path_is_linear(tiny):
    "From the final layer norm's output the logits are linear: attribution to the summed logit equals the ablation."
    model, tok, lang = tiny['model'], tiny['tok'], tiny['lang']
    ids = store_sequences(tiny['store'], tok.bos_id, tok.pad_id, 32)
    g = torch.Generator().manual_seed(1)
    sae = relu_sae(D, torch.randn(D, 24, generator=g) / 4, torch.randn(24, D, generator=g), torch.zeros(24))
    where, _ = grammar_target(lang, tok, ids)
    attr = target_attributions(model, ids, ('ln_f', sae), where, kind='logit', batch_size=8)
    chk = ablation_check(model, ids, ('ln_f', sae), attr, n_edges=10, batch_size=8)
    assert len(chk) == 10 and set(chk.down_latent) == {-1}
    torch.testing.assert_close(torch.tensor(chk.actual.to_numpy(float)), torch.tensor(chk.predicted.to_numpy(float)),
                               rtol=1e-3, atol=1e-3)
    per = token_attributions(model, ids[0], ('ln_f', sae), kind='logit')   # summed, the context's own attributions
    one = target_attributions(model, ids[:1], ('ln_f', sae), torch.ones_like(ids[:1], dtype=torch.bool), kind='logit')
    assert abs(per.attribution.sum() - one.weights.sum().item()) < 1e-3 * max(1., abs(one.weights.sum().item()))


def cli_args(t, out, **over):
    d = t['dir']
    args = {'model': d/'gpt', 'saes': f"{H0}={d/f'sae_{H0}'},{H1}={d/f'sae_{H1}'}", 'data': d/'acts', 'out': out,
            'n_seqs': 16, 'n_down': 6, 'n_edges': 40, 'n_check': 6, 'n_curve': 8}
    args.update(over)
    return [x for k, v in args.items() if v is not None for x in (f'--{k}', v)] + ['--quiet']


@pytest.fixture(scope='module')
def written(tiny):
    out = tiny['dir']/'circuit'
    r = run('saenb_circuits', *cli_args(tiny, out, links=f"{H1}=../site1/browser.html"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_writes_edges_validation_and_page(written):
    out, summary = written
    assert sorted(p.name for p in out.iterdir()) == ['circuit.html', 'edges.parquet', 'validation.json']
    e = pd.read_parquet(out/'edges.parquet')
    assert {'up_hook', 'up_latent', 'down_hook', 'down_latent', 'weight', 'up_concept', 'down_concept'} <= set(e.columns)
    assert set(e.down_hook) == {H1, 'logits'} and set(e.up_hook) == {H0, H1}
    val = json.loads((out/'validation.json').read_text())
    assert set(val['checks']) == {f'{H0}->{H1}', f'{H0}->logits', f'{H1}->logits'}
    assert {'correlation', 'within_tolerance'} <= set(val['checks'][f'{H0}->{H1}'])
    assert set(val['curves']) == {H0, H1} and val['judgement'][H0]['mechanism'] == ['bracket', 'depth']
    assert summary['hooks'] == [H0, H1] and summary['out'] == str(out) and summary['language'] == 'dyck'


@pytest.mark.parametrize('over, needle', [
    (dict(saes=None), '--saes required'),
    (dict(saes=f'9_residpost=SAE0'), "hook '9_residpost' is not a hook of this model"),
    (dict(saes=f'{H0}=NARROW'), 'takes activations of width 8, but the model'),
    (dict(saes=f'{H0}=MISSING'), 'no SAE directory at'),
    (dict(saes=f'{H0}'), 'is not HOOK=DIR'),
    (dict(data='MISSING'), 'no activation store at'),
    (dict(model='MISSING'), 'no model directory at'),
    (dict(target='prob'), '--target must be logprob or logit'),
    (dict(links='2_residpost=x.html'), '--links names hook(s)'),
])
def test_bad_input_exits_2_and_writes_nothing(tiny, tmp_path, over, needle):
    d = tiny['dir']
    subst = {'SAE0': str(d/f'sae_{H0}'), 'NARROW': str(d/'sae_narrow'), 'MISSING': str(tmp_path/'nowhere')}
    over = {k: (re.sub('|'.join(subst), lambda m: subst[m.group()], v) if isinstance(v, str) else v)
            for k, v in over.items()}
    r = run('saenb_circuits', *cli_args(tiny, tmp_path/'out', **over))
    assert_fails(r, 'saenb_circuits', needle)
    assert list(tmp_path.iterdir()) == []   # no output, no lock file


CHROMIUM = os.environ.get('SAENB_CHROMIUM', shutil.which('chromium') or '/usr/bin/chromium')

def test_page_opens_offline_in_chromium(written, tmp_path):
    """The circuit graph renders with the network blocked and without JavaScript errors; the tables' latents link to
    the feature browser (`browser.html#latent=N`, or the page `--links` gave), and clicking a latent opens its page."""
    if not Path(CHROMIUM).exists(): pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is missing: pip install playwright (no browser download)")
    out = shutil.copytree(written[0], tmp_path/'circuit')
    (out/'browser.html').write_text('<!doctype html><title>browser</title>')   # stands for saenb_browser's page
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=['--no-sandbox', '--disable-gpu'])
        try:
            page, errors, requests = b.new_page(viewport={'width': 1300, 'height': 900}), [], []
            page.route('**/*', lambda r: r.continue_() if r.request.url.startswith(('file:', 'data:', 'blob:'))
                       else (requests.append(r.request.url), r.abort()))
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
            page.goto((out/'circuit.html').as_uri())
            page.wait_for_selector('.plotly-graph-div .main-svg', timeout=20_000)
            assert page.locator('.plotly-graph-div').count() == 3          # graph, ablation check, ablation curves
            hrefs = page.eval_on_selector_all('table a', 'as => as.map(a => a.getAttribute("href"))')
            assert any(re.fullmatch(r'browser\.html#latent=\d+', h) for h in hrefs), hrefs[:5]
            assert any(re.fullmatch(r'\.\./site1/browser\.html#latent=\d+', h) for h in hrefs), hrefs[:5]
            assert all(re.fullmatch(r'(\.\./site1/)?browser\.html#latent=\d+', h) for h in hrefs), hrefs[:5]
            assert not errors, errors
            assert not requests, f"the page fetched {requests}: it must work offline"
            first = page.locator('.plotly-graph-div').first.locator('.scatterlayer .trace').last.locator('.point').first
            box = first.bounding_box()
            page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
            page.mouse.click(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
            page.wait_for_url(re.compile(r'.*/circuit/browser\.html#latent=\d+$'), timeout=10_000)
        finally: b.close()
