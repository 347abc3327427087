"""hnm.porter: the paper's own examples, and the reference stemmer's output on every word of SciFact (a stored
fixture; that it covers SciFact's whole vocabulary is checked in tests/shared/, outside the default run)."""

import gzip
import json
from pathlib import Path

import pytest

from hnm.porter import measure, stem

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "porter_scifact.json.gz"


def _fixture() -> dict:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("m, words", [
    (0, ["tr", "ee", "tree", "y", "by"]),
    (1, ["trouble", "oats", "trees", "ivy"]),
    (2, ["troubles", "private", "oaten", "orrery"]),
])
def test_measure_matches_the_papers_examples(m, words):
    # Porter (1980), section 2: the measure m of [C](VC)^m[V]
    assert [measure(w) for w in words] == [m] * len(words)


# Porter (1980)'s example words of each step, carried through all five steps (the stems the reference gives)
PAPER_EXAMPLES = {
    # step 1a
    "caresses": "caress", "ponies": "poni", "ties": "ti", "caress": "caress", "cats": "cat",
    # step 1b, and its tidying rules
    "feed": "feed", "agreed": "agre", "plastered": "plaster", "bled": "bled", "motoring": "motor", "sing": "sing",
    "conflated": "conflat", "troubled": "troubl", "sized": "size", "hopping": "hop", "tanned": "tan",
    "falling": "fall", "hissing": "hiss", "fizzed": "fizz", "failing": "fail", "filing": "file",
    # step 1c
    "happy": "happi", "sky": "sky",
    # step 2
    "relational": "relat", "conditional": "condit", "rational": "ration", "valenci": "valenc", "digitizer": "digit",
    "conformabli": "conform", "radicalli": "radic", "differentli": "differ", "vileli": "vile",
    "analogousli": "analog", "vietnamization": "vietnam", "predication": "predic", "operator": "oper",
    "feudalism": "feudal", "decisiveness": "decis", "hopefulness": "hope", "callousness": "callous",
    "formaliti": "formal", "sensitiviti": "sensit", "sensibiliti": "sensibl",
    # step 3
    "triplicate": "triplic", "formative": "form", "formalize": "formal", "electriciti": "electr",
    "electrical": "electr", "hopeful": "hope", "goodness": "good",
    # step 4
    "revival": "reviv", "allowance": "allow", "inference": "infer", "airliner": "airlin", "gyroscopic": "gyroscop",
    "adjustable": "adjust", "defensible": "defens", "irritant": "irrit", "replacement": "replac",
    "adjustment": "adjust", "dependent": "depend", "adoption": "adopt", "homologou": "homolog",
    "communism": "commun", "activate": "activ", "angulariti": "angular", "homologous": "homolog",
    "effective": "effect", "bowdlerize": "bowdler",
    # step 5
    "probate": "probat", "rate": "rate", "cease": "ceas", "controlling": "control", "rolling": "roll",
    # the paper's closing example
    "generalizations": "gener", "oscillators": "oscil",
}


def test_the_papers_examples():
    got = {w: stem(w) for w in PAPER_EXAMPLES}
    assert got == PAPER_EXAMPLES


def test_every_scifact_word_stems_as_the_reference_does():
    fixture = _fixture()
    words, stems = fixture["words"], fixture["stems"]
    assert len(words) == len(stems) > 30000
    wrong = [(w, stem(w), s) for w, s in zip(words, stems) if stem(w) != s]
    assert not wrong, f"{len(wrong)} of {len(words)} words differ from {fixture['reference']}, " \
                      f"(word, ours, reference) e.g. {wrong[:10]}"
