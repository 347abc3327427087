"""Ingestion against a local HTTP server on 127.0.0.1: cleaned pages, bad sources and their reasons, a killed run that
resumes, local folders, boilerplate, duplicates, chunk offsets, and the command line."""

import http.server
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import List

import pytest

from conftest import FIXTURES, REPO, require_model
from hnm import ingest as ingest_module
from hnm.chunk import ChunkConfig
from hnm.data import read_corpus
from hnm.ingest import FetchConfig, IngestConfig, expand_sources, ingest, near_duplicates
from hnm.tokenize import Tokenizer
from hnm.weights import model_spec
from test_html2text import EXPECTED, HEADER_CHARSET, PAGES, as_expected

SITE = FIXTURES / "ingest" / "site"
MAX_BYTES = 50_000
FAST = FetchConfig(connect_timeout=0.5, read_timeout=0.3, retries=2, backoff=0.0, max_bytes=MAX_BYTES, delay=0.0)
NONE = IngestConfig(fetch=FAST, chunk=ChunkConfig("none"), min_chars=0)  # the served test pages are short
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits = Counter()  # path -> requests seen
        self.user_agents = set()
        self.broken = {"/flaky.txt"}  # paths that answer 500 once, then work
        self.pages = {"/missing.html": None}  # extra pages a test adds (None: 404)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address):
        pass  # a client that hangs up at the size cap is expected


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes = b"", content_type: str = "text/html", length: bool = True, **headers):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        server: Server = self.server
        path = self.path
        server.hits[path] += 1
        server.user_agents.add(self.headers.get("User-Agent"))
        name = path.rsplit("/", 1)[-1].removesuffix(".html")
        if path.startswith("/pages/") and (PAGES / f"{name}.html").is_file():
            charset = HEADER_CHARSET.get(name)
            content_type = "text/html" + (f"; charset={charset}" if charset else "")
            self.reply(200, (PAGES / f"{name}.html").read_bytes(), content_type)
        elif path in server.pages:
            body = server.pages[path]
            self.reply(404, b"<h1>Not Found</h1>") if body is None else self.reply(200, body)
        elif path == "/flaky.txt":
            if path in server.broken:
                server.broken.discard(path)
                self.reply(500, b"oops")
            else:
                self.reply(200, b"Recovered after one server error.", "text/plain; charset=utf-8")
        elif path == "/stall.html":
            time.sleep(1.0)  # longer than the read timeout
            self.reply(200, b"<p>too late</p>")
        elif path in ("/loop-a", "/loop-b"):
            self.reply(302, Location="/loop-b" if path == "/loop-a" else "/loop-a")
        elif path == "/moved":
            self.reply(301, Location="/pages/plans.html")
        elif path == "/logo.png":
            self.reply(200, PNG, "image/png")
        elif path in ("/huge.html", "/huge-stream.html"):  # with and without a Content-Length to check against
            self.reply(200, b"<p>" + b"big " * MAX_BYTES + b"</p>", length=path == "/huge.html")
        elif path == "/bad-bytes.html":
            self.reply(200, b"<p>caf\xe9 \xff\xfe</p>", "text/html; charset=utf-8")
        elif path == "/notes.md":
            self.reply(200, b"# Release notes\n\nVersion 2.4 adds snapshot copies.\n", "text/markdown")
        else:
            self.reply(404)


@pytest.fixture
def server():
    s = Server()
    thread = threading.Thread(target=s.serve_forever, daemon=True)
    thread.start()
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    name = "all-MiniLM-L6-v2"
    return Tokenizer.from_file(require_model(name) / "tokenizer.json", model_spec(name).max_length)


def url_list(tmp_path: Path, server: Server, paths) -> Path:
    f = tmp_path / "urls.txt"
    f.write_text("# sources for the test\n\n" + "".join(server.url(p) + "\n" for p in paths))
    return f


