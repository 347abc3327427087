"""The hand-drawn charts: well-formed SVG with one mark per bin or system, and the numbers shown."""

import xml.etree.ElementTree as ET

import numpy as np

from hnm.svg import bars, histograms, lines, nice_step, nice_ticks

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


def test_ticks_fall_on_round_steps():
    # the axes: ticks at 0.03 ... 0.92 and counts at 22, 43, 64, 86 become round steps
    assert nice_step(0.89) == 0.2 and nice_step(86) == 20 and nice_step(4) == 1 and nice_step(0.07) == 0.02
    assert np.allclose(nice_ticks(0.03, 0.92), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert np.allclose(nice_ticks(0, 86), [0, 20, 40, 60, 80, 100])
    root = ET.fromstring(histograms({"a": [0.03, 0.5, 0.92] * 29}, "t", "score"))
    labels = [t.text for t in root.iter(NS + "text")]
    assert {"0.0", "0.2", "1.0"} <= set(labels) and "0.03" not in labels and "0.92" not in labels
    for text in labels:  # every number on either axis is a multiple of 1, 2 or 5 times a power of ten
        if text.replace(".", "").isdigit():
            v = float(text)
            assert v == 0 or any(np.isclose(v / (m * 10.0 ** e), round(v / (m * 10.0 ** e)))
                                 for m in (1, 2, 5) for e in range(-3, 4))


def test_lines_draw_a_polyline_per_series_and_whiskers_where_given():
    root = ET.fromstring(lines(["25", "50", "all"], {"first stage": [0.7, 0.7, 0.7], "pipeline": [0.6, 0.72, 0.78]},
                               {"pipeline": [0.55, 0.7, 0.77]}, {"pipeline": [0.65, 0.74, 0.79]}, "curve", "N",
                               "nDCG@10"))
    assert len(list(root.iter(NS + "polyline"))) == 2
    assert len(list(root.iter(NS + "circle"))) == 6
    assert len(list(root.iter(NS + "line"))) == 2 + 3  # two axes; a whisker at each of the pipeline's three points
    texts = [t.text for t in root.iter(NS + "text")]
    assert {"25", "50", "all", "first stage", "pipeline"} <= set(texts)
    # the y axis spans the whiskers, 0.55 to 0.79, in round steps of 0.05 (0.24 / 5 = 0.048, rounded up)
    assert "0.55" in texts and "0.80" in texts and "0.50" not in texts
