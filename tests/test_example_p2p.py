"""examples/p2p_digits.py runs as is; here on small settings, in-process workers."""

import ast
import pathlib
import runpy

import pytest

pytestmark = pytest.mark.timeout(60)

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "p2p_digits.py"


def test_example_guards_its_entry_point():
    # a script that starts worker processes must not run them again when they import it
    tree = ast.parse(EXAMPLE.read_text())
    guards = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert len(guards) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_example_trains_on_small_settings(mode):
    example = runpy.run_path(str(EXAMPLE), run_name="p2p_example")
    history = example["main"](["--honest", "4", "--byzantine", "1", "--neighbours", "1", "--rounds", "6",
                               "--eval-every", "3", "--cluster", "thread", "--mode", mode])
    assert [record["round"] for record in history] == [3, 6]
    assert history[-1]["worst_accuracy"] > 0.5
    assert history[-1]["consensus_distance"] < 1.0
