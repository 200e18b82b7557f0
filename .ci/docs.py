"""Render saenb's documentation site without Quarto, offline, as `nbdev_docs` would.

Quarto cannot be installed on our machines (its PyPI package downloads the binary at build time), so `.ci/docs` falls
back to this script. It runs each notebook in-process with execnb, as `nbdev_test` does (two notebooks at a time,
cells marked `eval: false` or with a test flag shown and not run), and writes one page per notebook:

- the processing nbdev applies: `hide`, `include: false`, `echo: false` and `output: false` honoured; `export` cells
  hidden (`exports` shown); `show_doc` cells show their output only, with a real `source` link to the module line; the
  first cell's `# title` and `> description` become the page's title;
- the look of an nbdev site: a navigation bar, a sidebar with each notebook's title in pipeline order, a table of
  contents for the page, code that wraps inside its block;
- math typeset offline with the MathJax shipped by the `jupyter-server-mathjax` package, copied next to the pages;
- search across all pages from a small index (`search.js`, loaded with `<script src>` so that it works from
  `file://`).

Usage: `python .ci/docs.py OUT [NOTEBOOK ...]` (names without `.ipynb`; default: all of `nbs/`).
"""
import ast, html, importlib, importlib.util, inspect, json, os, re, shutil, sys, time
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
CFG = ConfigParser(); CFG.read(ROOT/'settings.ini'); CFG = CFG['DEFAULT']
WIDGET = 'application/vnd.jupyter.widget-view+json'
ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
MATHJAX_CDN = re.compile(r'<script src="https?://[^"]*mathjax[^"]*">\s*</script>', re.I)

def directives(src:str) -> dict:
    "A cell's nbdev directives (`#| name: value` lines at its top), as {name: value} in lower case."
    out = {}
    for line in src.splitlines():
        m = re.match(r'\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$', line)
        if m: out[m.group(1).lower()] = m.group(2).lower()
        elif line.strip(): break
    return out

def strip_directives(src:str) -> str:
    return '\n'.join(l for l in src.splitlines() if not re.match(r'\s*#\|', l)).strip()

