"""The Porter stemmer, as published: M. F. Porter, "An algorithm for suffix stripping", Program 14(3), 1980.

    stem("relational") -> "relat"      stem("generalizations") -> "gener"      stem("happy") -> "happi"

The reference it is checked against, word for word, is Snowball's "porter" algorithm (PyStemmer's
`Stemmer.Stemmer("porter")`, Snowball's `porter.sbl`), which implements the 1980 paper. NLTK's
`PorterStemmer(mode=PorterStemmer.ORIGINAL_ALGORITHM)` gives the same stems on all of SciFact's vocabulary
(tests/fixtures/make_porter_fixture.py checks both). Names follow the paper:

    c, v      a consonant, a vowel. a e i o u are vowels; y is a vowel when it follows a consonant
              ("toy": t c, o v, y c; "syzygy": s c, y v, z c, y v, g c, y v)
    m         the measure of a stem written [C](VC)^m[V]: "tree" 0, "trouble" 1, "private" 2
    *v*       the stem contains a vowel
    *d        the stem ends with a double consonant ("hopp")
    *o        the stem ends consonant-vowel-consonant, the last not w, x or y ("hop", not "snow")

Each step is a list of rules (suffix, replacement, condition on the stem left when the suffix is removed). Within a
step, the rule with the longest matching suffix is the only one tried: if its condition fails, the step does nothing.

Not here: the later departures of Porter's own C/ANSI release ("logi" -> "log", "bli" -> "ble") and of NLTK's default
mode, Porter2 ("english" in Snowball), and any lower-casing: words are expected in lower case.
"""

from typing import Callable, List, Tuple

Rule = Tuple[str, str, Callable[[str], bool]]  # (suffix, replacement, condition on the stem)


def _cv(word: str) -> str:
    """The consonant/vowel pattern of a word: "toy" -> "cvc", "syzygy" -> "cvcvcv"."""
    pattern: List[str] = []
    for ch in word:
        if ch in "aeiou":
            pattern.append("v")
        elif ch == "y":
            # y after a consonant sounds as a vowel ("happy"); at the start or after a vowel it is a consonant ("toy")
            pattern.append("v" if pattern and pattern[-1] == "c" else "c")
        else:
            pattern.append("c")
    return "".join(pattern)


def measure(stem: str) -> int:
    """m in [C](VC)^m[V]: the number of vowel-to-consonant changes. "trouble" -> 1, "oaten" -> 2."""
    cv = _cv(stem)
    return sum(1 for a, b in zip(cv, cv[1:]) if a == "v" and b == "c")


def _has_vowel(stem: str) -> bool:  # *v*
    return "v" in _cv(stem)


def _ends_double_consonant(stem: str) -> bool:  # *d
    return len(stem) >= 2 and stem[-1] == stem[-2] and _cv(stem)[-1] == "c"


def _ends_cvc(stem: str) -> bool:  # *o
    return len(stem) >= 3 and _cv(stem)[-3:] == "cvc" and stem[-1] not in "wxy"


def _m_above(n: int) -> Callable[[str], bool]:
    return lambda stem: measure(stem) > n


def _apply(word: str, rules: List[Rule]) -> Tuple[str, bool]:
    """Apply the rule whose suffix is the longest that `word` ends with, if its condition holds.

    -> (new word, whether a rule fired). `rules` must be sorted longest suffix first.
    """
    for suffix, replacement, condition in rules:
        if word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
            if condition(stem):
                return stem + replacement, True
            return word, False
    return word, False


def _by_length(rules: List[Rule]) -> List[Rule]:
    """Longest suffix first, so that `_apply` meets the longest match first."""
    return sorted(rules, key=lambda rule: -len(rule[0]))


def _rules(table: List[Tuple[str, str]], condition: Callable[[str], bool]) -> List[Rule]:
    """One condition for a whole table of (suffix, replacement)."""
    return _by_length([(s, r, condition) for s, r in table])


def _always(stem: str) -> bool:
    return True


def _ion_condition(stem: str) -> bool:
    """(m>1 and (*S or *T)) ION: "adoption" -> "adopt", but "lion" and "champion" keep it."""
    return measure(stem) > 1 and stem[-1:] in ("s", "t")


_STEP_1A = _rules([("sses", "ss"), ("ies", "i"), ("ss", "ss"), ("s", "")], _always)
_STEP_1B = _by_length([("eed", "ee", _m_above(0)), ("ing", "", _has_vowel), ("ed", "", _has_vowel)])
_STEP_1B_TIDY = _rules([("at", "ate"), ("bl", "ble"), ("iz", "ize")], _always)
_STEP_2 = _rules([
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"), ("abli", "able"),
    ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"),
    ("ator", "ate"), ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble")], _m_above(0))
_STEP_3 = _rules([
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", "")],
    _m_above(0))
_STEP_4 = _by_length([(s, "", _m_above(1)) for s in (
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ou", "ism", "ate", "iti",
    "ous", "ive", "ize")] + [("ion", "", _ion_condition)])


def _step_1b(word: str) -> str:
    """Plurals and past participles: "agreed" -> "agree", "hopping" -> "hop", "filing" -> "file"."""
    new, fired = _apply(word, _STEP_1B)
    if not fired or word.endswith("eed"):
        return new
    # ed / ing came off: put back an e or undouble a consonant so that later steps see a normal stem
    tidy, fired = _apply(new, _STEP_1B_TIDY)
    if fired:
        return tidy
    if _ends_double_consonant(new) and new[-1] not in "lsz":
        return new[:-1]
    if measure(new) == 1 and _ends_cvc(new):
        return new + "e"
    return new


def _step_1c(word: str) -> str:
    """(*v*) Y -> I: "happy" -> "happi", "sky" stays."""
    if word.endswith("y") and _has_vowel(word[:-1]):
        return word[:-1] + "i"
    return word


def _step_5(word: str) -> str:
    """5a: (m>1) E -> "", (m=1 and not *o) E -> "": "probate" -> "probat", "cease" -> "ceas", "rate" stays.
    5b: (m>1 and *d and *L) -> single letter: "controll" -> "control", "roll" stays."""
    if word.endswith("e"):
        stem = word[:-1]
        m = measure(stem)
        if m > 1 or (m == 1 and not _ends_cvc(stem)):
            word = stem
    if word.endswith("ll") and measure(word) > 1:
        word = word[:-1]
    return word


def stem(word: str) -> str:
    """The Porter (1980) stem of one lower-case word: "generalizations" -> "gener", "oscillators" -> "oscil"."""
    word = _apply(word, _STEP_1A)[0]
    word = _step_1b(word)
    word = _step_1c(word)
    word = _apply(word, _STEP_2)[0]
    word = _apply(word, _STEP_3)[0]
    word = _apply(word, _STEP_4)[0]
    return _step_5(word)
