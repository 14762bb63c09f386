"""The mutation harness itself: it applies a bug to a copy, never to the working tree, and
tells a caught bug from a surviving one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tools.mutation.run import ROOT, Mutation, catalogues, copy_tree, run_one


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_catalogue_entry_still_matches_the_source_exactly_once() -> None:
    found = catalogues()
    assert "features" in found
    for name, mutations in found.items():
        assert mutations, name
        for mutation in mutations:
            text = (ROOT / mutation.file).read_text()
            assert text.count(mutation.old) == 1, f"{name}/{mutation.name} is stale"
            assert mutation.old != mutation.new and mutation.tests


def test_a_caught_and_a_surviving_mutant_in_a_copy(tmp_path: Path) -> None:
    import sys

    target = ROOT / "flashsale_ml" / "validation" / "drift.py"
    before = _digest(target)
    copy_tree(tmp_path)
    caught = run_one(
        Mutation(
            "psi_sign",
            "flashsale_ml/validation/drift.py",
            "total += (c - r) * math.log(c / r)",
            "total += (r - c) * math.log(c / r)",
            ("tests/test_validation.py::test_psi_known_values",),
        ),
        tmp_path,
        sys.executable,
    )
    survived = run_one(
        Mutation(
            "harmless",
            "flashsale_ml/validation/drift.py",
            "EPSILON = 1e-4",
            "EPSILON = 1.0e-4",
            ("tests/test_validation.py::test_psi_known_values",),
        ),
        tmp_path,
        sys.executable,
    )
    assert caught["status"] == "caught", caught
    assert survived["status"] == "survived", survived
    assert _digest(target) == before  # the working tree is never touched
