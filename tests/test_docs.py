"""The documentation: it builds with warnings as errors, and what it shows is what runs.

* the Sphinx build (``python -m sphinx -W --keep-going -b html docs <tmp>``), skipped when the
  ``docs`` extra (sphinx, numpydoc) is not installed;
* every ``>>>`` example of the pages runs and prints what the page shows (doctest);
* the command-line outputs shown on the getting-started page match the commands' output.
"""

import doctest
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from byzdask.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "generated" not in p.parts and "_build" not in p.parts)


def test_pages_exist():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.rst", "getting_started.rst", "byzpy.rst", "api.rst", "guide/aggregators.rst"} <= names


@pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("numpydoc") is None,
    reason="the docs extra (sphinx, numpydoc) is not installed: pip install -e '.[docs]'",
)
@pytest.mark.timeout(600)
def test_sphinx_build_has_no_warnings(tmp_path):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert (tmp_path / "html" / "index.html").exists()
    assert (tmp_path / "html" / "api" / "generated" / "byzdask.aggregators.geometric_wise.krum.html").exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_examples_of_the_page_run(page):
    result = doctest.testfile(
        str(page), module_relative=False, verbose=False, report=True,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {page.name} failed (see stdout)"


def _console_blocks(text):
    """(command, shown output lines) of each ``$ python -m byzdask ...`` console block."""
    blocks = []
    for block in re.findall(r"\.\. code-block:: console\n\n((?:   .*\n|\n)+)", text):
        lines = [line[3:] for line in block.rstrip("\n").split("\n")]
        if lines and lines[0].startswith("$ python -m byzdask "):
            blocks.append((lines[0][len("$ python -m byzdask "):], lines[1:]))
    return blocks


# Outputs that depend on the machine (doctor) or on timings (demo) are not compared.
_MACHINE_DEPENDENT = ("doctor", "demo")


def test_cli_outputs_shown_in_the_docs_are_current():
    blocks = _console_blocks((DOCS / "getting_started.rst").read_text())
    commands = [cmd for cmd, _ in blocks]
    assert "--help" in commands and any(c.startswith("list ") for c in commands)
    for cmd, shown in blocks:
        if cmd.split()[0] in _MACHINE_DEPENDENT:
            continue
        result = CliRunner().invoke(main, cmd.split(), prog_name="python -m byzdask")
        assert result.exit_code == 0, result.output
        actual = result.output.rstrip("\n").split("\n")
        expected = shown[: shown.index("...")] if "..." in shown else shown
        assert actual[: len(expected)] == expected, f"python -m byzdask {cmd}"
