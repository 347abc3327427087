"""Web pages to clean text: content types, decoding the bytes, HTML to lines with html.parser, boilerplate lines.

    page = html_to_text('<title>Menu</title><nav>Home</nav><h1>Lunch</h1><p>Fish &amp; chips<br>Tea</p>')
    page.title, page.text                                      # ('Menu', 'Lunch\\nFish & chips\\nTea')

`page_kind` accepts HTML, plain text and Markdown, by the Content-Type header or else the file suffix; `to_page`
turns their bytes into a Page. Decoding (`decode`) follows the order of the HTML standard's "determining the
character encoding", cut down: a byte order mark, then the charset of the HTTP Content-Type header, then (HTML only)
a `<meta charset>` or `<meta http-equiv="Content-Type">` within the first 1024 bytes, then UTF-8. The labels
iso-8859-1, latin1 and ascii are read as windows-1252, as the Encoding Standard and every browser do. Bytes that are
invalid in the chosen encoding, and NUL bytes, are an error rather than replaced: garbage should be reported, not
embedded.

Cleaning (`html_to_text`) keeps the text a reader sees and drops the rest:
- dropped with all they contain: script, style, noscript, template, iframe, object, svg, canvas, nav, form, button,
  select, textarea, a closed dialog; a page-level header or footer (one not inside article, aside, main, nav or
  section: the HTML-ARIA rule for the banner and contentinfo landmarks); anything with role navigation, banner,
  contentinfo or search; hidden elements (the `hidden` attribute, aria-hidden="true", an inline style with
  display:none or visibility:hidden);
- headings, paragraphs, list items, divs and the other block elements each start a new line; <br> breaks a line;
  <pre> keeps its line breaks;
- a table row is one line, its non-empty cells joined by " | "; block elements inside a cell become spaces;
- entities are decoded, soft hyphens and zero-width spaces removed, whitespace collapsed inside each line, blank
  lines dropped;
- the title is the <title>, or else the first <h1>.
Plain text and Markdown (`plain_to_text`) only get their whitespace collapsed; a Markdown title is its first heading.

Boilerplate (`boilerplate_lines`): on a site with at least `min_pages` pages, a line found on at least `share` of
them (default: half of at least 3 pages) is template, not content, and is removed from every page of that site.
Boilerplate is navigation, not content: a line with text from a <pre> or <code> element (Page.code) is neither
counted nor removed, since code examples often open alike (`fn main() {`, `}`) on most pages of a site.

Not here: stylesheets (an element hidden by a CSS class stays), JavaScript-rendered content, image alt text,
readability-style scoring of the main block, Markdown rendering (Markdown stays as written).
"""

import codecs
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Collection, List, Optional, Sequence, Set, Tuple

KINDS = {"text/html": "html", "application/xhtml+xml": "html", "text/plain": "text", "text/markdown": "markdown",
         "text/x-markdown": "markdown"}  # the content types read, and which cleaner each gets
