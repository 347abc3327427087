"""Ingestion: enterprise documents behind URLs and in folders -> one clean, de-duplicated, chunked BEIR corpus.

The paper's pipeline starts from enterprise documents, mostly web pages, that must become clean text before anything
is embedded. `ingest(sources, output)` does that in three steps:

1. Sources. Each argument is a URL; a folder (walked, sorted; files whose names start with "." skipped; .html/.htm,
   .txt and .md are read, files of other types, a site's stylesheets, scripts and images, are skipped and counted
   by suffix); or a file: a list of URLs when its first line that is neither
   blank nor a # comment starts with http:// or https://, otherwise a document.
2. Fetching and cleaning, one source at a time (html2text.py does the cleaning). A URL is fetched with requests:
   connect and read timeouts, retries with exponential back-off on 5xx, connection errors and timeouts (never on
   4xx), a redirect limit, a size cap, a content-type check (HTML, plain text, Markdown) and a polite delay between
   requests to one host. Each finished source, cleaned page or failure, is appended to a state file beside the
   output (corpus.jsonl -> corpus.state.jsonl) and fsynced, so a killed run, rerun, skips what is done (failures
   too, unless retry_failed) and fetches nothing twice; a finished source is not checked for changes (delete the
   state file to start over).
3. From the state file, for the sources asked for, in their order: exact duplicates dropped (same text after
   lower-casing and collapsing white space), boilerplate lines removed per site (the URL's host, or the folder),
   near duplicates dropped (Jaccard similarity of 5-word shingle sets >= 0.9), the first copy kept each time;
   redirect stubs (an HTML meta refresh) and pages shorter than `min_chars` dropped and counted; a page that holds
   most of another page's shingles (containment >= `containment`, which Jaccard misses when one page is much the
   longer) reported; aggregate pages (below) dropped unless `keep_aggregates`; then chunks cut (chunk.py). The
   corpus and the errors file (JSON lines {"source", "reason"}, by default corpus.errors.jsonl) are written
   atomically. A boilerplate line is navigation, never a line of a code example (html2text.py).

An aggregate page is a copy of other pages laid end to end, a site's print-everything page: it holds at least
`aggregate_pages` other pages, and those pages sit in distinct places of it, one after another. Each held page is
placed where it matches best (the window of its own length holding most of its shingles); merged, the windows must
cover at least `aggregate_distinct` of their summed lengths, so the page is at least about as long as the pages it
holds put together. Holding pages is not enough: reference pages of one kind (a tool's commands) share most of
their option text, so a long command page holds several shorter ones, but they all match the same place in it (on
a real book of 104 files, at most 0.65 of their summed lengths against 1.0 for its print-all page), and it is kept.

Corpus rows: {"_id", "title", "text", "source"[, "url"]}, the URL after redirects for fetched pages; chunks add
"parent_id", "start", "end" with text == parent's cleaned text[start:end]. Document ids are readable: host and path
for a URL ("docs.acme.com/setup.html"), the folder's name and the relative path for a file ("site/setup.html").

Not here: robots.txt, crawling links, JavaScript rendering, PDF and office formats, parallel fetching.
"""

import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit

import numpy as np
import requests

from hnm.chunk import ChunkConfig, chunk_spans, check_budget
from hnm.data import atomic_write
from hnm.errors import HnmError, InputError
from hnm.html2text import SUFFIXES, BoilerplateRule, boilerplate_lines, page_kind, remove_lines, to_page
from hnm.progress import Progress
from hnm.tokenize import Tokenizer

_URL = re.compile(r"https?://", re.IGNORECASE)
_META_REFRESH = re.compile(r"<meta[^>]+http-equiv\s*=\s*[\"']?refresh", re.IGNORECASE)


