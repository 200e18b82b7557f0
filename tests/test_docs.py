"""The documentation site: `.ci/docs` (nbdev_docs with Quarto; here `.ci/docs.py`, since Quarto cannot be installed on
our machines) renders every notebook to a page as nbdev's site would: API entries without their `show_doc` cells and
with real source links, math typeset offline, code that wraps, a sidebar and a table of contents, and search. The pages
are opened in Chromium with the network blocked.

Rendering runs every notebook again (about two minutes of the suite on 2 cores, on top of `nbdev_test`), so by default
the site is built from six notebooks that between them have every kind of content the checks look at (math, plots, an
inlined feature browser, wide tables, widgets, API entries with patched methods); `SAENB_DOCS=all` builds and checks
every notebook's page, as `.ci/run` does after the README's test command."""
import ast, functools, html, importlib, importlib.util, os, re, shutil, subprocess, sys
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).parents[1]
ALL = sorted(p.stem for p in (ROOT/'nbs').glob('*.ipynb'))
QUICK = ('index', '00_utils', '01_grammars', '06_sae', '06a_kernels', '09_browser')
NBS = ALL if os.environ.get('SAENB_DOCS') == 'all' else [n for n in ALL if n in QUICK]
PLOTS = {'01_grammars', '02_data', '08_eval', '10_sweep'} & set(NBS)  # pages whose notebooks draw plotly figures
CHROMIUM = os.environ.get('SAENB_CHROMIUM', shutil.which('chromium') or '/usr/bin/chromium')

@functools.cache
def load_renderer():
    "`.ci/docs.py` as a module."
    spec = importlib.util.spec_from_file_location('saenb_docs', ROOT/'.ci'/'docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PATH': path}
    r = subprocess.run([str(ROOT/'.ci'/'docs'), str(out), *([] if NBS == ALL else NBS)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return out

def exported_names(module:str) -> list:
    "Public functions and classes of a saenb module (from its source); a method added with `@patch` as `Class.name`."
    tree = ast.parse((ROOT/'saenb'/f'{module}.py').read_text())
    names = []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.ClassDef)) or n.name.startswith('_'): continue
        patched = isinstance(n, ast.FunctionDef) and any('patch' in ast.unparse(d) for d in n.decorator_list)
        if patched and any('as_prop' in ast.unparse(d) for d in n.decorator_list): continue  # the class documents it
        names.append(f"{ast.unparse(n.args.args[0].annotation)}.{n.name}" if patched else n.name)
    return names

def documented(name:str, module:str, text:str) -> bool:
    "Whether the page `text` has an API entry for `name`: its own, or for a patched method, the method's it overrides."
    ids = set(re.findall(r'<h3 class="api" id="([^"]+)"', text))
    if '.' not in name: return name in ids
    cls, meth = name.split('.')
    mro = getattr(importlib.import_module(f'saenb.{module}'), cls).__mro__
    return meth in ids or any(f'{c.__name__}.{meth}' in ids for c in mro)  # wrapped methods show bare

def code_blocks(text:str) -> list:
    "The source shown in a page's code cells, as text."
    blocks = re.findall(r'<div class="code"><div class="highlight"><pre>(.*?)</pre>', text, re.S)
    return [html.unescape(re.sub(r'<[^>]+>', '', b)).strip() for b in blocks]

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
        assert all(f'href="{n}.html"' in text for n in NBS), f'{nb}: the sidebar misses pages'

def test_source_links_point_at_the_definition(site):
    n = 0
    for nb in NBS:
        text = (site/f'{nb}.html').read_text()
        links = re.findall(r'class="srclink" href="https://github\.com/saenb/saenb/blob/main/([\w/]+\.py)#L(\d+)"'
                           r'[^>]*>source</a>(?:</p>)?\s*<h3 class="api" id="([^"]+)"', text)
        for file, line, name in links:
            lines = (ROOT/file).read_text().splitlines()[int(line) - 1:int(line) + 4]  # decorators come first
            defines = rf'\s*(async )?(def|class) {re.escape(name.split(".")[-1])}\b'
            assert any(re.match(defines, l) for l in lines), (nb, name, line)
            n += 1
    assert n > (300 if NBS == ALL else 200), n  # every API entry of every page has its link

def test_pages_show_what_nbdev_shows(site):
    for nb in NBS:
        text = (site/f'{nb}.html').read_text()
        assert '{target=' not in text and not re.search(r'<script src="https?:', text), nb  # nothing fetched
        blocks = code_blocks(text)
        assert not [b for b in blocks if b.startswith(('show_doc(', '#|')) or 'nbdev_export(' in b], nb
        nbk = nbformat.read(ROOT/'nbs'/f'{nb}.ipynb', as_version=4)
        exported = {' '.join(load_renderer().strip_directives(c.source).split()) for c in nbk.cells
                    if c.cell_type == 'code' and re.match(r'\s*#\|\s*export\s*$', c.source.split('\n')[0])}
        assert not exported & {' '.join(b.split()) for b in blocks}, f'{nb}: an export cell is shown'
    assert (site/'search.js').read_text().startswith('window.SAENB_SEARCH = [')

def test_pages_contain_their_plots(site):
    for nb in PLOTS: assert (site/f'{nb}.html').read_text().count('class="plotly-graph-div"') >= 1, nb
    assert '<iframe srcdoc="' in (site/'09_browser.html').read_text()  # the static feature browser, inlined