def page_title(path:Path) -> tuple:
    "The notebook's title and description: its first markdown cell's `# title` and `> description`."
    nb = json.loads(path.read_text())
    md = next((''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown'), '')
    title = re.search(r'^#\s+(.+)$', md, re.M)
    desc = re.search(r'^>\s*(.+)$', md, re.M)
    return (title.group(1).strip() if title else path.stem), (desc.group(1).strip() if desc else '')

def fail(msg:str):
    "Stop with a one-line error and exit code 2."
    print(f'docs: {msg}', file=sys.stderr); sys.exit(2)

def text_of(o) -> str: return ''.join(o) if isinstance(o, list) else str(o)

def skip_flags() -> set: return set(CFG.get('tst_flags', '').split())

def not_run(cell) -> bool:
    "Whether `nbdev_test` leaves this cell unrun: markdown, `eval: false`, a test flag (a heavy study cell), an export."
    if cell.cell_type != 'code': return True
    d = directives(cell.source)
    return 'nbdev_export(' in cell.source or d.get('eval') == 'false' or bool(skip_flags() & d.keys())

def api_names(src:str) -> list:
    "Public names an export cell defines, as `show_doc` names them: `f`, `Class`, and `Class.method` for a `@patch`."
    try: tree = ast.parse(strip_directives(src))
    except SyntaxError: return []
    out = []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or n.name.startswith('_'): continue
        decs = [ast.unparse(d) for d in n.decorator_list]
        if isinstance(n, ast.ClassDef) or not any('patch' in d for d in decs): out.append(n.name)
        elif not any('as_prop' in d for d in decs) and n.args.args and isinstance(n.args.args[0].annotation, ast.Name):
            out.append(f'{n.args.args[0].annotation.id}.{n.name}')
    return out

def add_show_docs(nb):
    "After each export cell, a `show_doc` cell for each name it defines that no `show_doc` cell documents, as in nbdev."
    import nbformat
    done = set(re.findall(r'show_doc\(\s*([\w.]+)', '\n'.join(c.source for c in nb.cells if c.cell_type == 'code')))
    cells = []
    for c in nb.cells:
        cells.append(c)
        if c.cell_type != 'code' or not {'export', 'exports'} & directives(c.source).keys(): continue
        cells += [nbformat.v4.new_code_cell(f'#| echo: false\nfrom nbdev.showdoc import show_doc\nshow_doc({n})')
                  for n in api_names(c.source) if n not in done]
    nb.cells = cells

def execute(path:Path):
    "Run notebook `path` in this process with execnb, as `nbdev_test` does; the executed notebook and its shell."
    import nbformat
    from execnb.shell import CaptureShell
    nb = nbformat.read(path, as_version=4)
    add_show_docs(nb)
    for i, c in enumerate(nb.cells): c.idx_ = i
    import plotly.io as pio
    pio.renderers.default = os.environ.get('PLOTLY_RENDERER', 'notebook')  # plotly.js inlined again, on this page
    shell = CaptureShell(path)
    cwd = os.getcwd(); os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=not_run)
    except Exception as e: raise RuntimeError(f'{path.name}: {shell.prettytb(fname=path)}') from e
    finally: os.chdir(cwd)
    for c in nb.cells: c.pop('idx_', None)
    return nbformat.from_dict(json.loads(json.dumps(nb))), shell

def source_url(name:str, ns:dict):
    "Link to the module line defining `name` (`f`, `Class` or `Class.method`, looked up in the notebook's namespace)."
    obj = ns.get(name.split('.')[0])
    for part in name.split('.')[1:]: obj = getattr(obj, part, None)
    if isinstance(obj, property): obj = obj.fget
    try:
        obj = inspect.unwrap(obj)
        file = Path(inspect.getsourcefile(obj)).resolve()
        rel = file.relative_to(ROOT) if file.is_file() else None
        line = inspect.getsourcelines(obj)[1]
    except (TypeError, OSError, ValueError): return None
    if rel is None: return None
    return f"{CFG['git_url']}/blob/{CFG['branch']}/{rel.as_posix()}#L{line}"

def api_entry(md:str, name:str, ns:dict) -> str:
    "`show_doc`'s markdown for `name` as an API entry: heading marked, a `source` link to the module line defining it."
    md = re.sub(r'\[source\]\([^)]*\)\{[^}]*\}', '', md)  # Quarto's link syntax, and a wrapped method's missing line
    url = source_url(name, ns)
    link = f'<a class="srclink" href="{html.escape(url)}" target="_blank" rel="noopener">source</a>\n\n' if url else ''
    return md2html(re.sub(r'^(#+\s)', lambda m: link + m.group(1), md, count=1, flags=re.M)).replace(
        '<h3 id=', '<h3 class="api" id=', 1)

def md2html(md:str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    return markdown2html_mistune(md)

def stream_text(text:str) -> str:
    "A stream as a notebook shows it: ANSI codes dropped, each line at its last carriage return (a progress bar's end)."
    return '\n'.join(l.rsplit('\r', 1)[-1] for l in ANSI.sub('', text).split('\n'))

def render_output(o, ns:dict, api:str=None) -> str:
    """One output as HTML, the richest of its formats first (a widget, which needs a live kernel, as a note); `api`: the
    name a `show_doc` output documents."""
    kind = o.get('output_type')
    if kind == 'stream':
        text = stream_text(text_of(o.get('text', ''))).strip('\n')
        return f'<pre class="output {o.get("name", "stdout")}">{html.escape(text)}</pre>' if text else ''
    if kind == 'error': return f'<pre class="output error">{html.escape(ANSI.sub("", chr(10).join(o.traceback)))}</pre>'
    data = o.get('data', {})
    if WIDGET in data: return '<p class="widget-note">[an interactive widget: run the notebook in JupyterLab]</p>'
    if 'text/html' in data:  # plotly's figures ask for MathJax 3 from a CDN: they use the page's own instead
        return f'<div class="output html">{re.sub(MATHJAX_CDN, "", text_of(data["text/html"]))}</div>'
    if 'image/svg+xml' in data: return f'<div class="output">{text_of(data["image/svg+xml"])}</div>'
    for mime in ('image/png', 'image/jpeg'):
        if mime in data: return f'<div class="output"><img src="data:{mime};base64,{text_of(data[mime]).strip()}">' \
                                '</div>'
    if 'text/markdown' in data:
        md = text_of(data['text/markdown'])
        if api: return f'<div class="output markdown showdoc">{api_entry(md, api, ns)}</div>'
        return f'<div class="output markdown">{md2html(md)}</div>'
    if 'text/latex' in data: return f'<div class="output">{text_of(data["text/latex"])}</div>'
    if 'application/javascript' in data: return f'<script>{text_of(data["application/javascript"])}</script>'
    if 'text/plain' in data:
        return f'<pre class="output">{html.escape(ANSI.sub("", text_of(data["text/plain"])))}</pre>'
    return ''

def highlight(src:str) -> str:
    from pygments import highlight as hl
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return hl(src, PythonLexer(), HtmlFormatter(cssclass='highlight'))

def is_showdoc(src:str) -> bool:
    lines = [l for l in src.splitlines() if l.strip()]
    return bool(lines) and all(re.match(r'\s*show_doc\(', l) for l in lines)

def render_cell(c, ns:dict, first:bool) -> str:
    "One cell as nbdev's docs show it ('' when hidden); `first`: the first markdown cell, whose title heads the page."
    d = directives(c.source)
    if c.cell_type == 'markdown':
        src = c.source
        if first: src = re.sub(r'^>\s*.+$', '', re.sub(r'^#\s+.+$', '', src, count=1, flags=re.M), count=1, flags=re.M)
        return f'<div class="cell markdown">{md2html(src)}</div>' if src.strip() else ''
    hidden = {'hide', 'default_exp', 'export', 'exporti'} & d.keys() or d.get('include') == 'false'
    if c.cell_type != 'code' or hidden or 'nbdev_export(' in c.source: return ''
    src = strip_directives(c.source)
    echo = d.get('echo') != 'false' and not is_showdoc(src) and src
    parts = [f'<div class="code">{highlight(src)}</div>'] if echo else []
    if d.get('output') != 'false':
        names = iter(re.findall(r'^\s*show_doc\(\s*([\w.]+)', src, re.M))  # one API entry a call, in order
        outs = ''.join(render_output(o, ns, next(names, None) if 'text/markdown' in o.get('data', {}) else None)
                       for o in c.get('outputs', []))
        if outs: parts.append(f'<div class="outputs">{outs}</div>')
    return f'<div class="cell code-cell">{"".join(parts)}</div>' if parts else ''

def render_body(nb, ns:dict) -> str:
    "The page's body: each cell through `render_cell`."
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == 'markdown'), -1)
    return '\n'.join(h for i, c in enumerate(nb.cells) if (h := render_cell(c, ns, i == first)))