@dataclass(frozen=True)
class FetchConfig:
    connect_timeout: float = 10.0  # seconds to open a connection
    read_timeout: float = 30.0  # seconds without a byte before an attempt fails
    retries: int = 3  # attempts per URL
    backoff: float = 1.0  # seconds before the second attempt, doubled before each next one
    max_bytes: int = 10_000_000  # a bigger page is refused
    max_redirects: int = 5
    delay: float = 1.0  # seconds between two requests to one host
    user_agent: str = "hnm-ingest/0.1 (retrieval corpus builder; python-requests)"

    def __post_init__(self):
        if self.retries < 1 or self.max_bytes < 1 or min(self.connect_timeout, self.read_timeout) <= 0 \
                or self.delay < 0 or self.backoff < 0:
            raise ValueError(f"retries and max_bytes must be at least 1, timeouts positive, delay and backoff not "
                             f"negative; got {self}")


@dataclass(frozen=True)
class IngestConfig:
    fetch: FetchConfig = FetchConfig()
    chunk: ChunkConfig = ChunkConfig()
    boilerplate: BoilerplateRule = BoilerplateRule()
    shingle: int = 5  # words per shingle for near duplicates
    near_dup_threshold: float = 0.9  # Jaccard similarity of shingle sets at or above which a page is a duplicate
    retry_failed: bool = False  # on a rerun, try the sources that failed before again
    min_chars: int = 100  # pages with less text are dropped ("Redirecting..." stubs are 50 to 70 characters)
    containment: float = 0.8  # share of a page's shingles found in another page from which it is "contained"
    aggregate_pages: int = 3  # an aggregate (a print-all page) holds at least this many other pages ...
    aggregate_distinct: float = 0.8  # ... in places that overlap little: merged, they cover this share of their sum
    keep_aggregates: bool = False  # keep aggregate pages in the corpus (they repeat the pages they hold)

    def __post_init__(self):
        if not 0 < self.near_dup_threshold <= 1 or not 0 < self.containment <= 1:
            raise ValueError(f"near-duplicate threshold and containment must be in (0, 1], got "
                             f"{self.near_dup_threshold} and {self.containment}")
        if self.min_chars < 0 or self.aggregate_pages < 2:
            raise ValueError(f"need min_chars >= 0 and aggregate_pages >= 2, got {self.min_chars} and "
                             f"{self.aggregate_pages}")
        if not 0 < self.aggregate_distinct <= 1:
            raise ValueError(f"aggregate_distinct must be in (0, 1], got {self.aggregate_distinct}")


@dataclass(frozen=True)
class Source:
    key: str  # the URL, or the file's path: names the source in the state and errors files
    doc_id: str
    site: str  # pages of one site share boilerplate: the URL's host, or the folder named on the command line
    path: Optional[Path] = None  # a local file; None for a URL


@dataclass
class IngestReport:
    ok: int = 0
    failed: int = 0
    resumed: int = 0  # sources finished by an earlier run
    exact: List[Tuple[str, str]] = field(default_factory=list)  # (dropped id, kept id)
    near: List[Tuple[str, str, float]] = field(default_factory=list)  # (dropped id, kept id, Jaccard)
    boilerplate: Dict[str, List[str]] = field(default_factory=dict)  # site -> lines removed from its pages
    documents: int = 0
    chunks: int = 0
    other_files: Dict[str, int] = field(default_factory=dict)  # suffix -> files of a folder skipped for their type
    redirects: List[str] = field(default_factory=list)  # ids of meta-refresh stubs dropped
    short: List[str] = field(default_factory=list)  # ids of pages under min_chars dropped
    contained: List[Tuple[str, str, float]] = field(default_factory=list)  # (page, the page holding it, containment)
    aggregates: List[Tuple[str, int]] = field(default_factory=list)  # (page, how many pages it holds), dropped


class SourceError(HnmError):
    """One source failed; the message is the reason written to the errors file."""


def other_files(args: Sequence[str]) -> Dict[str, int]:
    """{suffix: count} of the files in the folders of `args` that are not read for their type (.css, .png, ...)."""
    found: Counter = Counter()
    for arg in args:
        path = Path(arg)
        if not _URL.match(arg) and path.is_dir():
            found.update(f.suffix.lower() or "(none)" for f in path.rglob("*") if f.is_file()
                         and f.suffix.lower() not in SUFFIXES
                         and not any(part.startswith(".") for part in f.relative_to(path).parts))
    return dict(sorted(found.items()))


