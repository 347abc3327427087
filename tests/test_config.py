"""The configurations and the flags made from them: one rule per field, applied alike by the Python API and the
command line; --help and `import hnm` without torch; one definition of each list of choices."""

import argparse
import subprocess
import sys
from dataclasses import dataclass, fields

import pytest

from conftest import REPO, require_model
from hnm import config
from hnm.__main__ import _config, _fields, build_parser, main

CLASSES = (config.EmbedConfig, config.BM25Config, config.MineConfig, config.FirstStageConfig, config.EvalConfig,
           config.TrainConfig, config.FetchConfig, config.ChunkConfig, config.IngestConfig, config.ExperimentConfig)


def test_problem_by_hand():
    assert config.problem(float("nan"), {}) == "must be a finite number, not nan"
    assert config.problem(float("inf"), {"gt": 0}) == "must be a finite number, not inf"
    assert config.problem(0, {"ge": 1}) == "must be at least 1, not 0"
    assert config.problem(0.0, {"gt": 0}) == "must be above 0, not 0"
    assert config.problem(1.5, {"le": 1}) == "must be at most 1, not 1.5"
    assert config.problem(1.0, {"lt": 1}) == "must be below 1, not 1"
    assert config.problem("x", {"choices": ("a", "b")}) == "must be one of a, b, not 'x'"
    assert config.problem(None, {"ge": 1}) is None and config.problem(True, {"ge": 2}) is None
    assert config.problem(0.5, {"ge": 0, "le": 1}) is None


def bad_values(meta):
    """Values that break a field's rules: each bound crossed, and (for any number) NaN and the infinities."""
    yield float("nan")
    for rule, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        if rule in meta:
            yield meta[rule] + step
    if "choices" in meta:
        yield "no-such-choice"


def ruled_fields():
    for cls in CLASSES:
        for f in fields(cls):
            if f.type in (int, float) or str(f.type) in ("typing.Optional[int]", "typing.Optional[float]") \
                    or "choices" in f.metadata:
                yield pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")


@pytest.mark.parametrize("cls, f", list(ruled_fields()))
def test_every_rule_is_applied_by_the_dataclass_and_names_the_field(cls, f):
    for value in bad_values(f.metadata):
        if "choices" in f.metadata and not isinstance(value, str):
            continue
        with pytest.raises(ValueError, match=f"^{f.name}: must be "):
            cls(**{f.name: value})
    if f.default is not None:
        cls(**{f.name: f.default})  # the default itself passes


@pytest.mark.parametrize("argv, message", [
    (["rerank", "--data", "d", "--run", "r", "--reranker", "m", "--output", "o", "--top-k", "0"],
     "hnm rerank: error: --top-k: must be at least 1, not 0"),
    (["train", "--rows", "r", "--output", "o", "--lr", "inf"], "hnm train: error: --lr: must be a finite number, not inf"),
    (["train", "--rows", "r", "--output", "o", "--lr", "nan"], "hnm train: error: --lr: must be a finite number, not nan"),
    (["train", "--rows", "r", "--output", "o", "--lr", "0"], "hnm train: error: --lr: must be above 0, not 0"),
    (["train", "--rows", "r", "--output", "o", "--max-grad-norm", "inf"],
     "hnm train: error: --max-grad-norm: must be a finite number, not inf"),
    (["train", "--rows", "r", "--output", "o", "--warmup", "1"], "hnm train: error: --warmup: must be below 1, not 1"),
    (["train", "--rows", "r", "--output", "o", "--epochs", "1.5"], "hnm train: error: --epochs: '1.5' is not a whole number"),
    (["mine", "--relative-ceiling", "0"], "hnm mine: error: --relative-ceiling: must be above 0, not 0"),
    (["mine", "--relative-ceiling", "inf"], "hnm mine: error: --relative-ceiling: must be a finite number, not inf"),
    (["mine", "--min-grade", "0"], "hnm mine: error: --min-grade: must be at least 1, not 0"),
    (["mine", "--margin", "-0.1"], "hnm mine: error: --margin: must be at least 0, not -0.1"),
    (["mine", "--skip-top", "5", "--max-rank", "5"], "hnm mine: error: need skip_top < max_rank, got 5 and 5"),
    (["evaluate", "--data", "d", "--alpha", "1.5"], "hnm evaluate: error: --alpha: must be at most 1, not 1.5"),
    (["ingest", "x", "-o", "c.jsonl", "--timeout", "0"], "hnm ingest: error: --timeout: must be above 0, not 0"),
    (["bm25", "--data", "d", "--k1", "-1"], "hnm bm25: error: --k1: must be at least 0, not -1"),
    (["embed", "--model", "m", "--input", "i", "--output", "o", "--batch-size", "0"],
     "hnm embed: error: --batch-size: must be at least 1, not 0"),
])
def test_bad_numbers_are_one_line_errors_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written: the check comes first
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_max_length_beyond_the_models_positions_is_refused_before_any_work(capsys, tmp_path):
    require_model("all-MiniLM-L6-v2")
    assert main(["train", "--rows", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "run"),
                 "--max-length", "513", "--quiet"]) == 2
    assert capsys.readouterr().err == ("hnm train: error: --max-length: all-MiniLM-L6-v2 has 512 position embeddings, "
                                       "so at most 512, not 513\n")
    assert not (tmp_path / "run").exists()


