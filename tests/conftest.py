"Shared test helpers."
import configparser, shutil, sys, tempfile
from pathlib import Path

def console(name:str) -> list:
    "argv prefix running the console command `name`: the installed script or, when saenb is not pip-installed, a script calling its function."
    exe = shutil.which(name)
    if exe: return [exe]
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(Path(__file__).parents[1]/'settings.ini')
    mod, fn = dict(s.split('=', 1) for s in cfg['DEFAULT']['console_scripts'].split())[name].split(':')
    script = Path(tempfile.mkdtemp())/name  # fastcore's call_parse parses arguments only when run from a script file
    script.write_text(f"from {mod} import {fn}\n{fn}()\n")
    return [sys.executable, str(script)]