SUFFIXES = {".html": "html", ".htm": "html", ".txt": "text", ".md": "markdown", ".markdown": "markdown"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-z0-9_.:-]+)""", re.IGNORECASE)

_SKIP = {"script", "style", "noscript", "template", "iframe", "object", "svg", "canvas", "nav", "form", "button",
         "select", "textarea"}
_SKIP_ROLES = {"navigation", "banner", "contentinfo", "search"}
_SECTIONING = {"article", "aside", "main", "nav", "section"}  # a header or footer inside one belongs to it
_BLOCK = {"address", "article", "aside", "blockquote", "body", "br", "caption", "center", "dd", "details", "dialog",
          "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
          "header", "hgroup", "hr", "html", "legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary",
          "table", "tbody", "tfoot", "thead", "tr", "ul"}
# Start tags that end an open <p> (the HTML standard's "close a p element" list, cut to the tags that matter here).
_CLOSES_P = {"address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "div", "dl", "dt",
             "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
             "hgroup", "hr", "li", "main", "menu", "nav", "ol", "p", "pre", "section", "table", "ul"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr"}
# Start tags that close an open element of the same family, as an HTML parser's implied end tags do (<li>a<li>b).
_IMPLIED_END = {"li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "td": {"td", "th"}, "th": {"td", "th"},
                "tr": {"tr", "td", "th"}, "option": {"option"}}
_CODE = {"pre", "code"}  # lines with text from these are code, never boilerplate
_CELL = object()  # marks the start of a table cell among a line's fragments
_INVISIBLE = str.maketrans("", "", "\u00ad\u200b\u200c\u200d\u2060\ufeff")


@dataclass(frozen=True)
class Page:
    title: str
    text: str  # clean lines joined by "\n"; no blank lines, no leading or trailing whitespace on any line
    code: Tuple[int, ...] = ()  # indices of the lines of text that hold text from a <pre> or <code> element


def _collapse(s: str) -> str:
    """'  Fish\\n &  chips\\u00a0 ' -> 'Fish & chips'."""
    return " ".join(s.translate(_INVISIBLE).split())


def _encoding(label: str) -> str:
    """A charset label -> a Python codec name; iso-8859-1 and ascii mean windows-1252 (WHATWG Encoding Standard)."""
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        raise ValueError(f"unknown charset {label!r}") from None
    return "cp1252" if name in ("iso8859-1", "ascii") else name


def page_kind(content_type: Optional[str], name: str) -> Tuple[str, Optional[str]]:
    """A Content-Type header, or without one the suffix of `name` (a file name or URL path) -> (kind, charset).

    'text/html; charset=ISO-8859-1' -> ('html', 'ISO-8859-1'); (None, 'notes.md') -> ('markdown', None).
    Raises ValueError for anything but HTML, plain text and Markdown.
    """
    suffix = PurePosixPath(name).suffix.lower()
    if not content_type:
        if suffix not in SUFFIXES:
            raise ValueError(f"file type {suffix or '(none)'} is not .html, .htm, .txt or .md")
        return SUFFIXES[suffix], None
    mime, *params = [p.strip() for p in content_type.split(";")]
    mime = mime.lower()
    if mime not in KINDS:
        raise ValueError(f"content type {mime} is not HTML, plain text or Markdown")
    charset = next((p.split("=", 1)[1].strip("\"' ") for p in params if p.lower().startswith("charset=")), None)
    return ("markdown" if mime == "text/plain" and suffix in (".md", ".markdown") else KINDS[mime]), charset


def decode(body: bytes, declared: Optional[str] = None, html: bool = True) -> str:
    """Bytes -> text by BOM, then the HTTP header's charset (`declared`), then <meta> (HTML), then UTF-8.

    Raises ValueError naming the encoding, where it came from and the first bad byte.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            encoding, origin = name, "byte order mark"
            break
    else:
        meta = _META_CHARSET.search(body[:1024]) if html else None
        if declared:
            encoding, origin = _encoding(declared), "HTTP header"
        elif meta:
            encoding, origin = _encoding(meta.group(1).decode("ascii")), "<meta> charset"
        else:
            encoding, origin = "utf-8", "default"
        if b"\x00" in body:
            raise ValueError("NUL bytes: binary data, not text")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as e:
        raise ValueError(f"bytes not valid {encoding} (charset from the {origin}) at offset {e.start}") from None


class _TextExtractor(HTMLParser):
    """Collects visible text as lines; an explicit stack of open elements tracks what is being skipped."""

    def __init__(self):
        super().__init__(convert_charrefs=True)  # entities arrive decoded in handle_data
        self.stack: List[tuple] = []  # (tag, skipped), innermost last
        self.skipping = 0  # how many entries of the stack are skipped
        self.lines: List[str] = []
        self.code: List[int] = []  # indices into lines of the code lines
        self.current: list = []  # fragments of the line being built, strings and _CELL marks
        self.current_code = False  # whether the line being built has text from a <pre> or <code>
        self.title: List[str] = []
        self.title_done = False  # only the first <title> counts
        self.h1: List[str] = []
        self.h1_done = False

    def _break(self) -> None:
        """End the line being built; a table row's empty cells are left out, the others joined by ' | '."""
        cells: List[List[str]] = [[]]
        for fragment in self.current:
            if fragment is _CELL:
                cells.append([])
            else:
                cells[-1].append(fragment)
        line = " | ".join(c for c in (_collapse("".join(cell)) for cell in cells) if c)
        if line:
            if self.current_code:
                self.code.append(len(self.lines))
            self.lines.append(line)
        self.current, self.current_code = [], False

    def _inside(self, tags: Set[str]) -> bool:
        return any(t in tags for t, _ in self.stack)

    def _hidden(self, tag: str, a: dict) -> bool:
        style = (a.get("style") or "").replace(" ", "").lower()
        return (tag in _SKIP or "hidden" in a or (a.get("aria-hidden") or "").lower() == "true"
                or (a.get("role") or "").lower() in _SKIP_ROLES
                or "display:none" in style or "visibility:hidden" in style
                or (tag == "dialog" and "open" not in a)
                or (tag in ("header", "footer") and not self._inside(_SECTIONING)))

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _CLOSES_P and self.stack and self.stack[-1][0] == "p":
            self._pop()
        while self.stack and self.stack[-1][0] in _IMPLIED_END.get(tag, ()):
            self._pop()
        if not self.skipping:
            if tag in ("td", "th"):
                self.current.append(_CELL)
            elif tag == "tr":
                self._break()
            elif tag in _BLOCK:
                self._block()
        if tag in _VOID:
            return
        skipped = self._hidden(tag, dict(attrs))
        self.stack.append((tag, skipped))
        self.skipping += skipped

    def handle_endtag(self, tag: str) -> None:
        if not any(t == tag for t, _ in self.stack):
            return  # a stray end tag: browsers ignore it too
        while self._pop() != tag:
            pass

    def _pop(self) -> str:
        tag, skipped = self.stack.pop()
        self.skipping -= skipped
        if tag == "h1" and self.h1:
            self.h1_done = True
        if tag == "title":
            self.title_done = True
        if not self.skipping and tag in _BLOCK:
            self._block()
        return tag

    def _block(self) -> None:
        """A block boundary: a new line, except inside a table cell, where it is a space."""
        if self._inside({"td", "th"}):
            self.current.append(" ")
        else:
            self._break()

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self._inside({"title"}):
            if not self.title_done:
                self.title.append(data)
            return
        if self._inside({"h1"}) and not self.h1_done:
            self.h1.append(data)
        code = self._inside(_CODE)
        if self._inside({"pre"}):
            first, *rest = data.split("\n")
            self._add(first, code)
            for line in rest:
                self._break()
                self._add(line, code)
        else:
            self._add(data, code)

    def _add(self, fragment: str, code: bool) -> None:
        self.current.append(fragment)
        self.current_code |= code and bool(fragment.strip())  # a bare line break of a <pre> is no code


