"""Tests of `saenb.browser` as a researcher uses it: `saenb_browser` on a tiny pipeline, the static page in headless Chromium
(no JavaScript errors, a malicious token shown as text), and the widget in JupyterLab driven by Playwright.

The browser tests need Debian's `chromium` (`apt-get install -y chromium`) and the `playwright` package from PyPI; they skip
with the reason when either is missing. No browser is ever downloaded: Playwright launches `/usr/bin/chromium`."""
import copy, json, os, re, shutil, socket, subprocess, sys, time, uuid
from pathlib import Path
import numpy as np, pytest, torch
from conftest import console

os.environ.setdefault('OMP_NUM_THREADS', '1')
from saenb.browser import FeatureStats, stream_latent_stats, write_site, search_latents
from saenb.cache import ActivationStore, cache_activations
from saenb.data import make_corpus
from saenb.grammars import get_language
from saenb.model import GPTConfig
from saenb.sae_io import load_sae
from saenb.train_gpt import TrainConfig, train_gpt
from saenb.train_sae import train_sae

CHROMIUM = os.environ.get('SAENB_CHROMIUM', shutil.which('chromium') or '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
EVIL = '<img src=x onerror=alert(1)>'


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    "A tiny Dyck-2 pipeline on disk: gpt/, acts/0_residpost, sae/."
    d = tmp_path_factory.mktemp('pipe')
    corpus = make_corpus(get_language('dyck', max_len=16, max_depth=4), 400, seed=0)
    model = train_gpt(corpus, d/'gpt', GPTConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=32),
                      TrainConfig(steps=100, batch_size=32, warmup_steps=10, lr=1e-2, eval_every=1000, ckpt_every=1000), progress=False)
    store = cache_activations(model, corpus, '0_residpost', d/'acts', device='cpu', progress=False)['0_residpost']
    train_sae(store, d/'sae', arch='topk', k=4, d_sae=64, n_tokens=30_000, batch_size=512, lr=3e-3, progress=False)
    return d


def cli(*args):
    return subprocess.run([*console('saenb_browser'), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})