def test_directives_are_honoured_as_nbdev_does(tmp_path):
    "A small notebook through the renderer: each directive hides what nbdev's docs hide, and nothing else."
    cells = [nbformat.v4.new_markdown_cell('# A title\n\n> Its description.\n\nProse with math $\\sqrt{d}$.'),
             nbformat.v4.new_code_cell('#| hide\nprint("hidden-out")'),
             nbformat.v4.new_code_cell('#| export\ndef exported_fn(): return 1'),
             nbformat.v4.new_code_cell('#| exports\ndef shown_fn(): return 2'),
             nbformat.v4.new_code_cell('#| echo: false\nprint("echo-out")'),
             nbformat.v4.new_code_cell('#| output: false\nprint("quiet-out")'),
             nbformat.v4.new_code_cell('#| eval: false\nprint("never-run")'),
             nbformat.v4.new_code_cell('from saenb.utils import check\nfrom nbdev.showdoc import show_doc'),
             nbformat.v4.new_code_cell('show_doc(check)'),
             nbformat.v4.new_code_cell('print("bar 10%\\rbar 100%")')]
    path = tmp_path/'t.ipynb'
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    b = load_renderer().build(path)
    body, shown = b['body'], code_blocks(b['body'])
    assert (b['title'], b['desc']) == ('A title', 'Its description.') and 'A title' not in body
    assert 'hidden-out' not in body and 'print("hidden-out")' not in body
    assert 'def exported_fn(): return 1' not in shown and 'def shown_fn(): return 2' in shown
    assert '<h3 class="api" id="exported_fn"' in body  # an exported name without `show_doc` gets one, as in nbdev
    assert 'echo-out' in body and 'print("echo-out")' not in shown
    assert 'print("quiet-out")' in shown and 'quiet-out</pre>' not in body
    assert 'print("never-run")' in shown and 'never-run</pre>' not in body
    assert not [s for s in shown if 'show_doc(' in s or '#|' in s] and '<h3 class="api" id="check"' in body
    line = int(re.search(r'saenb/utils\.py#L(\d+)', body).group(1))
    assert any(l.startswith('def check(') for l in (ROOT/'saenb'/'utils.py').read_text().splitlines()[line-1:line+4])
    assert '<pre class="output stdout">bar 100%</pre>' in body  # a progress bar at its end, as a notebook shows it
    assert r'$\sqrt{d}$' in body and [s[1] for s in b['secs']] == ['exported_fn', 'shown_fn', 'check']

@pytest.fixture
def chromium():
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip("the playwright package is missing: pip install playwright (no browser download)")
    if not Path(CHROMIUM).exists(): pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=['--no-sandbox', '--disable-gpu'])
        try:
            page = b.new_page(viewport={'width': 1280, 'height': 800})
            page.errors = []
            page.on('pageerror', lambda e: page.errors.append(str(e)))
            page.route(re.compile(r'^https?://'), lambda route: route.abort())  # offline
            yield page
        finally: b.close()

def test_pages_read_like_an_nbdev_site_offline(site, chromium):
    page = chromium
    for nb in NBS:
        page.goto((site/f'{nb}.html').as_uri(), wait_until='load')
        page.wait_for_selector('body[data-math=typeset]', timeout=30_000)
        text = page.locator('main').inner_text()
        assert '{target=' not in text and 'show_doc(' not in text, nb
        width = page.evaluate('[document.documentElement.scrollWidth, document.documentElement.clientWidth]')
        assert width[0] <= width[1], f'{nb}: the page overflows sideways ({width})'
        title = load_renderer().page_title(ROOT/'nbs'/f'{nb}.ipynb')[0]
        assert page.locator('nav.sidebar a.active').inner_text() == title, nb
    assert not page.errors, page.errors
    page.goto((site/'06a_kernels.html').as_uri())  # a page with math: typeset from the site's own MathJax
    page.locator('main .MathJax').first.wait_for(timeout=30_000)
    text = page.locator('main').inner_text()
    assert 'Math Processing Error' not in text and not re.search(r'\$\\\w', text), text[:2000]
    assert page.locator('nav.toc a').count() > 5
    page.set_viewport_size({'width': 800, 'height': 800})  # narrow: long code lines wrap inside their blocks
    page.goto((site/'06_sae.html').as_uri())
    page.wait_for_selector('body[data-math=typeset]', timeout=30_000)
    assert page.evaluate('document.documentElement.scrollWidth <= document.documentElement.clientWidth')

def test_search_finds_an_api_entry_and_opens_its_page(site, chromium):
    page = chromium
    page.goto((site/'index.html').as_uri())
    name, nb = ('train_sae', '07_train_sae') if '07_train_sae' in NBS else ('write_site', '09_browser')
    page.fill('#search', name)
    first = page.locator('#results a').first
    first.wait_for(timeout=10_000)
    assert name in first.inner_text()
    page.press('#search', 'Enter')
    page.wait_for_url(re.compile(rf'{nb}\.html#{name}$'), timeout=10_000)
    assert page.locator(f'h3.api#{name}').is_visible()

def test_plots_and_browser_draw_offline_in_chromium(site, chromium):
    page = chromium
    page.goto((site/f'{min(PLOTS)}.html').as_uri())
    page.wait_for_selector('.plotly-graph-div .main-svg', timeout=30_000)
    assert not page.errors, page.errors
    page.goto((site/'09_browser.html').as_uri())
    frame = page.frame_locator('iframe').first
    frame.locator('#hist .main-svg').first.wait_for(timeout=30_000)
    first = frame.locator('#title').inner_text()           # the site's shards are inlined in the frame:
    frame.locator('#next').click()                         # the next latent draws from them
    frame.locator('#title').filter(has_not_text=first).wait_for(timeout=20_000)
    assert frame.locator('#title').inner_text().startswith('Latent ')
