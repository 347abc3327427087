"""The command line: every verb answers --help; unknown models are named with the known ones."""

import subprocess
import sys

import pytest

from conftest import REPO
from hnm.__main__ import build_parser


def verbs():
    parser = build_parser()
    return sorted(parser._subparsers._group_actions[0].choices)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hnm", *args], capture_output=True, text=True, cwd=REPO)


def test_top_level_help_lists_every_verb():
    out = run_cli("--help").stdout
    assert {"weights", "embed", "demo"} <= set(verbs())
    for verb in verbs():
        assert verb in out


@pytest.mark.parametrize("verb", verbs())
def test_every_verb_has_help(verb):
    done = run_cli(verb, "--help")
    assert done.returncode == 0 and "usage: python -m hnm " + verb in done.stdout


def test_unknown_model_is_a_clear_error():
    done = run_cli("weights", "fetch", "no-such-model")
    assert done.returncode == 2
    assert "unknown model 'no-such-model'; weights.lock knows: all-MiniLM-L6-v2, all-mpnet-base-v2" in done.stderr


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```")[0].strip() for b in readme.split("```sh\n")[1:]]
    assert len(blocks) == 2  # exactly two fresh-machine commands: the main job, and the tests
    assert blocks[1] in (REPO / ".ci" / "run").read_text()