def test_every_setting_with_a_help_is_a_flag_of_some_verb():
    parser = build_parser()
    dests = {a.dest for sub in parser._subparsers._group_actions[0].choices.values() for a in sub._actions}
    for cls in CLASSES:
        for f in fields(cls):
            if "help" in f.metadata:
                assert f.name in dests, f"{cls.__name__}.{f.name} has a help but no flag"


def test_a_new_field_is_one_line_and_a_flag_with_its_rules():
    @dataclass(frozen=True)
    class Toy:
        rate: float = config.setting(0.5, "a share", ge=0, le=1)
        count: int = config.setting(3, "how many", ge=1)
        on: bool = config.setting(True, "switched on")
        mode: str = config.setting("a", "which", choices=("a", "b"))
        hidden: int = 7  # no help: Python only

    p = argparse.ArgumentParser()
    _fields(p, Toy)
    args = p.parse_args(["--rate", "0.25", "--no-on", "--mode", "b"])
    assert _config(Toy, args) == Toy(rate=0.25, count=3, on=False, mode="b")
    assert "(default 0.5)" in p.format_help() and "--hidden" not in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args(["--count", "0"])


def test_defaults_of_the_flags_are_the_dataclasses():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    args = verbs["train"].parse_args(["--rows", "r", "--output", "o"])
    assert _config(config.TrainConfig, args) == config.TrainConfig()
    args = verbs["mine"].parse_args([])
    assert _config(config.MineConfig, args) == config.MineConfig()
    assert _config(config.EmbedConfig, args) == config.EmbedConfig()
    args = verbs["evaluate"].parse_args(["--data", "d"])
    assert _config(config.EvalConfig, args) == config.EvalConfig()


def test_lists_of_choices_agree_with_the_code_that_runs_them():
    from hnm.bm25 import VARIANTS
    from hnm.losses import LOSSES
    from hnm.negatives import REFERENCES
    assert tuple(VARIANTS) == config.BM25_VARIANTS
    assert set(LOSSES) | {"margin_mse", "listnet"} == set(config.LOSSES)  # the two whose targets are not labels
    assert tuple(REFERENCES) == config.REFERENCE_POSITIVES


def test_import_hnm_and_help_do_not_import_torch():
    probe = ("import sys, hnm; from hnm.__main__ import main\n"
             "for argv in (['--help'], ['train', '--help'], ['mine', '--help'], ['evaluate', '--help']):\n"
             "    assert main(argv) == 0\n"
             "heavy = [m for m in ('torch', 'numpy', 'safetensors', 'tokenizers') if m in sys.modules]\n"
             "assert not heavy, heavy\n"
             "assert hnm.TrainConfig().lr > 0 and 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_public_api_resolves_lazily():
    import hnm
    for name in hnm.__all__:
        assert getattr(hnm, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hnm.nope