def expand_sources(args: Sequence[str]) -> List[Source]:
    """Command-line SOURCES -> sources in order, repeats dropped, each with a unique readable id; a folder gives
    its .html/.htm/.txt/.md files (other_files counts the rest)."""
    found: List[Tuple[str, str, str, Optional[Path]]] = []  # (key, id, site, path)
    for arg in args:
        path = Path(arg)
        if _URL.match(arg):
            found.append(_url_source(arg))
        elif path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
                rel = f.relative_to(path)
                if not any(part.startswith(".") for part in rel.parts):
                    found.append((str(f), f"{path.resolve().name}/{rel.as_posix()}", str(path), f))
        elif path.is_file() and _is_url_list(path):
            lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
            found += [_url_source(s) for s in (line.strip() for line in lines) if s and not s.startswith("#")]
        else:  # a document, or a path that does not exist: reading it will say so
            found.append((arg, path.name or arg, str(path.parent), path))
    sources, keys, ids = [], set(), Counter()
    for key, doc_id, site, path in found:
        if key in keys:
            continue
        keys.add(key)
        ids[doc_id] += 1
        sources.append(Source(key, doc_id if ids[doc_id] == 1 else f"{doc_id}~{ids[doc_id]}", site, path))
    return sources


def _url_source(url: str) -> Tuple[str, str, str, None]:
    parts = urlsplit(url)
    return url, parts.netloc + parts.path + (f"?{parts.query}" if parts.query else ""), parts.netloc.lower(), None