def html_to_text(html: str) -> Page:
    """HTML -> Page(title, clean text lines); see the module docstring for what is kept and dropped."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    while parser.stack:
        parser._pop()
    parser._break()
    title = _collapse("".join(parser.title)) or _collapse("".join(parser.h1))
    return Page(title, "\n".join(parser.lines), tuple(parser.code))


def plain_to_text(text: str, markdown: bool = False) -> Page:
    """Plain text or Markdown -> Page: whitespace collapsed in each line, blank lines dropped.

    The title of Markdown is its first ATX heading ('# Install' -> 'Install'); plain text has none.
    """
    lines = [line for line in (_collapse(raw) for raw in text.splitlines()) if line]
    title = ""
    if markdown:
        title = next((line.lstrip("#").strip() for line in lines if re.match(r"#{1,6} ", line)), "")
    return Page(title, "\n".join(lines))


def to_page(body: bytes, kind: str, charset: Optional[str] = None) -> Page:
    """The bytes of a page of `kind` (see page_kind) -> Page; ValueError if they cannot be decoded."""
    text = decode(body, charset, html=kind == "html")
    return html_to_text(text) if kind == "html" else plain_to_text(text, markdown=kind == "markdown")


@dataclass(frozen=True)
class BoilerplateRule:
    share: float = 0.5  # a line on at least this share of a site's pages is boilerplate ...
    min_pages: int = 3  # ... when the site has at least this many pages (fewer pages say too little)

    def __post_init__(self):
        if not 0 < self.share <= 1:
            raise ValueError(f"boilerplate share must be in (0, 1], got {self.share}")
        if self.min_pages < 2:
            raise ValueError(f"boilerplate needs at least 2 pages to compare, got min_pages={self.min_pages}")


def boilerplate_lines(pages: Sequence[str], rule: BoilerplateRule = BoilerplateRule(),
                      code: Optional[Sequence[Collection[int]]] = None) -> Set[str]:
    """The lines found on at least rule.share of `pages` (the texts of one site), counted once per page; the lines
    of page i whose indices are in code[i] (Page.code) are not counted.

    ["Home\\nA", "Home\\nB", "Home\\nC", "D"] -> {"Home"} (3 of 4 pages; a site of 2 pages gives set()).
    """
    if len(pages) < rule.min_pages:
        return set()
    skips = [set(c) for c in code] if code else [set()] * len(pages)
    counts = Counter(line for page, skip in zip(pages, skips)
                     for line in {line for n, line in enumerate(page.split("\n")) if n not in skip})
    need = max(2, rule.share * len(pages))
    return {line for line, n in counts.items() if n >= need}


def remove_lines(text: str, lines: Set[str], keep: Collection[int] = ()) -> str:
    """`text` without the lines in `lines`, except those whose indices are in `keep` (its code lines):
    'Home\\nA' minus {'Home'} -> 'A'; '}\\nA\\n}' minus {'}'}, keeping line 2 -> 'A\\n}'."""
    keep = set(keep)
    return "\n".join(line for n, line in enumerate(text.split("\n")) if n in keep or line not in lines)
