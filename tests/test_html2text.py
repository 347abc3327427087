"""HTML to text: the committed pages against their hand-checked texts, decoding rules, what is dropped, boilerplate."""

import codecs
import random

import pytest

from conftest import FIXTURES
from hnm.html2text import BoilerplateRule, boilerplate_lines, decode, html_to_text, plain_to_text, remove_lines

PAGES = FIXTURES / "ingest" / "pages"
EXPECTED = FIXTURES / "ingest" / "expected"
# The charset each page's server sends in its Content-Type header; the others declare theirs in a <meta> only.
HEADER_CHARSET = {"article": "utf-8", "legacy-latin1": "ISO-8859-1"}


def as_expected(title: str, text: str) -> str:
    """The layout of expected/*.txt: the title, a blank line, the text."""
    return f"{title}\n\n{text}\n"


@pytest.mark.parametrize("name", sorted(p.stem for p in PAGES.glob("*.html")))
def test_page_equals_its_hand_checked_text(name):
    page = html_to_text(decode((PAGES / f"{name}.html").read_bytes(), HEADER_CHARSET.get(name)))
    assert as_expected(page.title, page.text) == (EXPECTED / f"{name}.txt").read_text(encoding="utf-8")


def test_every_page_has_an_expected_text():
    assert sorted(p.stem for p in PAGES.glob("*.html")) == sorted(p.stem for p in EXPECTED.glob("*.txt"))
    assert len(list(PAGES.glob("*.html"))) >= 5


def test_decoding_order_bom_header_meta_default():
    meta = '<meta charset="windows-1251"><p>Ж</p>'.encode("cp1251")
    assert "Ж" in decode(meta)  # the <meta> alone
    assert decode(meta, "koi8-r") == meta.decode("koi8-r")  # the header wins over the <meta>
    assert decode(codecs.BOM_UTF8 + "é".encode(), "latin1") == "é"  # the byte order mark wins over the header
    assert decode(codecs.BOM_UTF16_LE + "é\x00".encode("utf-16-le")) == "é\x00"  # NULs are fine in UTF-16
    assert decode("naïve".encode()) == "naïve"  # nothing declared: UTF-8
    http_equiv = b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">\xfc'
    assert decode(http_equiv).endswith("ü")


def test_latin1_and_ascii_labels_mean_windows_1252():
    assert decode(b"\x80 \x92 \x96", "ISO-8859-1") == "€ ’ –"  # Python's latin-1 would give C1 controls
    assert decode(b"\x93ok\x94", "us-ascii") == "“ok”"


def test_meta_is_not_read_for_plain_text():
    with pytest.raises(ValueError, match="not valid utf-8"):
        decode(b'<meta charset="windows-1251">\xc6', html=False)


@pytest.mark.parametrize("body, declared, message", [
    (b"caf\xe9 au lait", None, r"not valid utf-8 \(charset from the default\) at offset 3"),
    (b"ok \x81", "windows-1252", r"not valid cp1252 \(charset from the HTTP header\) at offset 3"),
    (b"GIF89a\x00\x01", None, "NUL bytes"),
    (b"text", "no-such-charset", "unknown charset 'no-such-charset'"),
])
def test_bad_bytes_are_errors_that_say_why(body, declared, message):
    with pytest.raises(ValueError, match=message):
        decode(body, declared)


@pytest.mark.parametrize("html", [
    "<p>keep</p><div hidden>drop</div>",
    "<p>keep</p><span aria-hidden='true'>drop</span>",
    "<p>keep</p><div style='display : NONE'>drop</div>",
    "<p>keep</p><div style='color:red; visibility: hidden'>drop</div>",
    "<p>keep</p><div role='navigation'>drop</div>",
    "<p>keep</p><script>var s = '</div>drop';</script>",
    "<p>keep</p><style>p { content: 'drop' }</style>",
    "<p>keep</p><form><label>drop</label><input value='x'></form>",
    "<p>keep</p><dialog><p>drop</p></dialog>",
    "<header>drop</header><p>keep</p><footer>drop</footer>",
    "<p>keep</p><svg><title>drop</title><text>drop</text></svg>",
    "<p>keep</p><!-- drop -->",
])
def test_what_is_dropped(html):
    assert html_to_text(html).text == "keep"


def test_header_and_footer_inside_an_article_are_kept():
    page = html_to_text("<header>site</header><article><header><h1>Post</h1></header><p>x</p>"
                        "<footer>by A</footer></article><footer>site</footer>")
    assert page.text == "Post\nx\nby A"
    assert page.title == "Post"  # no <title>: the first <h1>


def test_an_open_dialog_is_kept():
    assert html_to_text("<dialog open><p>Saved</p></dialog>").text == "Saved"


