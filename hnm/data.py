"""Reading the BEIR layout with line-precise errors, and writing files atomically.

The BEIR layout (Thakur et al., 2021) is the retrieval field's convention:

    corpus.jsonl       {"_id": "4983", "title": "...", "text": "..."}   one document a line
    queries.jsonl      {"_id": "0", "text": "..."}                     one query a line
    qrels/<split>.tsv  query-id <TAB> corpus-id <TAB> score            with a header line

Every reader names the file, the line and the field of the first bad record. Every writer goes through
`atomic_write`: the bytes land under a temporary name in the same folder and are renamed over the target only once
complete, so a crash never leaves half a file where a good one stood.

Not here: downloading data sets (the user or ../shared provides them) and the mined-data format (see mining).
"""

import contextlib
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Container, Dict, Iterator, List, Optional, Tuple

from hnm.errors import InputError

Qrels = Dict[str, Dict[str, int]]  # query id -> {document id: graded relevance}


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", encoding: str = "utf-8") -> Iterator:
    """Open a temporary file beside `path`; on a clean exit, flush, fsync and rename it over `path`.

    On an exception the temporary file is removed and `path` keeps its old content (or stays absent).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the renamed file gets what open() would have given it
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_jsonl(path, required: Tuple[str, ...] = ()) -> Iterator[Tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line; a bad line raises InputError naming file and line.

    UTF-8 with or without a byte-order mark, LF or CRLF line ends (as editors and spreadsheets write them).

    Every field in `required` must be present with a string value; "_id" may also be an integer (it becomes str).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as f:  # -sig: a leading byte-order mark is dropped
        lineno = 0
        while True:
            lineno += 1
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line:
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            for field in required:
                value = record.get(field)
                if field == "_id" and isinstance(value, int) and not isinstance(value, bool):
                    record[field] = value = str(value)
                if not isinstance(value, str):
                    what = "missing" if field not in record else f"a {type(value).__name__}, not a string"
                    raise InputError(f"{path}:{lineno}: field {field!r} is {what}")
            yield lineno, record


def read_corpus(path) -> Dict[str, dict]:
    """corpus.jsonl -> {doc id: {"title": str, "text": str[, "parent_id": str]}}; the title is optional, duplicate
    ids are an error. A row that is a chunk of a page carries the page's id as "parent_id" (pages.py)."""
    corpus: Dict[str, dict] = {}
    for lineno, rec in read_jsonl(path, required=("_id", "text")):
        if rec["_id"] in corpus:
            raise InputError(f"{path}:{lineno}: field '_id' repeats document id {rec['_id']!r}")
        doc = {"title": rec.get("title") or "", "text": rec["text"]}
        if rec.get("parent_id") is not None:
            doc["parent_id"] = rec["parent_id"]
        for field in doc:
            if not isinstance(doc[field], str):
                raise InputError(f"{path}:{lineno}: field {field!r} is a {type(doc[field]).__name__}, not a string")
        corpus[rec["_id"]] = doc
    return corpus


def read_queries(path) -> Dict[str, str]:
    """queries.jsonl -> {query id: text}."""
    queries: Dict[str, str] = {}
    for lineno, rec in read_jsonl(path, required=("_id", "text")):
        if rec["_id"] in queries:
            raise InputError(f"{path}:{lineno}: field '_id' repeats query id {rec['_id']!r}")
        queries[rec["_id"]] = rec["text"]
    return queries


