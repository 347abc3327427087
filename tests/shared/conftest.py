"""The checks that read the full data sets in ../shared/data: run only by `.ci/run`'s second step
(`python -m pytest -q tests/shared`); the default `pytest` does not collect this folder (setup.cfg norecursedirs).
A missing data set fails the check, never skips it."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def require_data(name: str) -> Path:
    folder = DATA / name
    if not (folder / "corpus.jsonl").is_file():
        pytest.fail(f"data set {folder} is missing; these checks expect ../shared/data beside the repository")
    return folder