def _is_url_list(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a byte-order mark is not part of a URL
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                return bool(_URL.match(line.strip()))
    return False


class _Pacer:
    """Keeps `delay` seconds between two requests to one host."""

    def __init__(self, delay: float):
        self.delay = delay
        self.last: Dict[str, float] = {}

    def wait(self, host: str) -> None:
        if host in self.last:
            time.sleep(max(0.0, self.last[host] + self.delay - time.monotonic()))
        self.last[host] = time.monotonic()


def fetch(url: str, session: requests.Session, cfg: FetchConfig,
          pacer: _Pacer) -> Tuple[bytes, str, Optional[str], str]:
    """GET `url` -> (body, kind, charset from the header, final URL after redirects); SourceError with the reason."""
    last = "no attempt"
    for attempt in range(cfg.retries):
        if attempt:
            time.sleep(cfg.backoff * 2 ** (attempt - 1))
        pacer.wait(urlsplit(url).netloc.lower())
        try:
            with session.get(url, stream=True, timeout=(cfg.connect_timeout, cfg.read_timeout)) as r:
                if r.status_code >= 500:
                    last = f"HTTP {r.status_code} {r.reason or ''}".rstrip()
                    continue
                if not 200 <= r.status_code < 300:
                    raise SourceError(f"HTTP {r.status_code} {r.reason or ''}".rstrip())
                try:
                    kind, charset = page_kind(r.headers.get("Content-Type"), urlsplit(r.url).path)
                except ValueError as e:
                    raise SourceError(str(e)) from None
                size = r.headers.get("Content-Length", "")
                too_big = SourceError(f"larger than the size cap of {cfg.max_bytes:,} bytes")
                if size.isdigit() and int(size) > cfg.max_bytes:  # refused before a byte of it is read
                    raise too_big
                body = bytearray()
                for block in r.iter_content(chunk_size=1 << 16):
                    body += block
                    if len(body) > cfg.max_bytes:
                        raise too_big
                return bytes(body), kind, charset, r.url
        except requests.TooManyRedirects:
            raise SourceError(f"more than {cfg.max_redirects} redirects (a redirect loop?)") from None
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            timed_out = isinstance(e, requests.Timeout) or "timed out" in str(e).lower()
            last = f"timed out (connect {cfg.connect_timeout:g} s, read {cfg.read_timeout:g} s)" if timed_out \
                else f"connection failed: {str(e)[:200]}"
        except requests.RequestException as e:  # a malformed URL, a bad compressed body: retrying will not help
            raise SourceError(f"{type(e).__name__}: {str(e)[:200]}") from None
    raise SourceError(f"{last}, {cfg.retries} attempts")


def _read(source: Source, session: requests.Session, cfg: FetchConfig, pacer: _Pacer) -> dict:
    """One source -> {"title", "text", "kind"[, "url"]}, cleaned; SourceError with the reason if it cannot be had."""
    url = None
    try:
        if source.path is None:
            body, kind, charset, url = fetch(source.key, session, cfg, pacer)
        else:
            if not source.path.is_file():
                raise SourceError("no such file or folder")
            kind, charset = page_kind(None, source.path.name)
            if source.path.stat().st_size > cfg.max_bytes:
                raise SourceError(f"larger than the size cap of {cfg.max_bytes:,} bytes")
            body = source.path.read_bytes()
        page = to_page(body, kind, charset)
    except (ValueError, OSError) as e:  # a refused type, undecodable bytes, an unreadable file
        raise SourceError(getattr(e, "strerror", None) or str(e)) from None
    if not page.text:
        raise SourceError("no text left after cleaning")
    redirect = kind == "html" and bool(_META_REFRESH.search(body[:65536].decode("latin-1")))
    return {"title": page.title, "text": page.text, "kind": kind, **({"url": url} if url else {}),
            **({"redirect": True} if redirect else {}), **({"code": list(page.code)} if page.code else {})}


def _load_state(path: Path, retry_failed: bool) -> Dict[str, dict]:
    """source key -> its state record; a last line cut short by a kill is dropped from the file."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    done = {}
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").split("\n")[:-1], start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or "source" not in record:
            raise InputError(f"{path}:{lineno}: not a state record; delete the file to start over")
        if "error" not in record or not retry_failed:
            done[record["source"]] = record
    return done


def _shingle_sequence(text: str, k: int) -> List[str]:
    """The k-shingles of `text` in order, one per word position (_shingles is their set)."""
    words = re.findall(r"\w+", text.lower())
    return [" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))]


def _shingles(text: str, k: int) -> Set[str]:
    """Sets of k consecutive lower-cased words; a text of fewer words is one shingle."""
    return set(_shingle_sequence(text, k))


def near_duplicates(texts: Sequence[str], k: int, threshold: float) -> Dict[int, Tuple[int, float]]:
    """{index: (index of the earlier text it repeats, Jaccard)} for texts whose k-shingle Jaccard >= threshold.

    Prefix filtering (Bayardo, Ma and Srikant 2007, "Scaling up all pairs similarity search"): with every set sorted
    rarest shingle first, two sets of Jaccard >= t share a shingle among the first |x| - ceil(t |x|) + 1 of each, so
    only pairs meeting in those prefixes are compared, and exactly. Each text is compared with the kept ones only.
    """
    sets = [_shingles(t, k) for t in texts]
    df = Counter(s for x in sets for s in x)
    index: Dict[str, List[int]] = {}  # prefix shingle -> kept texts whose prefix holds it
    dups = {}
    for i, x in enumerate(sets):
        prefix = sorted(x, key=lambda s: (df[s], s))[:len(x) - math.ceil(threshold * len(x) - 1e-9) + 1]
        best = (0.0, -1)
        for j in sorted({j for s in prefix for j in index.get(s, ())}):
            jac = len(x & sets[j]) / len(x | sets[j])
            if jac >= threshold and jac > best[0]:
                best = (jac, j)
        if best[1] >= 0:
            dups[i] = (best[1], best[0])
            continue
        for s in prefix:
            index.setdefault(s, []).append(i)
    return dups


def containments(texts: Sequence[str], k: int, threshold: float) -> List[Tuple[int, int, float]]:
    """(i, j, c) for each pair where text j holds a share c >= threshold of text i's k-shingles, j the longer.

    Containment |S_i & S_j| / |S_i| (Broder 1997, "On the resemblance and containment of documents") finds a page
    inside a much longer one, which their Jaccard similarity, diluted by the longer page, does not. The shared
    counts come from an inverted index of shingles, so only pages that share one are ever compared.
    Example: a page's text repeated inside a print-all page of five pages -> containment 1, Jaccard about 0.2.
    """
    sets = [_shingles(t, k) for t in texts]
    postings: Dict[str, List[int]] = {}
    for j, x in enumerate(sets):
        for s in x:
            postings.setdefault(s, []).append(j)
    out = []
    for i, x in enumerate(sets):
        shared = Counter(j for s in x for j in postings[s] if j != i)
        for j, n in sorted(shared.items()):
            if len(sets[j]) > len(x) and n / len(x) >= threshold:
                out.append((i, j, n / len(x)))
    return out


def aggregates(texts: Sequence[str], holds: Sequence[Tuple[int, int, float]], k: int, pages: int,
               distinct: float) -> Dict[int, List[int]]:
    """{j: the texts it holds} for each text j that is an aggregate: it holds (`holds`, from containments) at least
    `pages` others, and their best-matching windows in it, merged, cover `distinct` of their summed lengths (see the
    module docstring).

    A print-all page of chapters A, B, C: their windows are its three thirds -> merged, 1.0 of their sum.
    A command page holding three others by their shared option list: three windows over that list -> about 1/3.
    """
    held: Dict[int, List[int]] = {}
    for i, j, _ in holds:
        held.setdefault(j, []).append(i)
    found = {}
    for j, inside in sorted(held.items()):
        if len(inside) < pages:
            continue
        sequence = _shingle_sequence(texts[j], k)
        ids = {s: n for n, s in enumerate(dict.fromkeys(sequence))}
        positions = np.array([ids[s] for s in sequence])  # (P,) shingle ids of j in order
        windows = []
        for i in inside:
            own = _shingle_sequence(texts[i], k)
            mask = np.zeros(len(ids), dtype=bool)
            mask[[ids[s] for s in set(own) if s in ids]] = True
            hits = np.concatenate([[0], np.cumsum(mask[positions])])  # (P + 1,) shingles of i up to each place
            width = min(len(own), len(sequence))
            start = int(np.argmax(hits[width:] - hits[:-width]))  # the first window holding most of i
            windows.append((start, start + width))
        merged, end = 0, 0
        for a, b in sorted(windows):  # the length of the union of the windows
            merged += max(0, b - max(a, end))
            end = max(end, b)
        if merged >= distinct * sum(b - a for a, b in windows):
            found[j] = inside
    return found


def ingest(sources: Sequence[str], output: Path, config: IngestConfig = IngestConfig(),
           tokenizer: Optional[Tokenizer] = None, errors: Optional[Path] = None,
           quiet: bool = False) -> IngestReport:
    """Fetch, clean, de-duplicate and chunk `sources` into the corpus `output` (JSON lines, BEIR layout)."""
    output = Path(output)
    errors = Path(errors) if errors else output.with_suffix(".errors.jsonl")
    if config.chunk.mode != "none":
        if tokenizer is None:
            raise ValueError(f"chunk mode {config.chunk.mode!r} needs a tokenizer")
        check_budget(tokenizer, config.chunk)
    todo = expand_sources(sources)
    state_path = output.with_suffix(".state.jsonl")
    state = _load_state(state_path, config.retry_failed)
    report = IngestReport(resumed=sum(s.key in state for s in todo), other_files=other_files(sources))
    session = requests.Session()
    session.headers["User-Agent"] = config.fetch.user_agent
    session.max_redirects = config.fetch.max_redirects
    pacer = _Pacer(config.fetch.delay)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(state_path, "a", encoding="utf-8") as f, \
            Progress(len(todo) - report.resumed, desc="ingest", quiet=quiet) as bar:
        for source in (s for s in todo if s.key not in state):
            try:
                record = {"source": source.key, "doc": _read(source, session, config.fetch, pacer)}
            except SourceError as e:
                record = {"source": source.key, "error": str(e)}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            state[source.key] = record
            bar.update(1)
    return _write(todo, state, output, errors, config, tokenizer, report)


def _write(todo: List[Source], state: Dict[str, dict], output: Path, errors: Path, config: IngestConfig,
           tokenizer: Optional[Tokenizer], report: IngestReport) -> IngestReport:
    """Exact duplicates, boilerplate, near duplicates and chunks, in source order; writes the corpus and errors."""
    failures = [{"source": s.key, "reason": state[s.key]["error"]} for s in todo if "error" in state[s.key]]
    docs = [(s, dict(state[s.key]["doc"])) for s in todo if "doc" in state[s.key]]
    report.ok, report.failed = len(docs), len(failures)
    kept, seen = [], {}
    for s, doc in docs:  # exact copies go first, or a page fetched twice would pass for its site's template
        key = " ".join(doc["text"].lower().split())
        if key in seen:
            report.exact.append((s.doc_id, seen[key]))
        else:
            seen[key] = s.doc_id
            kept.append((s, doc))
    sites: Dict[str, List[dict]] = {}
    for s, doc in kept:
        if doc["kind"] == "html":
            sites.setdefault(s.site, []).append(doc)
    for site, pages in sites.items():
        lines = boilerplate_lines([d["text"] for d in pages], config.boilerplate, [d.get("code", ()) for d in pages])
        if lines:
            report.boilerplate[site] = sorted(lines)
            for d in pages:
                d["text"] = remove_lines(d["text"], lines, d.get("code", ()))
    failures += [{"source": s.key, "reason": "no text left after removing boilerplate lines"}
                 for s, doc in kept if not doc["text"]]
    kept = [(s, doc) for s, doc in kept if doc["text"]]
    near = near_duplicates([d["text"] for _, d in kept], config.shingle, config.near_dup_threshold)
    report.near = [(kept[i][0].doc_id, kept[j][0].doc_id, round(jac, 4)) for i, (j, jac) in sorted(near.items())]
    kept = [pair for i, pair in enumerate(kept) if i not in near]
    report.redirects = [s.doc_id for s, doc in kept if doc.get("redirect")]
    report.short = [s.doc_id for s, doc in kept if not doc.get("redirect") and len(doc["text"]) < config.min_chars]
    kept = [(s, doc) for s, doc in kept if not doc.get("redirect") and len(doc["text"]) >= config.min_chars]
    holds = containments([d["text"] for _, d in kept], config.shingle, config.containment)
    report.contained = [(kept[i][0].doc_id, kept[j][0].doc_id, round(c, 4)) for i, j, c in holds]
    copies = aggregates([d["text"] for _, d in kept], holds, config.shingle, config.aggregate_pages,
                        config.aggregate_distinct)
    report.aggregates = [(kept[j][0].doc_id, len(inside)) for j, inside in sorted(copies.items())]
    if not config.keep_aggregates:
        kept = [pair for j, pair in enumerate(kept) if j not in copies]
    with atomic_write(output) as f:
        for s, doc in kept:
            row = {"_id": s.doc_id, "title": doc["title"], "text": doc["text"], "source": s.key,
                   **({"url": doc["url"]} if "url" in doc else {})}
            if config.chunk.mode == "none":
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                report.chunks += 1
                continue
            for n, (a, b) in enumerate(chunk_spans(doc["text"], tokenizer, config.chunk)):
                chunk = {**row, "_id": f"{s.doc_id}#{n}", "text": doc["text"][a:b], "parent_id": s.doc_id,
                         "start": a, "end": b}
                f.write(json.dumps(chunk, ensure_ascii=False) + "\n")
                report.chunks += 1
    with atomic_write(errors) as f:
        f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in failures)
    report.documents = len(kept)
    return report
