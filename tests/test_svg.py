"""The hand-drawn charts: well-formed SVG with one mark per bin or system, and the numbers shown."""

import xml.etree.ElementTree as ET

from hnm.svg import bars, histograms

NS = "{http://www.w3.org/2000/svg}"


def test_histograms_are_well_formed_and_count_every_value():
    svg = histograms({"positives": [0.1, 0.2, 0.2, 0.9], "negatives": [0.5, 0.5]}, "t <&>", "score", bins=4)
    root = ET.fromstring(svg)  # parses: the title's <&> were escaped
    texts = [t.text for t in root.iter(NS + "text")]
    assert "t <&>" in texts and "positives (4)" in texts and "negatives (2)" in texts
    # bins of width 0.2 from 0.1: positives fill 2 bins ([0.1, 0.3) thrice, [0.7, 0.9] once), negatives 1
    # ([0.5, 0.7)); plus the background and the two legend squares
    assert len(list(root.iter(NS + "rect"))) == 1 + 2 + 1 + 2


def test_bars_show_values_and_whiskers():
    root = ET.fromstring(bars({"random": 0.5, "ensemble": 0.625}, {"random": 0.4}, {"random": 0.6}, "MRR", "MRR@10"))
    texts = [t.text for t in root.iter(NS + "text")]
    assert "0.500" in texts and "0.625" in texts and "ensemble" in texts
    assert len(list(root.iter(NS + "line"))) == 2 + 3  # two axes; one whisker with two caps, for the one interval


def test_empty_series_still_draws():
    ET.fromstring(histograms({"negatives": []}, "nothing", "score"))


def test_bars_slant_names_wider_than_their_slot():
    names = {f"arm with a long name {i}": 0.1 * i for i in range(1, 9)}
    root = ET.fromstring(bars(names, {}, {}, "MRR", "MRR@10"))
    assert int(root.get("height")) > 360
    labels = [t for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text in names]
    assert len(labels) == 8 and all("rotate(-30" in t.get("transform", "") for t in labels)
    short = ET.fromstring(bars({"a": 0.5, "b": 0.6}, {}, {}, "MRR", "MRR@10"))
    assert short.get("height") == "360"