def plain(h:str) -> str:
    "Text of an HTML fragment: scripts, styles and tags dropped, whitespace collapsed."
    h = re.sub(r'<(script|style)\b.*?</\1>', ' ', h, flags=re.S)
    h = re.sub(r'</?(span|a|code|em|strong|b|i)\b[^>]*>', '', h)  # inline tags join their text
    return ' '.join(html.unescape(re.sub(r'<[^>]+>', ' ', h)).replace('\u00b6', '').split())

def sections(body:str) -> list:
    "(level, id, heading, api?, text) of each h1-h3 of `body`, with the first 300 characters of text under it."
    ms = list(re.finditer(r'<h([1-3])( class="api")? id="([^"]+)">(.*?)</h\1>', body, re.S))
    ends = [m.start() for m in ms[1:]] + [len(body)]
    return [(int(m.group(1)), m.group(3), plain(m.group(4)), bool(m.group(2)), plain(body[m.end():e])[:300])
            for m, e in zip(ms, ends)]

CSS = """
:root{--primary:#2780e3;--border:#dee2e6;--muted:#6c757d;--code-bg:#f4f5f7}
*{box-sizing:border-box}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#343a40}
a{color:var(--primary);text-decoration:none} a:hover{text-decoration:underline}
header.navbar{position:sticky;top:0;z-index:10;display:flex;align-items:center;gap:24px;height:56px;padding:0 20px;
  background:var(--primary);color:#fff}
header.navbar .brand{color:#fff;font-size:1.25rem;font-weight:500}
.search{position:relative;margin-left:auto}
.search input{width:260px;padding:6px 10px;border:0;border-radius:4px;font-size:.95rem}
#results{position:absolute;right:0;top:38px;width:440px;max-height:70vh;overflow-y:auto;background:#fff;
  border:1px solid var(--border);border-radius:4px;box-shadow:0 4px 16px rgba(0,0,0,.15);display:none}
#results a{display:block;padding:8px 12px;color:#343a40;border-bottom:1px solid #f1f3f5}
#results a:hover,#results a.sel{background:#e9f2fc;text-decoration:none}
#results .where{color:var(--muted);font-size:.8rem;float:right}
#results .snip{color:var(--muted);font-size:.8rem;display:block}
.layout{display:grid;grid-template-columns:250px minmax(0,1fr) 230px;gap:32px;max-width:1500px;margin:0 auto;
  padding:0 20px}
nav.sidebar,nav.toc{position:sticky;top:56px;align-self:start;max-height:calc(100vh - 56px);overflow-y:auto;
  padding:24px 0;font-size:.9rem}
nav.sidebar a{display:block;padding:4px 8px;color:#495057;border-radius:4px} nav.sidebar a.active{color:var(--primary);
  font-weight:600;background:#e9f2fc}
nav.toc h5{margin:0 0 8px;font-size:.85rem;color:#495057}
nav.toc a{display:block;padding:2px 0 2px 10px;color:var(--muted);border-left:1px solid var(--border)}
nav.toc a.l3{padding-left:22px;font-size:.85rem}
nav.toc a.api{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:.8rem}
main{min-width:0;padding:24px 0 80px}
main h1.title{font-size:2.2rem;margin:0 0 8px} main p.subtitle{color:var(--muted);font-size:1.15rem;margin:0 0 24px}
main img,main svg,main iframe,main video{max-width:100%}
.cell{margin:12px 0}
.highlight{background:var(--code-bg);border-radius:4px}
pre{margin:0;padding:10px 12px;font:13.5px/1.45 SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
  white-space:pre-wrap;overflow-wrap:anywhere}
pre.output{white-space:pre;overflow-x:auto;padding:8px 12px}
pre.stderr{background:#fff8e6} pre.error{background:#fdecea}
code{font:.875em SFMono-Regular,Menlo,Consolas,monospace;background:var(--code-bg);padding:1px 4px;border-radius:3px}
pre code{background:none;padding:0}
.outputs{overflow-x:auto} .output.html{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0;font-size:.9rem}
th,td{border-bottom:1px solid var(--border);padding:4px 10px;text-align:left} thead th{border-bottom:2px solid #adb5bd}
blockquote{margin:0;padding:4px 16px;border-left:4px solid var(--border);color:#495057}
.showdoc hr{border:0;border-top:1px solid var(--border);margin:28px 0 4px}
.showdoc h3.api{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:1.15rem;margin:8px 0}
a.srclink{float:right;font-size:.8rem} a.anchor-link{visibility:hidden;margin-left:6px;font-size:.8em}
h1:hover a.anchor-link,h2:hover a.anchor-link,h3:hover a.anchor-link{visibility:visible}
main .MathJax{display:inline-block;max-width:100%;overflow-x:auto;overflow-y:hidden;vertical-align:bottom}
main .MathJax_Display .MathJax{display:inline-block}
.widget-note{color:var(--muted);font-style:italic}
@media (max-width:1100px){.layout{grid-template-columns:220px minmax(0,1fr)} nav.toc{display:none}}
@media (max-width:760px){.layout{grid-template-columns:minmax(0,1fr)} nav.sidebar{display:none}}
"""

