"""Shared test helpers: the repository's paths and the model weights (fetched by `.ci/run`, never skipped).
Nothing here reads ../shared: the checks that do live in tests/shared/, outside the default run."""

from pathlib import Path

import pytest
import torch

from hnm import weights

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def require_model(name: str) -> Path:
    """The cached folder of `name`; fails (does not skip) with the command to run when the weights are absent."""
    spec = weights.model_spec(name)
    folder = weights.model_dir(name)
    bad = [f for f, s in spec.files.items() if not weights.is_valid(folder / f, s)]
    if bad:
        pytest.fail(f"weights of {name} missing or corrupt in {folder} ({', '.join(bad)}); "
                    f"run: python -m hnm weights fetch {name}")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine OpenMP's waiting threads slow them 10-100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