def test_implied_end_tags_of_old_html():
    html = "<ul><li hidden>one<li>two</ul><p>three<div>four</div><table><tr><td>a<td>b<tr><td>c</table>"
    assert html_to_text(html).text == "two\nthree\nfour\na | b\nc"


def test_table_cells_joined_and_empty_cells_left_out():
    html = "<table><tr><td></td><td>Home</td><td> </td><td>Contact</td></tr><tr><td><p>x</p><p>y</p></td></tr>"
    assert html_to_text(html + "</table>").text == "Home | Contact\nx y"


def test_entities_whitespace_and_invisible_characters():
    page = html_to_text("<title> A &amp;\n B </title><p>caf&eacute;&nbsp;&#8217;s &lt;tag&gt;  in\u00adfor"
                        "\u200bmation</p>")
    assert page == type(page)("A & B", "café ’s <tag> information")


def test_pre_keeps_its_lines_and_br_breaks():
    assert html_to_text("<pre>a  b\n   c\n</pre><p>d<br>e<br/>f</p>").text == "a b\nc\nd\ne\nf"


def test_only_the_first_title_counts():
    assert html_to_text("<title>One</title><body><title>Two</title><p>x</p>").title == "One"


def test_tag_soup_never_raises_and_gives_clean_lines():
    rng = random.Random(7)
    parts = ["<p>", "</p>", "<div hidden>", "</div>", "<li>", "<table>", "<tr>", "<td>", "</td>", "<br>", "&amp;",
             "&bogus;", "&#x110000;", "<", ">", "</", "<!--", "-->", "<![CDATA[", "]]>", "<script>", "</script>",
             "word", " ", "\n", "é", "<pre>", "</pre>", "<a href='x", "'>", "<footer>", "<article>", "\u00a0"]
    for _ in range(300):
        page = html_to_text("".join(rng.choice(parts) for _ in range(rng.randint(0, 60))))
        for line in page.text.split("\n") if page.text else []:
            assert line and line == " ".join(line.split())


def test_plain_text_and_markdown():
    assert plain_to_text("  Hello \t world \r\n\r\n\nbye  ") == type(plain_to_text(""))("", "Hello world\nbye")
    md = plain_to_text("Intro line\n\n## Install  it\n\n- step", markdown=True)
    assert (md.title, md.text) == ("Install it", "Intro line\n## Install it\n- step")
    assert plain_to_text("#hashtag only", markdown=True).title == ""


def test_boilerplate_rule_worked_example():
    pages = ["Home\nA", "Home\nB\nB", "Home\nC", "D"]
    assert boilerplate_lines(pages) == {"Home"}  # on 3 of 4 pages; "B" twice on one page counts once
    assert boilerplate_lines(pages[:2]) == set()  # 2 pages are fewer than min_pages=3
    assert boilerplate_lines(["x\na", "x\nb", "y\nc", "y\nd"]) == {"x", "y"}  # exactly half is enough
    assert boilerplate_lines(["x\na", "x\nb", "y\nc", "z\nd"], BoilerplateRule(share=0.75)) == set()
    assert remove_lines("Home\nA\nHome", {"Home"}) == "A"


def test_boilerplate_rule_is_validated():
    with pytest.raises(ValueError, match="share"):
        BoilerplateRule(share=0)
    with pytest.raises(ValueError, match="at least 2 pages"):
        BoilerplateRule(min_pages=1)


def test_code_lines_are_marked():
    page = html_to_text("<p>Intro</p><pre><code>fn main() {\n    run();\n\n}\n</code></pre><p>Run <code>cargo build"
                        "</code> first.</p><pre>$ ls\nout</pre><p>End</p>")
    assert page.text == "Intro\nfn main() {\nrun();\n}\nRun cargo build first.\n$ ls\nout\nEnd"
    assert page.code == (1, 2, 3, 4, 5, 6)  # a line with any text from <pre> or <code> is code


def test_code_lines_are_never_boilerplate():
    # As a book generator writes it: a chapter list outside <nav>, and examples that all open and close alike.
    pages = [html_to_text(f"<div class='sidebar'><p>Introduction</p><p>Guide</p></div><h1>Chapter {i}</h1>"
                          f"<pre><code>#![allow(unused)]\nfn main() {{\n    step_{i}();\n}}</code></pre>")
             for i in range(4)]
    texts, code = [p.text for p in pages], [p.code for p in pages]
    assert boilerplate_lines(texts) >= {"Introduction", "Guide", "fn main() {", "}"}  # without the code marks
    assert boilerplate_lines(texts, code=code) == {"Introduction", "Guide"}
    lines = boilerplate_lines(texts, code=code) | {"}"}  # a code line equal to a boilerplate line stays too
    assert remove_lines(texts[0], lines, code[0]) == "Chapter 0\n#![allow(unused)]\nfn main() {\nstep_0();\n}"
    assert remove_lines("}\nA\n}", {"}"}, keep=[2]) == "A\n}"