def rows(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_served_pages_clean_to_their_expected_texts(server, tmp_path):
    names = sorted(p.stem for p in PAGES.glob("*.html"))
    out = tmp_path / "corpus.jsonl"
    report = ingest([str(url_list(tmp_path, server, [f"/pages/{n}.html" for n in names]))], out, NONE, quiet=True)
    assert (report.ok, report.failed, report.boilerplate, report.exact, report.near) == (len(names), 0, {}, [], [])
    got = {r["_id"]: r for r in rows(out)}
    for n in names:
        row = got[f"127.0.0.1:{server.server_address[1]}/pages/{n}.html"]
        assert as_expected(row["title"], row["text"]) == (EXPECTED / f"{n}.txt").read_text(encoding="utf-8")
        assert row["url"] == row["source"] == server.url(f"/pages/{n}.html")
    assert all(ua.startswith("hnm-ingest/") for ua in server.user_agents)


BAD = {  # path -> the reason in the errors file
    "/missing.html": "HTTP 404 Not Found",
    "/stall.html": "timed out (connect 0.5 s, read 0.3 s), 2 attempts",
    "/loop-a": "more than 5 redirects (a redirect loop?)",
    "/logo.png": "content type image/png is not HTML, plain text or Markdown",
    "/huge.html": f"larger than the size cap of {MAX_BYTES:,} bytes",
    "/huge-stream.html": f"larger than the size cap of {MAX_BYTES:,} bytes",
    "/bad-bytes.html": "bytes not valid utf-8 (charset from the HTTP header) at offset 6",
}
GOOD = ["/pages/article.html", "/flaky.txt", "/moved", "/notes.md", "/pages/plans.html"]


def test_bad_sources_are_reported_and_nothing_else_is_lost(server, tmp_path):
    out = tmp_path / "corpus.jsonl"
    sources = [p for pair in zip(GOOD, BAD) for p in pair] + list(BAD)[len(GOOD):]
    report = ingest([str(url_list(tmp_path, server, sources))], out, NONE, quiet=True)
    errors = {row["source"]: row["reason"] for row in rows(tmp_path / "corpus.errors.jsonl")}
    assert errors == {server.url(p): reason for p, reason in BAD.items()}
    assert (report.ok, report.failed, report.documents) == (len(GOOD), len(BAD), len(GOOD) - 1)
    by_source = {r["source"]: r for r in rows(out)}
    assert by_source[server.url("/flaky.txt")]["text"] == "Recovered after one server error."
    assert by_source[server.url("/notes.md")]["title"] == "Release notes"
    assert report.exact == [(f"127.0.0.1:{server.server_address[1]}/pages/plans.html",  # where /moved went
                             f"127.0.0.1:{server.server_address[1]}/moved")]
    assert by_source[server.url("/moved")]["url"] == server.url("/pages/plans.html")
    assert server.hits["/flaky.txt"] == 2 and server.hits["/stall.html"] == 2  # 5xx and timeouts retried
    assert server.hits["/missing.html"] == 1 and server.hits["/logo.png"] == 1  # 4xx and wrong types are not


def test_killed_run_resumes_without_fetching_again(server, tmp_path, monkeypatch):
    sources = [str(url_list(tmp_path, server, GOOD[:3] + list(BAD)[:3] + GOOD[3:]))]
    ingest(sources, tmp_path / "whole" / "corpus.jsonl", NONE, quiet=True)
    whole_hits = server.hits.copy()
    server.hits.clear()
    server.broken = {"/flaky.txt"}

    real_read, calls = ingest_module._read, []

    def killed_after_four(source, *args):
        calls.append(source.key)
        if len(calls) > 4:
            raise KeyboardInterrupt("killed")
        return real_read(source, *args)

    monkeypatch.setattr(ingest_module, "_read", killed_after_four)
    out = tmp_path / "resumed" / "corpus.jsonl"
    with pytest.raises(KeyboardInterrupt):
        ingest(sources, out, NONE, quiet=True)
    assert not out.exists() and len(rows(out.with_suffix(".state.jsonl"))) == 4
    first_hits = server.hits.copy()
    monkeypatch.setattr(ingest_module, "_read", real_read)
    report = ingest(sources, out, NONE, quiet=True)
    assert report.resumed == 4
    second_hits = server.hits - first_hits
    assert not set(second_hits) & {*GOOD[:3], list(BAD)[0]}  # the four sources done before are not fetched again
    assert first_hits + second_hits == whole_hits  # the rest as often as in one uninterrupted run
    for name in ("corpus.jsonl", "corpus.errors.jsonl"):
        assert (out.parent / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_state_line_cut_by_a_kill_is_dropped(server, tmp_path):
    out = tmp_path / "corpus.jsonl"
    ingest([server.url("/notes.md")], out, NONE, quiet=True)
    state = out.with_suffix(".state.jsonl")
    state.write_bytes(state.read_bytes() + b'{"source": "http://half')
    report = ingest([server.url("/notes.md"), server.url("/flaky.txt")], out, NONE, quiet=True)
    assert (report.resumed, report.ok) == (1, 2) and server.hits["/notes.md"] == 1
    assert len(rows(state)) == 2


def test_failed_sources_are_tried_again_only_when_asked(server, tmp_path):
    out = tmp_path / "corpus.jsonl"
    ingest([server.url("/missing.html")], out, NONE, quiet=True)
    server.pages["/missing.html"] = b"<p>Back online.</p>"
    assert ingest([server.url("/missing.html")], out, NONE, quiet=True).failed == 1
    retry = IngestConfig(fetch=FAST, chunk=ChunkConfig("none"), retry_failed=True, min_chars=0)
    report = ingest([server.url("/missing.html")], out, retry, quiet=True)
    assert (report.ok, report.failed, server.hits["/missing.html"]) == (1, 0, 2)
    assert rows(out)[0]["text"] == "Back online."


def test_local_folder_files_and_missing_paths(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.html").write_text("<title>A</title><nav>menu</nav><p>Alpha page.</p>")
    (docs / "sub" / "b.md").write_text("# Beta\n\nBeta   notes.")
    (docs / "c.txt").write_bytes("Gamma in latin-1: caf\xe9".encode("latin-1"))
    (docs / "d.png").write_bytes(PNG)
    (docs / ".hidden.html").write_text("<p>never read</p>")
    out = tmp_path / "out" / "corpus.jsonl"
    report = ingest([str(docs), str(tmp_path / "nowhere.html")], out, NONE, quiet=True)
    assert [(r["_id"], r["title"], r["text"]) for r in rows(out)] == [
        ("docs/a.html", "A", "Alpha page."), ("docs/sub/b.md", "Beta", "# Beta\nBeta notes.")]
    assert rows(out.with_suffix(".errors.jsonl")) == [
        {"source": str(docs / "c.txt"), "reason": "bytes not valid utf-8 (charset from the default) at offset 21"},
        {"source": str(tmp_path / "nowhere.html"), "reason": "no such file or folder"}]
    assert report.failed == 2 and report.other_files == {".png": 1}  # a folder's image is skipped, not a failure


def test_site_stubs_short_pages_and_the_print_all_page(tmp_path):
    site = tmp_path / "book"
    site.mkdir()
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
    pages = {f"ch{i}.html": " ".join(f"{w}{i}" for w in words * 3) for i in range(4)}  # 54 words, none shared
    for name, text in pages.items():
        (site / name).write_text(f"<title>{name}</title><p>{text}</p>")
    (site / "print.html").write_text("<title>All</title>" + "".join(f"<p>{t}</p>" for t in pages.values()))
    (site / "old.html").write_text('<meta http-equiv="refresh" content="0; url=ch0.html"><p>Redirecting to the '
                                   'new page of this long enough chapter of the book, please wait a moment...</p>')
    (site / "stub.html").write_text("<p>See the next chapter.</p>")
    (site / "style.css").write_text("p { color: red }")
    out = tmp_path / "corpus.jsonl"
    report = ingest([str(site)], out, IngestConfig(fetch=FAST, chunk=ChunkConfig("none")), quiet=True)
    assert [r["_id"] for r in rows(out)] == [f"book/ch{i}.html" for i in range(4)]
    assert report.redirects == ["book/old.html"] and report.short == ["book/stub.html"]
    assert report.aggregates == [("book/print.html", 4)] and report.other_files == {".css": 1}
    assert sorted(c[:2] for c in report.contained) == [(f"book/ch{i}.html", "book/print.html") for i in range(4)]
    assert all(c == 1.0 for *_, c in report.contained) and not report.near  # Jaccard alone misses them (0.25)
    kept = ingest([str(site)], tmp_path / "all.jsonl", IngestConfig(fetch=FAST, chunk=ChunkConfig("none"),
                                                                   keep_aggregates=True), quiet=True)
    assert "book/print.html" in [r["_id"] for r in rows(tmp_path / "all.jsonl")] and kept.aggregates



def _write_book(site: Path) -> List[str]:
    """A book as a static-site generator writes it: a chapter list and the book's title outside <nav> on every page,
    three guides, two groups of six command pages that share their group's option list (one command 84 to 89%
    contained in a longer one), examples that all open with `fn main() {`, and a print-all page. -> the page names."""
    rng = random.Random(31)
    vocab = [a + b for a in ("ka", "lo", "mi", "nu", "pe", "ro", "sa", "ti", "vo", "ze", "bri", "dra", "fle", "gro")
             for b in ("ban", "cel", "dor", "fin", "gal", "hum", "jis", "kor", "lem", "mop", "nix", "pur", "qua")]

    def words(n: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(n))

    def example(name: str) -> str:
        return f"<pre><code>fn main() {{\n    {name}();\n}}</code></pre>"

    contents = {f"{name}.html": f"<h1>{name}</h1><p>{words(60)}</p>{example(name)}<p>{words(60)}</p>"
                for name in ("intro", "install", "faq")}
    for group in range(2):
        options = "".join(f"<p>--option-{group}-{n} {words(30)}</p>" for n in range(10))  # shared by the group
        for rank in range(6):
            name = f"cmd-{group}{rank}"
            contents[f"commands/{name}.html"] = f"<h1>{name}</h1><p>{words(35 + 5 * rank)}</p>{example(name)}{options}"
    template = ("<title>{}</title><div class='menu-bar'><h1>The Book</h1></div><div class='sidebar'><p>Introduction"
                "</p><p>Installation</p><p>Commands</p></div><main>{}</main>")
    (site / "commands").mkdir(parents=True)
    for name, content in contents.items():
        (site / name).write_text(template.format(name, content))
    (site / "print.html").write_text(template.format("The Book", "".join(contents.values())))
    return list(contents)


def test_a_print_all_page_is_dropped_and_command_pages_sharing_options_are_kept(tmp_path):
    site = tmp_path / "book"
    names = _write_book(site)
    out = tmp_path / "corpus.jsonl"
    report = ingest([str(site)], out, IngestConfig(fetch=FAST, chunk=ChunkConfig("none")), quiet=True)
    assert sorted(r["_id"] for r in rows(out)) == sorted(f"book/{name}" for name in names)  # 15 pages, no print-all
    assert report.aggregates == [("book/print.html", 15)]
    commands = [(page, holder, c) for page, holder, c in report.contained if holder != "book/print.html"]
    assert all(0.8 <= c < 0.9 for *_, c in commands)
    held = Counter(holder for _, holder, _ in commands)  # holding 3 or more pages does not make a print-all page
    assert held == {f"book/commands/cmd-{g}{r}.html": r for g in range(2) for r in range(1, 6)}
    assert report.boilerplate == {str(site): ["Commands", "Installation", "Introduction", "The Book"]}
    for row in rows(out):  # the examples' shared lines are code, not boilerplate
        name = row["_id"].rsplit("/", 1)[1].removesuffix(".html")
        assert f"fn main() {{\n{name}();\n}}" in row["text"]


def test_aggregates_worked_example():
    rng = random.Random(2)
    a, b, c, shared = (" ".join(f"w{rng.randrange(10_000)}" for _ in range(n)) for n in (40, 40, 40, 200))
    texts = [a, b, c, f"{a} {b} {c}"]  # three pages and their print-all page
    holds = ingest_module.containments(texts, 5, 0.8)
    assert sorted(holds) == [(0, 3, 1.0), (1, 3, 1.0), (2, 3, 1.0)]
    assert ingest_module.aggregates(texts, holds, 5, 3, 0.8) == {3: [0, 1, 2]}
    siblings = [f"{x} {shared}" for x in (a[:40], a[:80], a[:120], a)]  # one option list, intros growing
    holds = ingest_module.containments(siblings, 5, 0.8)
    assert [i for i, j, _ in holds if j == 3] == [0, 1, 2]  # the longest holds three ...
    assert ingest_module.aggregates(siblings, holds, 5, 3, 0.8) == {}  # ... all in the same place

def test_sources_expand_in_order_with_unique_readable_ids(tmp_path):
    for folder in ("one/site", "two/site"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "index.html").write_text("<p>x</p>")
    listed = tmp_path / "urls.txt"
    listed.write_text("# comment\nhttps://docs.example.com/a/b.html?v=2#top\n\nhttps://docs.example.com/c\n")
    doc = tmp_path / "notes.txt"
    doc.write_text("Not a URL list.\nhttps://example.com")
    got = expand_sources([str(tmp_path / "one/site"), str(tmp_path / "two/site"), str(listed), str(doc),
                          str(tmp_path / "one/site")])
    assert [s.doc_id for s in got] == ["site/index.html", "site/index.html~2", "docs.example.com/a/b.html?v=2",
                                       "docs.example.com/c", "notes.txt"]
    assert [s.site for s in got][2:4] == ["docs.example.com", "docs.example.com"]
    windows = tmp_path / "urls-windows.txt"  # as a Windows editor saves it: a byte-order mark and CRLF line ends
    windows.write_bytes(b"\xef\xbb\xbf" + listed.read_bytes().replace(b"\n", b"\r\n"))
    assert [s.key for s in expand_sources([str(windows)])] == [s.key for s in expand_sources([str(listed)])]


SITE_BOILERPLATE = ["API keys", "Documentation", "Restoring data", "Retention", "Roles and access", "Snapshots",
                    "Was this page helpful?", "© 2024 Kestrel Systems Ltd. Kestrel is a registered trademark."]


def test_site_folder_boilerplate_and_near_duplicate(tmp_path):
    out = tmp_path / "corpus.jsonl"
    report = ingest([str(SITE)], out, NONE, quiet=True)
    assert report.boilerplate == {str(SITE): SITE_BOILERPLATE}  # the sidebar, the feedback widget, the legal line
    assert [(d, k) for d, k, _ in report.near] == [("site/snapshots_print.html", "site/snapshots.html")]
    docs = rows(out)
    assert [r["_id"] for r in docs] == ["site/api-keys.html", "site/backup-retention.html", "site/restore.html",
                                        "site/roles.html", "site/snapshots.html"]
    for r in docs:
        lines = r["text"].split("\n")
        assert not set(lines) & set(SITE_BOILERPLATE)
        assert lines[0].startswith("Docs › ") and lines[-1].startswith("Last updated ")  # differ page to page


@pytest.mark.parametrize("mode", ["tokens", "sentences"])
def test_chunks_map_back_to_their_parent(tmp_path, tok, mode):
    ingest([str(SITE)], tmp_path / "docs.jsonl", NONE, quiet=True)
    parents = {r["_id"]: r for r in rows(tmp_path / "docs.jsonl")}
    config = IngestConfig(fetch=FAST, chunk=ChunkConfig(mode, max_tokens=48, stride=32), min_chars=0)
    report = ingest([str(SITE)], tmp_path / "chunks.jsonl", config, tok, quiet=True)
    chunks = rows(tmp_path / "chunks.jsonl")
    assert report.chunks == len(chunks) > 2 * len(parents) == 2 * report.documents
    for c in chunks:
        parent = parents[c["parent_id"]]
        assert parent["text"][c["start"]:c["end"]] == c["text"]
        assert c["_id"].startswith(c["parent_id"] + "#")
        assert (c["title"], c["source"]) == (parent["title"], parent["source"])
    assert set(parents) == {c["parent_id"] for c in chunks}
    assert len(read_corpus(tmp_path / "chunks.jsonl")) == len(chunks)  # a BEIR reader takes it, ids unique


def test_polite_delay_per_host():
    pacer = ingest_module._Pacer(0.2)
    start = time.monotonic()
    for host in ("a", "b", "a", "a"):
        pacer.wait(host)
    assert 0.4 <= time.monotonic() - start < 1.0  # two waits on host a, none for the first visit to b


def test_command_line(tmp_path, capsys):
    tokenizer = require_model("all-MiniLM-L6-v2") / "tokenizer.json"
    out = tmp_path / "corpus.jsonl"
    done = subprocess.run([sys.executable, "-m", "hnm", "ingest", str(SITE), str(tmp_path / "nowhere"), "-o",
                           str(out), "--model", str(tokenizer), "--chunk", "sentences", "--max-tokens", "64",
                           "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "sources: 6 ok, 1 failed" in done.stdout and "0 exact, 1 near" in done.stdout
    assert "boilerplate lines removed: 8" in done.stdout
    assert f"corpus: 5 documents, {len(rows(out))} rows (sentences, at most 64 tokens)" in done.stdout
    assert rows(out.with_suffix(".errors.jsonl")) == [{"source": str(tmp_path / "nowhere"),
                                                       "reason": "no such file or folder"}]
    from hnm.__main__ import main
    assert main(["ingest", str(SITE), "-o", str(out), "--max-tokens", "64", "--stride", "65"]) == 2
    assert "stride must be between 1 and max_tokens (64)" in capsys.readouterr().err


def test_near_duplicates_equal_brute_force():
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(40)]
    base = [[rng.choice(vocab) for _ in range(rng.randint(3, 80))] for _ in range(25)]
    texts = []
    for _ in range(120):
        words = list(rng.choice(base))
        for _ in range(rng.choice([0, 0, 1, 2, 5])):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        texts.append(" ".join(words))
    for threshold in (0.5, 0.8, 0.9, 1.0):
        expected, kept = {}, []
        shingles = [ingest_module._shingles(t, 5) for t in texts]
        for i, x in enumerate(shingles):
            scores = [(len(x & shingles[j]) / len(x | shingles[j]), -j) for j in kept]
            best = max(scores, default=(0.0, 0))
            if best[0] >= threshold:
                expected[i] = (-best[1], best[0])
            else:
                kept.append(i)
        assert near_duplicates(texts, 5, threshold) == expected
        assert expected  # the case is not trivial
