"""The command line: every verb answers --help; unknown models are named with the known ones."""

import json
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
    fresh = (REPO / "README.md").read_text().split("## On a fresh machine")[1].split("\n## ")[0]
    blocks = [b.split("```")[0].strip() for b in fresh.split("```sh\n")[1:]]
    assert len(blocks) == 2  # exactly two fresh-machine commands: the main job, and the tests
    assert blocks[1] in (REPO / ".ci" / "run").read_text()


def test_readme_worked_example_runs(tmp_path):
    """The README's ingest-then-mine example (default chunking, page judgments), run as written (paths resolved against the repository)."""
    readme = (REPO / "README.md").read_text()
    commands = readme.split("```shell\n")[1].split("```")[0].strip().splitlines()
    for line in commands:
        line = line.replace("tests/fixtures", str(REPO / "tests" / "fixtures"))
        done = subprocess.run(line + " --quiet" if line.startswith("python") else line, shell=True,
                              capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    rows = [json.loads(x) for x in (tmp_path / "kestrel" / "mined.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(len(r["negative_ids"]) == 2 for r in rows)
    by_query = {r["query_id"]: r for r in rows}
    # what the README promises: the hard negatives are the topical siblings (storage pages for a storage question)
    # ingest chunks by default, so negatives are chunk ids (site/restore.html#0): compare their pages; both of q1's
    # may be chunks of one page, so its pages are a subset of the storage siblings
    def pages(ids):
        return [i.split("#")[0] for i in ids]
    assert set(pages(by_query["q1"]["negative_ids"])) <= {"site/restore.html", "site/backup-retention.html"}
    assert pages(by_query["q4"]["negative_ids"])[0] == "site/roles.html"
