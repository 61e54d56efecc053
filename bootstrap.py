"""Make `python main.py ...` work on a fresh machine that has nothing but Python 3.11+.

Standard library only: this runs before any dependency exists. It creates `.venv` beside this file,
installs the project into it (again only when `pyproject.toml` changed), compiles the gettext
catalogues when a `.po` is newer than its `.mo`, and re-executes the command inside the venv.
Set FIELDCRM_NO_BOOTSTRAP=1 to run in the current interpreter as it is (packagers, Docker images).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FIELDCRM_VENV", ROOT / ".venv"))
EXTRAS = {"run": "postgres,redis", "test": "postgres,redis,dev"}


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _say(text: str) -> None:
    print(f"[setup] {text}", file=sys.stderr, flush=True)


def _install(extras: str) -> None:
    py = _venv_python()
    stamp = VENV / f".fieldcrm-installed-{extras.replace(',', '-')}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    _say(f"installing dependencies ({extras}) into {VENV} — first run only, takes a minute or two")
    quiet = [] if os.environ.get("FIELDCRM_SETUP_VERBOSE") else ["-q"]
    subprocess.check_call([str(py), "-m", "pip", "install", *quiet, "--upgrade", "pip"])
    subprocess.check_call(
        [str(py), "-m", "pip", "install", *quiet, "-e", f"{ROOT}[{extras}]"]
    )
    stamp.write_text(digest)


def compile_catalogues(python: str | Path) -> None:
    """Compile locales/*/LC_MESSAGES/*.po into .mo when the .po is newer (or the .mo is missing)."""
    stale = []
    for po in (ROOT / "locales").glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            stale.append(po)
    if not stale:
        return
    code = (
        "import sys\n"
        "from babel.messages.pofile import read_po\n"
        "from babel.messages.mofile import write_mo\n"
        "for po in sys.argv[1:]:\n"
        "    with open(po, 'rb') as f: cat = read_po(f)\n"
        "    with open(po[:-3] + '.mo', 'wb') as f: write_mo(f, cat)\n"
    )
    subprocess.check_call([str(python), "-c", code, *map(str, stale)])


def ensure(purpose: str = "run") -> None:
    """Guarantee we run inside the project's venv with its dependencies; re-exec if needed."""
    if os.environ.get("FIELDCRM_NO_BOOTSTRAP"):
        return
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs on whatever python3 the user has
        sys.exit("FieldCRM needs Python 3.11 or newer; this is " + sys.version.split()[0])
    extras = EXTRAS[purpose]
    if not _in_venv():
        if not _venv_python().exists():
            _say(f"creating a virtual environment in {VENV}")
            subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        _install(extras)
        compile_catalogues(_venv_python())
        os.execv(str(_venv_python()), [str(_venv_python()), *sys.argv])
    _install(extras)
    compile_catalogues(sys.executable)