SEARCH_JS = """
(function(){
  const box = document.getElementById('search'), res = document.getElementById('results');
  const idx = window.SAENB_SEARCH || [];
  function find(q) {
    q = q.trim().toLowerCase(); if (!q) return [];
    const hits = [];
    for (const e of idx) {  // [page, id, heading, page title, text, api]
      const h = e[2].toLowerCase();
      const s = h === q ? 0 : h.startsWith(q) ? 1 : h.includes(q) ? 2 : e[4].toLowerCase().includes(q) ? 3 : -1;
      if (s >= 0) hits.push([s * 2 + (e[5] ? 0 : 1), e]);
    }
    return hits.sort((a, b) => a[0] - b[0]).slice(0, 15).map(x => x[1]);
  }
  function esc(s) { return s.replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]); }
  box.addEventListener('input', () => {
    const hits = find(box.value);
    res.innerHTML = hits.map(e => `<a href="${e[0]}.html${e[1] ? '#' + e[1] : ''}">` +
      `<span class="where">${esc(e[3])}</span>` +
      `<b>${esc(e[2])}</b><span class="snip">${esc(e[4].slice(0, 120))}</span></a>`).join('') ||
      (box.value.trim() ? '<a>no match</a>' : '');
    res.style.display = res.innerHTML ? 'block' : 'none';
  });
  box.addEventListener('keydown', ev => {
    if (ev.key === 'Enter') { const a = res.querySelector('a[href]'); if (a) location.href = a.href; }
    if (ev.key === 'Escape') { res.style.display = 'none'; }
  });
  document.addEventListener('click', ev => { if (!ev.target.closest('.search')) res.style.display = 'none'; });
})();
"""

