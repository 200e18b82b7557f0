"""The documentation site: `.ci/docs` (nbdev_docs with Quarto; here the nbconvert fallback, since Quarto cannot be installed
on our machines) renders every notebook to a page with its API docs and its plots; the plots and the embedded static
feature browser draw in Chromium with the network blocked."""
import ast, importlib, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]
NBS = sorted(p.stem for p in (ROOT/'nbs').glob('*.ipynb'))
PLOTS = {'01_grammars', '02_data', '08_eval', '10_sweep'}  # pages whose notebooks draw plotly figures
CHROMIUM = os.environ.get('SAENB_CHROMIUM', shutil.which('chromium') or '/usr/bin/chromium')

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PATH': f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([str(ROOT/'.ci'/'docs'), str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return out

def exported_names(module:str) -> list:
    "Public functions and classes of a saenb module (from its source); a method added with `@patch` as `Class.name`."
    tree = ast.parse((ROOT/'saenb'/f'{module}.py').read_text())
    names = []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.ClassDef)) or n.name.startswith('_'): continue
        patched = isinstance(n, ast.FunctionDef) and any('patch' in ast.unparse(d) for d in n.decorator_list)
        if patched and any('as_prop' in ast.unparse(d) for d in n.decorator_list): continue  # a property: the class documents it
        names.append(f"{ast.unparse(n.args.args[0].annotation)}.{n.name}" if patched else n.name)
    return names

def documented(name:str, module:str, text:str) -> bool:
    "Whether the page `text` documents `name`: its own entry, or for a patched method, the entry of the method it overrides."
    if '.' not in name: return f'>{name}<' in text or f'id="{name.lower()}"' in text
    cls, meth = name.split('.')
    mro = getattr(importlib.import_module(f'saenb.{module}'), cls).__mro__
    return f'id="{meth}"' in text or any(f'id="{c.__name__}.{meth}"' in text for c in mro)  # wrapped methods show bare

def test_every_notebook_has_a_page_with_its_api(site):
    for nb in NBS:
        page = site/f'{nb}.html'
        assert page.exists(), f'no page for {nb}'
        text = page.read_text()
        assert 'Traceback (most recent call last)' not in text, nb
        m = re.search(r'#\|\s*default_exp\s+(\w+)', (ROOT/'nbs'/f'{nb}.ipynb').read_text())
        if m:
            missing = [n for n in exported_names(m.group(1)) if not documented(n, m.group(1), text)]
            assert not missing, f'{nb}: no API docs for {missing}'
    assert all(f'href="{nb}.html"' in (site/'index.html').read_text() for nb in NBS)

def test_pages_contain_their_plots(site):
    for nb in PLOTS: assert (site/f'{nb}.html').read_text().count('class="plotly-graph-div"') >= 1, nb
    assert '<iframe srcdoc="' in (site/'09_browser.html').read_text()  # the static feature browser, inlined

def test_plots_and_browser_draw_offline_in_chromium(site, tmp_path):
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is missing: pip install playwright (the package only; no browser download)")
    if not Path(CHROMIUM).exists(): pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=['--no-sandbox', '--disable-gpu'])
        try:
            page = b.new_page()
            errors = []
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.route(re.compile(r'^https?://'), lambda route: route.abort())  # offline
            page.goto((site/'08_eval.html').as_uri())
            page.wait_for_selector('.plotly-graph-div .main-svg', timeout=30_000)
            assert not [e for e in errors if 'require' not in e.lower() and 'mathjax' not in e.lower()], errors
            page.goto((site/'09_browser.html').as_uri())
            frame = page.frame_locator('iframe').first
            frame.locator('#hist .main-svg').first.wait_for(timeout=30_000)
            first = frame.locator('#title').inner_text()           # the site's shards are inlined in the frame:
            frame.locator('#next').click()                         # the next latent draws from them
            frame.locator('#title').filter(has_not_text=first).wait_for(timeout=20_000)
            assert frame.locator('#title').inner_text().startswith('Latent ')
        finally: b.close()
