"""Run ByzPy 0.1.4's own tests of its public behaviour against byzdask, the import renamed.

Run it with the Python of an environment that has ByzPy 0.1.4 (its wheel ships its tests),
pytest and pytest-asyncio installed, and byzdask on the path::

    PYTHONPATH=. /path/to/peervenv/bin/python scripts/byzpy_compat.py [-v]

The script copies the test files of ByzPy's rules, pre-aggregators, attacks, graphs and
schedulers from the installed wheel into a temporary folder, replaces ``byzpy`` by
``byzdask`` in them, leaves out the tests of ByzPy's internals (listed in ``INTERNAL`` with the
reason) and prints the pass count. Nothing of ByzPy is stored in this repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

#: ByzPy's test files (relative to its package) that test public behaviour.
FILES = (
    "aggregators/coordinate_wise/tests/test_mean_of_medians.py",
    "aggregators/coordinate_wise/tests/test_trmean.py",
    "aggregators/coordinate_wise/tests/test_median.py",
    "aggregators/geometric_wise/tests/test_geometric_median.py",
    "aggregators/geometric_wise/tests/test_krum.py",
    "aggregators/geometric_wise/tests/test_smea.py",
    "aggregators/geometric_wise/tests/test_minimum_diameter_average.py",
    "aggregators/geometric_wise/tests/test_monna.py",
    "aggregators/norm_wise/tests/test_caf.py",
    "aggregators/norm_wise/tests/test_comparative_gradient_elimination.py",
    "aggregators/norm_wise/tests/test_center_clipping.py",
    "pre_aggregators/tests/test_bucketing.py",
    "pre_aggregators/tests/test_clipping.py",
    "pre_aggregators/tests/test_nnm.py",
    "pre_aggregators/tests/test_arc.py",
    "attacks/tests/test_mimic.py",
    "attacks/tests/test_label_flip_attack.py",
    "attacks/tests/test_gaussian.py",
    "attacks/tests/test_sign_flip_attack.py",
    "attacks/tests/test_little_attack.py",
    "attacks/tests/test_empire_attack.py",
    "attacks/tests/test_inf.py",
    "engine/graph/tests/test_graph.py",
    "engine/graph/tests/test_operator.py",
    "engine/graph/tests/test_scheduler.py",
    "engine/graph/tests/test_scheduler_message.py",
    "engine/graph/tests/test_message_trigger_op.py",
    "engine/graph/tests/test_graph_input_message.py",
    "engine/graph/tests/test_node_ops.py",
)

#: Imports of ByzPy's internals, replaced by a stub so that the file's other tests run.
INTERNAL_IMPORTS = (
    # its shared-memory store: the tests call cleanup_tensor on a private handle after create_subtasks
    (r"^from byzpy\.engine\.storage\.shared_store import cleanup_tensor$",
     "def cleanup_tensor(handle):  # stub: ByzPy's shared-memory store is internal\n    pass"),
    # ... and read its private handle attribute, which byzdask's operators do not have
    (r"= (\w+)\._active_handle\b", r'= getattr(\1, "_active_handle", None)'),
)

#: Tests of ByzPy's internals, left out: node id -> why.
INTERNAL: dict[str, str] = {
    "engine/graph/tests/test_operator.py::test_operator_run_supports_barriered_mode": "ByzPy's barriered mode",
    "aggregators/geometric_wise/tests/test_geometric_median.py::test_gm_barriered_matches_direct":
        "ByzPy's barriered mode",
    "aggregators/norm_wise/tests/test_center_clipping.py::test_cc_barriered_matches_direct": "ByzPy's barriered mode",
    "engine/graph/tests/test_scheduler.py::test_resolve_inputs_detects_missing_dependency":
        "private scheduler method _resolve_inputs",
    "engine/graph/tests/test_graph.py::test_graph_detects_missing_dependencies_as_cycle":
        "exact error wording (byzdask names the unknown node instead of calling it a cycle)",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="print each test's outcome")
    p.add_argument("--all", action="store_true", help="also run the tests of internals")
    args = p.parse_args(argv)
    spec = importlib.util.find_spec("byzpy")
    if spec is None or not spec.submodule_search_locations:
        print("byzpy is not installed in this Python", file=sys.stderr)
        return 2
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    with tempfile.TemporaryDirectory(prefix="byzpy_compat_") as tmp:
        out = pathlib.Path(tmp) / "t"
        for rel in FILES:
            src = root / rel
            if not src.exists():
                print(f"missing in this ByzPy: {rel}", file=sys.stderr)
                continue
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            text = src.read_text()
            for pattern, repl in INTERNAL_IMPORTS:
                text = re.sub(pattern, repl, text, flags=re.M)
            dst.write_text(re.sub(r"\bbyzpy\b", "byzdask", text))
        (out / "conftest.py").write_text("")
        xml = pathlib.Path(tmp) / "report.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "--import-mode=importlib", "--continue-on-collection-errors", "--timeout=30",
               "--rootdir", str(out), f"--junitxml={xml}", "-W", "ignore", str(out)]
        if not args.all:
            for node in INTERNAL:
                cmd += ["--deselect", str(out / node)]
        subprocess.run(cmd, cwd=tmp, stdout=subprocess.DEVNULL if not args.verbose else None)
        passed, failed = [], []
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if case.find("skipped") is not None:
                continue
            (failed if bad is not None else passed).append((name, bad))
        total = len(passed) + len(failed)
        for name, bad in failed:
            msg = (bad.get("message") or "").splitlines()[0][:160] if bad is not None else ""
            print(f"FAIL {name}: {msg}")
        if args.verbose:
            for name, _ in passed:
                print(f"pass {name}")
        print(f"{len(passed)} of {total} ByzPy tests pass against byzdask"
              f" ({len(INTERNAL) if not args.all else 0} tests of internals left out)")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