MATHJAX_CONFIG = ('MathJax.Hub.Config({'
    'tex2jax:{inlineMath:[["$","$"],["\\\\(","\\\\)"]],'
    'displayMath:[["$$","$$"],["\\\\[","\\\\]"]],processEscapes:true},'
    '"HTML-CSS":{availableFonts:["STIX-Web"],preferredFont:"STIX-Web",webFont:"STIX-Web",imageFont:null},'
    'messageStyle:"none",showMathMenu:false,"fast-preview":{disabled:true},menuSettings:{CHTMLpreview:false}});'
    'MathJax.Hub.Queue(function(){document.body.dataset.math="typeset";});')  # the tests wait for it

def page(name:str, title:str, desc:str, body:str, secs:list, pages:list) -> str:
    "The page of notebook `name`: navigation bar with search, sidebar of `pages` [(name, title)], body, contents."
    e = html.escape
    side = ''.join(f'<a href="{n}.html"{" class=active" if n == name else ""}>{e(t)}</a>' for n, t in pages)
    toc = ''.join(f'<a class="l{lvl}{" api" if api else ""}" href="#{e(i)}">{e(h)}</a>'
                  for lvl, i, h, api, _ in secs if lvl > 1)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} – {e(CFG['title'])}</title>
<style>{CSS}</style><style>{PYGMENTS_CSS}</style>
<script type="text/x-mathjax-config">{MATHJAX_CONFIG}</script>
<script src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>
</head><body>
<header class="navbar"><a class="brand" href="index.html">{e(CFG['title'])}</a>
<div class="search"><input id="search" type="search" placeholder="Search" autocomplete="off" aria-label="Search">
<div id="results"></div></div></header>
<div class="layout"><nav class="sidebar">{side}</nav>
<main><h1 class="title">{e(title)}</h1>{f'<p class="subtitle">{e(desc)}</p>' if desc else ''}
{body}
</main><nav class="toc">{'<h5>On this page</h5>' + toc if toc else ''}</nav></div>
<script src="search.js"></script><script>{SEARCH_JS}</script>
</body></html>
"""

def pygments_css() -> str:
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter(style='default').get_style_defs('.highlight')

PYGMENTS_CSS = pygments_css()  # the same for every page

def build(path:Path) -> dict:
    "Execute and render one notebook (in a worker process): its title, description, body, sections and seconds taken."
    t0 = time.time()
    nb, shell = execute(path)
    title, desc = page_title(path)
    exp = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c.source + '\n' for c in nb.cells), re.M)
    mod = vars(importlib.import_module(f"{CFG['lib_name']}.{exp.group(1)}")) if exp else {}
    body = render_body(nb, {**shell.user_ns, **mod})  # names resolve to the module's objects, for their source lines
    return dict(name=path.stem, title=title, desc=desc, body=body, secs=sections(body), seconds=time.time() - t0)

def copy_mathjax(out:Path):
    "MathJax 2 (TeX input, HTML-CSS output, STIX fonts) from the `jupyter-server-mathjax` package, next to the pages."
    try: import jupyter_server_mathjax
    except ImportError: fail("the jupyter-server-mathjax package is missing: pip install -e '.[dev]'")
    src, dst = Path(jupyter_server_mathjax.__file__).parent/'static', out/'mathjax'
    for part in ['MathJax.js', 'config', 'extensions', 'jax/input/TeX', 'jax/element/mml', 'jax/output/HTML-CSS',
                 'fonts/HTML-CSS/STIX-Web']:
        if (src/part).is_dir(): shutil.copytree(src/part, dst/part, dirs_exist_ok=True)
        else: (dst/part).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src/part, dst/part)

def write(path:Path, text:str):
    "Write `text` under a temporary name, then rename it into place (a reader never sees half a page)."
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(text, encoding='utf-8'); tmp.replace(path)

def search_index(out:Path, built:list) -> list:
    "Entries [page, id, heading, page title, text, api?] of the pages `built`, and of the others from an earlier build."
    old = out/'search.js'
    names = {b['name'] for b in built}
    keep = json.loads(old.read_text().split('=', 1)[1].rstrip().rstrip(';')) if old.exists() else []
    new = [[b['name'], '', b['title'], b['title'], b['desc'], False] for b in built]
    new += [[b['name'], i, h, b['title'], text, api] for b in built for _, i, h, api, text in b['secs']]
    return [e for e in keep if e[0] not in names] + new

def worker_build():
    """`build`, from this file imported as module `saenb_docs`: a worker looks it up there, as execnb's shell replaces
    `__main__` in the worker that runs a notebook."""
    if 'saenb_docs' not in sys.modules:
        spec = importlib.util.spec_from_file_location('saenb_docs', __file__)
        sys.modules['saenb_docs'] = mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return sys.modules['saenb_docs'].build

def main(out:Path, only:list):
    from fastcore.parallel import parallel
    os.environ.setdefault('PLOTLY_RENDERER', 'notebook')  # figures as HTML with plotly.js inlined (offline)
    os.environ['IN_TEST'] = '1'  # as under nbdev_test
    paths = sorted(NBS.glob('*.ipynb'))
    unknown = set(only) - {p.stem for p in paths}
    if unknown: fail(f"no notebook {', '.join(sorted(unknown))} in nbs/ (give names without .ipynb)")
    pages = [(p.stem, page_title(p)[0]) for p in sorted(paths, key=lambda p: (p.stem != 'index', p.stem))]
    todo = sorted([p for p in paths if not only or p.stem in only], key=lambda p: -p.stat().st_size)  # largest first
    out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out)
    workers = int(os.environ.get('SAENB_DOCS_WORKERS', min(2, os.cpu_count() or 1)))
    built = parallel(worker_build(), todo, n_workers=workers if len(todo) > 1 else 0, pause=0.01)
    for b in built:
        write(out/f"{b['name']}.html", page(b['name'], b['title'], b['desc'], b['body'], b['secs'], pages))
        print(f"{b['name']}.html  {b['seconds']:.0f} s", flush=True)
    write(out/'search.js', 'window.SAENB_SEARCH = ' + json.dumps(search_index(out, built), ensure_ascii=False) + ';\n')
    print(f'site: {out}/index.html')

if __name__ == '__main__':
    if len(sys.argv) < 2: fail(__doc__.strip().splitlines()[-1])
    main(Path(sys.argv[1]).resolve(), sys.argv[2:])