def text_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file, a leading byte-order mark dropped; a line that is not
    valid UTF-8 raises InputError naming file and line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def read_qrels(path, queries: Optional[Container[str]] = None, corpus: Optional[Container[str]] = None,
               strict: bool = False, quiet: bool = False) -> Qrels:
    """qrels/<split>.tsv -> {query id: {doc id: score}}; the header line is skipped if present.

    Given the known query and document ids, a judgment naming another one goes on as trec_eval and BEIR go on: a
    judgment of a query missing from the queries is dropped (it can be neither ranked nor mined), one of a document
    missing from the corpus is kept (it cannot be retrieved, so it counts against recall; mining leaves it out).
    Both are counted, and the first few named with file and line on stderr (`quiet` keeps it silent); `strict` makes
    the first one an error instead. UTF-8 with or without a byte-order mark, LF or CRLF line ends.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    qrels: Qrels = {}
    unknown = {"query": [], "document": []}  # "FILE:LINE: ..." of each
    for lineno, line in text_lines(path):
        parts = line.rstrip("\n\r").split("\t")
        if not line.strip() or (lineno == 1 and parts[0] in ("query-id", "query_id", "qid")):
            continue
        if len(parts) != 3:
            raise InputError(f"{path}:{lineno}: expected 3 tab-separated fields "
                             f"(query-id, corpus-id, score), got {len(parts)}")
        qid, did, score = parts
        try:
            grade = int(score)
        except ValueError:
            raise InputError(f"{path}:{lineno}: field 'score' is {score!r}, not an integer") from None
        if queries is not None and qid not in queries:
            unknown["query"].append(f"{path}:{lineno}: field 'query-id' names {qid!r}, which is not among the "
                                    f"queries")
            if strict:
                raise InputError(unknown["query"][-1])
            continue
        if corpus is not None and did not in corpus:
            unknown["document"].append(f"{path}:{lineno}: field 'corpus-id' names {did!r}, which is not in the "
                                       f"corpus")
            if strict:
                raise InputError(unknown["document"][-1])
        qrels.setdefault(qid, {})[did] = grade
    if (unknown["query"] or unknown["document"]) and not quiet:
        named = (unknown["query"] + unknown["document"])[:3]
        print(f"warning: {path}: {len(unknown['query'])} judgments name unknown queries (dropped), "
              f"{len(unknown['document'])} name documents missing from the corpus (kept: they count against recall)"
              + "".join(f"\n  {n}" for n in named), file=sys.stderr)
    return qrels


def unknown_documents(qrels: Qrels, corpus: Container[str]) -> int:
    """How many judgments name a document that is not in the corpus (`corpus`: the ids a judgment may name)."""
    return sum(d not in corpus for docs in qrels.values() for d in docs)


def beir_file(folder: Path, name: str) -> Path:
    """folder/name, or folder/name.gz when only the compressed file exists (the bundled data set is compressed)."""
    path = Path(folder) / name
    gz = path.with_name(name + ".gz")
    return gz if not path.exists() and gz.exists() else path


def load_beir(folder, split: str, strict: bool = False) -> Tuple[Dict[str, dict], Dict[str, str], Qrels]:
    """Read a BEIR-layout folder: (corpus, queries judged in `split`, qrels of `split`).

    Judgments name documents: corpus rows, or the pages that chunked rows carry as "parent_id" (pages.py).
    Judgments that name an unknown query or document are counted and named on stderr, or with `strict` an error
    naming the line (see read_qrels).
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"{qrels_path}: no such file; splits here: {', '.join(have) or 'none'}")
    corpus = read_corpus(beir_file(folder, "corpus.jsonl"))
    all_queries = read_queries(beir_file(folder, "queries.jsonl"))
    known = set(corpus) | {doc["parent_id"] for doc in corpus.values() if "parent_id" in doc}  # rows and pages
    qrels = read_qrels(qrels_path, all_queries, known, strict)
    queries = {qid: all_queries[qid] for qid in qrels}
    return corpus, queries, qrels


def bundled_cranfield() -> Path:
    """The Cranfield collection shipped with hnm (compressed), the default data of `python -m hnm mine`."""
    return Path(__file__).resolve().parent / "bundled" / "cranfield"


def document_text(doc: dict) -> str:
    """The text an encoder or BM25 sees for a BEIR document: title and text joined by a space, as BEIR does."""
    return f"{doc['title']} {doc['text']}".strip() if doc.get("title") else doc["text"]


def write_jsonl(path, records: List[dict]) -> None:
    """Write records as JSON lines, atomically."""
    with atomic_write(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