@pytest.fixture(scope='module')
def site(pipeline, tmp_path_factory):
    "The static site written by the command line, with the statistics saved beside the SAE."
    out = tmp_path_factory.mktemp('site')
    r = cli('--sae', pipeline/'sae', '--acts', pipeline/'acts'/'0_residpost', '--model', pipeline/'gpt', '--out', out, '--n_latents', 10, '--quiet')
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_writes_site_and_saves_stats(pipeline, site):
    out, res = site
    assert (out/'index.html').exists() and (out/'browser.html').exists() and res['latents'] == 64
    assert {p.name for p in (pipeline/'sae'/'browser').iterdir()} == {'stats.safetensors', 'latents.parquet', 'concepts.parquet', 'meta.json'}
    fs = FeatureStats.load(pipeline/'sae')
    assert fs.vocab[:3] == ['<pad>', '<bos>', '<eos>'] and 'logit_up_idx' in fs.tensors and 'concept_auroc' in fs.table
    page = (out/'browser.html').read_text()
    assert 'Plotly' in page and len(page) > 1_000_000                     # plotly inlined
    assert re.findall(r'<script src="([^"]+)"', page) == ['latents.js']   # the only file it reads; shards on demand
    shards = sorted(p.name for p in (out/'shards').iterdir())
    assert shards == [f'{k:04d}.js' for k in sorted({j // 64 for j in range(64)})]   # every latent: 64 in one shard
    # the second time the saved statistics are read: no --acts needed, and fast
    r = cli('--sae', pipeline/'sae', '--out', out/'again', '--n_latents', 3, '--quiet')
    assert r.returncode == 0, r.stderr
    assert (out/'again'/'browser.html').exists()


def test_cli_errors_name_the_fix(tmp_path, pipeline):
    r = cli('--out', tmp_path)
    assert r.returncode == 2 and '--sae is required' in r.stderr
    shutil.copytree(pipeline/'sae', tmp_path/'fresh', ignore=shutil.ignore_patterns('browser'))
    r = cli('--sae', tmp_path/'fresh', '--out', tmp_path/'s')
    assert r.returncode == 2 and '--acts is required' in r.stderr


def test_stats_match_dense_computation(pipeline):
    store, sae = ActivationStore(pipeline/'acts'/'0_residpost'), load_sae(pipeline/'sae')
    st = stream_latent_stats(sae, store, top_k=4, n_samples=4, batch_size=333, progress=False)
    Z = sae.encode(store[:]).float()
    assert torch.equal(st['count'], (Z > 0).sum(0))
    torch.testing.assert_close(st['act_max'], Z.max(0).values)
    alive = st['count'] >= 4
    torch.testing.assert_close(st['top_act'][alive], Z.topk(4, dim=0).values.T[alive])
    ok = st['sample_row'] >= 0
    assert (Z[st['sample_row'][ok], torch.arange(64)[:, None].expand_as(ok)[ok]] > 0).all()  # samples are firing rows


def test_search_finds_token(pipeline, site):
    fs = FeatureStats.load(pipeline/'sae')
    hits = search_latents(fs, token=')', n=3)
    j = int(hits.latent.iloc[0])
    assert hits.match.iloc[0] > 0.5 and (fs.tensors['top_token_id'][j] == fs.vocab.index(')')).any()


# ---------------------------------------------------------------- headless Chromium
def _playwright():
    if not Path(CHROMIUM).exists(): pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is missing: pip install playwright (the package only; no browser download)")
    return sync_playwright


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    sync_playwright = _playwright()
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chrome-profile')), executable_path=CHROMIUM,
                                                   headless=True, args=CHROMIUM_ARGS, viewport={'width': 1400, 'height': 1000})
        try: yield ctx
        finally: ctx.close()


def test_static_page_in_chromium(pipeline, tmp_path, browser):
    "The static browser runs without JavaScript errors, switches latents, and shows a markup token as text."
    fs = FeatureStats.load(pipeline/'sae')
    evil = copy.deepcopy(fs)
    evil.meta['vocab'] = [EVIL if t == '(' else '</script>' if t == ')' else t for t in fs.vocab]
    write_site(evil, load_sae(pipeline/'sae'), ActivationStore(pipeline/'acts'/'0_residpost'), tmp_path, n_latents=8)
    page = browser.new_page()
    errors, dialogs, requests = [], [], []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
    page.on('dialog', lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on('request', lambda r: not r.url.startswith(('file:', 'data:', 'blob:')) and requests.append(r.url))
    page.goto((tmp_path/'browser.html').as_uri())
    page.wait_for_selector('#hist .main-svg', timeout=20_000)
    first = page.inner_text('#title')
    texts = page.locator('.tok').all_text_contents()
    assert EVIL in texts and '</script>' in texts, texts[:20]
    assert page.locator('#examples img').count() == 0 and not dialogs
    ticks = page.locator('#logits .ytick text').all_text_contents()   # token labels: markup shown as text
    assert any(EVIL in t for t in ticks) and any('</script>' in t for t in ticks), ticks
    assert page.locator('#logits img').count() == 0 and page.locator('#logit_hist .main-svg').count() > 0
    assert page.locator('#concept_pr .main-svg').count() > 0        # precision and recall of firing, per concept value
    assert page.locator('.modebar-container .modebar').count() == 0   # no mode bar over the charts' titles
    page.click('#next')
    page.wait_for_function(f'document.getElementById("title").textContent !== {json.dumps(first)}', timeout=10_000)
    nxt = int(page.inner_text('#title').split()[1])
    assert page.url.endswith(f'#latent={nxt}')   # a stable address for every latent
    page.goto((tmp_path/'index.html').as_uri())
    page.wait_for_selector('#rows tr')
    assert page.locator('#rows tr').count() == 8 and page.inner_text('#count') == '8 of 8 latents'
    assert not errors, errors
    assert not requests, f"the page fetched {requests}: it must work offline"
    page.close()


def test_site_of_4096_latents_in_chromium(pipeline, tmp_path, browser):
    """Issue 19: the site of a 4,096-latent SAE, written by the command with no cap, in Chromium with the network blocked:
    the index lists every latent, sorting and search change the list, a latent far down opens with all its panels from
    a shard loaded on demand, the examples recolour by a concept and show more, and the console has no error."""
    train_sae(ActivationStore(pipeline/'acts'/'0_residpost'), tmp_path/'sae', arch='topk', k=4, d_sae=4096,
              n_tokens=8192, batch_size=1024, lr=3e-3, progress=False)
    r = cli('--sae', tmp_path/'sae', '--acts', pipeline/'acts'/'0_residpost', '--model', pipeline/'gpt',
            '--out', tmp_path/'site', '--quiet')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res['effects_latents'] == min(256, int((FeatureStats.load(tmp_path/'sae').table['count'] > 0).sum()))
    assert res['effects_s'] > 0 and res['pages_s'] > 0 and res['sequences_s'] > 0   # each part timed on its own
    site = tmp_path/'site'
    assert len(list((site/'shards').glob('*.js'))) == 4096 // 64
    fs = FeatureStats.load(tmp_path/'sae')
    alive = fs.table[fs.table['count'] > 0]
    far = int(alive.latent.max())                       # the highest-numbered latent that fires: far down the index
    assert far >= 64, far                               # not in the first shard
    token = fs.token_str(int(fs.tensors['top_token_id'][far, 0]))
    page = browser.new_page()
    errors, requests, scripts = [], [], []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
    page.on('request', lambda q: (scripts if q.url.startswith('file:') else requests).append(q.url))
    page.goto((site/'index.html').as_uri())
    page.wait_for_selector('#rows tr')
    assert page.locator('#rows tr').count() == 4096 and page.inner_text('#count') == '4096 of 4096 latents'
    first = page.locator('#rows tr td a').first.inner_text()
    assert int(first) == int(fs.table.sort_values(['freq', 'latent'], ascending=[False, True]).latent.iloc[0])
    page.select_option('#dir', 'asc')                   # least frequent first: another first row
    assert page.locator('#rows tr td a').first.inner_text() != first
    page.fill('#search', token)                         # a token: only latents whose top examples fire on it
    hits = page.locator('#rows tr').count()
    assert 0 < hits < 4096 and page.inner_text('#count') == f'{hits} of 4096 latents'
    page.fill('#search', str(far))
    page.locator(f'#rows a[href="browser.html#latent={far}"]').click()
    page.wait_for_function(f'(document.getElementById("title") || {{}}).textContent === "Latent {far}"', timeout=20_000)
    assert {u.split('/')[-1] for u in scripts if '/shards/' in u} == {f'{far // 64:04d}.js'}   # its shard alone
    for panel in ('hist', 'logits', 'logit_hist', 'concepts', 'concept_pr', 'stack'):
        assert page.locator(f'#{panel} .main-svg').count() > 0, panel
    assert page.locator('.note').count() == 6 and page.locator('#examples .example').count() > 0
    assert page.locator('#neighbours button').count() == 10 and page.locator('#correlated button').count() > 0
    assert page.locator('#examples .tok small').count() > 0   # loss effects under the tokens (a frequent latent)
    assert 'loss effect' in ' '.join(page.locator('#examples .tok').evaluate_all('ts => ts.map(t => t.title)'))
    page.select_option('#stack_by', 'depth')           # the histogram split by depth: a legend entry per value
    page.wait_for_function('document.querySelector("#stack .gtitle").textContent === "firings by depth"')
    assert all(t.startswith('depth=') for t in page.locator('#stack .legendtext').all_text_contents())
    shaded = page.locator('#examples .tok').first.evaluate('e => e.style.background')
    page.select_option('#colour', 'depth')              # tokens coloured by a concept, its value on hover
    assert page.locator('#examples .tok').first.get_attribute('title').startswith('depth=')
    assert page.locator('#examples .tok').first.evaluate('e => e.style.background') != shaded
    if page.locator('#examples .extra').count():
        hidden = page.locator('#examples .example:visible').count()
        page.click('#more')
        assert page.locator('#examples .example:visible').count() > hidden
    page.locator('#examples .example-open').first.click()   # the token view: the example's whole sequence
    page.wait_for_selector('#tokview .seqtok', timeout=20_000)
    assert any(u.split('/')[-2:-1] == ['seqs'] for u in scripts)   # read from seqs/ on demand
    toks = page.locator('#tokview .seqtok')
    for i in range(toks.count()):                        # click tokens until one has latents, then open one of them
        toks.nth(i).click()
        if page.locator('#tokview .token-latent').count(): break
    target = page.locator('#tokview .token-latent').first.inner_text().split(' ')[0]
    page.locator('#tokview .token-latent').first.click()
    page.wait_for_function(f'document.getElementById("title").textContent === "Latent {target}"', timeout=20_000)
    page.goto((site/'browser.html').as_uri() + f'#latent={far}')
    page.wait_for_function(f'(document.getElementById("title") || {{}}).textContent === "Latent {far}"', timeout=20_000)
    page.click('#prev')                                 # the previous latent on the site, in the shard before or this one
    page.wait_for_function(f'document.getElementById("title").textContent === "Latent {far - 1}"', timeout=20_000)
    assert not errors, errors
    assert not requests, f"the page fetched {requests}: it must work offline"
    page.close()


NOTEBOOK = r'''
import os; os.environ["OMP_NUM_THREADS"] = "1"
from saenb.browser import FeatureBrowser, open_feature_stats
from saenb.cache import ActivationStore
from saenb.sae_io import load_sae
store = ActivationStore({store!r})
fs = open_feature_stats({sae!r}, store, model={gpt!r})
fb = FeatureBrowser(fs, load_sae({sae!r}), store, latent={latent})
fb
'''

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    "A JupyterLab server on a free localhost port, killed afterwards: (url, root)."
    _playwright()
    port, token, root = _free_port(), uuid.uuid4().hex, tmp_path/'root'
    root.mkdir()
    env = {**os.environ, 'JUPYTER_RUNTIME_DIR': str(tmp_path/'rt'), 'JUPYTER_CONFIG_DIR': str(tmp_path/'cfg'), 'OMP_NUM_THREADS': '1'}
    log = open(tmp_path/'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', f'--port={port}', '--ip=127.0.0.1',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--ServerApp.port_retries=0',
                             f'--LabApp.workspaces_dir={tmp_path/"ws"}', '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
                             '--LabApp.extension_manager=readonly', *(['--allow-root'] if os.geteuid() == 0 else [])],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        for _ in range(120):
            try:
                with socket.create_connection(('127.0.0.1', port), timeout=0.5): break
            except OSError: time.sleep(0.5)
            if proc.poll() is not None: break
        else: pytest.fail(f"JupyterLab did not start: {(tmp_path/'lab.log').read_text()[-2000:]}")
        if proc.poll() is not None: pytest.fail(f"JupyterLab exited: {(tmp_path/'lab.log').read_text()[-2000:]}")
        yield f'http://127.0.0.1:{port}', token, root
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()


def _png_pixels_vary(png:bytes) -> bool:
    "Whether a PNG's decompressed pixel data holds many distinct byte values (a blank page has few)."
    import struct, zlib
    i, data = 8, b''
    while i < len(png):
        n, kind = struct.unpack('>I4s', png[i:i + 8])
        if kind == b'IDAT': data += png[i + 8:i + 8 + n]
        i += 12 + n
    return len(np.unique(np.frombuffer(zlib.decompress(data), np.uint8))) > 32


def test_widget_in_jupyterlab(pipeline, site, jupyterlab, browser, tmp_path):
    "Open a notebook in JupyterLab, run it, see the widget, choose another latent, see the panels change, take a screenshot."
    import nbformat
    url, token, root = jupyterlab
    fs = FeatureStats.load(pipeline/'sae')
    order = fs.table.sort_values('freq', ascending=False).latent.tolist()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK.format(sae=str(pipeline/'sae'), gpt=str(pipeline/'gpt'), store=str(pipeline/'acts'/'0_residpost'), latent=order[0]).strip())])
    nb.metadata = {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}}
    nbformat.write(nb, root/'browse.ipynb')
    page = browser.new_page()
    errors = []
    page.on('pageerror', lambda e: errors.append(str(e)))
    try:
        page.goto(f'{url}/lab/tree/browse.ipynb?token={token}', timeout=60_000)
        page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=60_000)
        page.wait_for_selector('.jp-StatusBar-TextItem:has-text("Idle")', timeout=60_000)  # the kernel is up
        page.locator('.jp-Notebook .jp-Cell').first.click()
        page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
        page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
        page.wait_for_selector('.saenb-browser .latent-title', timeout=90_000)
        title = page.locator('.saenb-browser .latent-title')
        assert title.inner_text() == f'Latent {order[0]}'
        assert page.locator('.saenb-browser .note').count() == 6   # a line under each panel on how to read it
        page.wait_for_selector('.saenb-browser .js-plotly-plot', timeout=20_000)
        assert page.locator('.saenb-browser .js-plotly-plot').count() == 6   # every panel, the stacked histogram too
        before = page.locator('.saenb-browser .examples').inner_html()
        box = page.locator('.saenb-browser input[type="number"]').first
        box.fill(str(order[1])); box.press('Enter')
        page.wait_for_function(f'document.querySelector(".saenb-browser .latent-title").textContent === "Latent {order[1]}"', timeout=20_000)
        assert page.locator('.saenb-browser .examples').inner_html() != before
        # click an example: its sequence fills the token view; click tokens until one has latents, then open one of them
        page.locator('.saenb-browser .example-open').first.click()
        page.wait_for_selector('.saenb-browser .saenb-token', timeout=20_000)
        tokens = page.locator('.saenb-browser .saenb-token')
        for i in range(tokens.count()):
            tokens.nth(i).click()
            page.wait_for_timeout(300)
            if page.locator('.saenb-browser .token-latent').count(): break
        lat = page.locator('.saenb-browser .token-latent').first
        target = lat.inner_text().split(' ')[0]
        lat.click()
        page.wait_for_function(f'document.querySelector(".saenb-browser .latent-title").textContent === "Latent {target}"', timeout=20_000)
        page.wait_for_timeout(500)
        shot = page.screenshot(path=str(tmp_path/'jupyterlab.png'), full_page=True)
        assert len(shot) > 10_000
        assert _png_pixels_vary(shot), "the screenshot is blank"
    except Exception:
        page.screenshot(path=str(tmp_path/'failure.png'))
        print(f"JupyterLab page at failure: {tmp_path/'failure.png'}")
        raise
    finally: page.close()


def test_weight_stats_of_16k_latents_and_50k_vocabulary_under_1gb():
    "Issue 19: the latent-by-vocabulary logit table is computed a block at a time: 16,384 x 50,000 stays under 1 GB."
    code = '''
import resource, torch
torch.manual_seed(0)
from saenb.sae import make_sae
from saenb.browser import weight_stats
sae, W_U = make_sae('topk', d_in=64, d_sae=16384, k=8), torch.randn(64, 50_000)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ws = weight_stats(sae, W_U)
assert ws['logit_hist'].shape == (16384, 40) and (ws['logit_hist'].sum(1) == 50_000).all()
assert torch.equal(ws['logit_up_idx'][:4], (sae.W_dec[:4].float() @ W_U).topk(10, dim=1).indices)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
'''
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, 'OMP_NUM_THREADS': '2'})
    assert r.returncode == 0, r.stderr[-3000:]
    grown = float(r.stdout.split()[-1])
    assert grown < 1024, f"weight_stats grew the process by {grown:.0f} MB"   # a dense table would take 3.3 GB
