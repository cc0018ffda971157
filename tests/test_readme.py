"""Every ``byzdask`` command the README shows runs as written (trainings shortened to 2 rounds)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from byzdask.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    """The ``python3 -m byzdask ...`` lines of the README's bash blocks (not the two bootstrap lines)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("python3 -m byzdask ")]


def test_the_readme_shows_commands():
    assert len(_commands()) >= 4


@pytest.mark.parametrize("command", _commands())
def test_readme_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(command)[3:]
    if args[0] == "train" and "--help" not in args:
        args += ["--rounds", "2", "--eval-every", "1", "--no-progress"]  # click keeps the last value
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    if "--json" in args:
        assert (tmp_path / args[args.index("--json") + 1]).stat().st_size > 0
