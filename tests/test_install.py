"""Installs: the lock that ships in the package, the Python version setup.cfg asks for, and a wheel that is built,
installed into an empty folder and run from another, with nothing of this checkout importable."""

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO
from hnm import weights

# Standard-library modules newer than the oldest Python a user might have, with the version that added them.
NEW_STDLIB = {"tomllib": (3, 11), "graphlib": (3, 9), "zoneinfo": (3, 9)}


def test_packaged_lock_is_the_top_level_lock():
    # The top-level weights.lock is the one people edit; the package carries a copy, since a wheel holds only hnm/.
    assert (REPO / "hnm" / "weights.lock").read_bytes() == (REPO / "weights.lock").read_bytes(), \
        "hnm/weights.lock differs from weights.lock; run: cp weights.lock hnm/weights.lock"
    assert weights.DEFAULT_LOCK == REPO / "hnm" / "weights.lock"


def test_python_requires_covers_what_the_code_uses():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    found = re.fullmatch(r">=\s*3\.(\d+)", cfg["options"]["python_requires"].strip())
    assert found, "python_requires should read >=3.N"
    oldest = (3, int(found.group(1)))
    for path in sorted((REPO / "hnm").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=oldest)  # the grammar of 3.N
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        for module in imported & NEW_STDLIB.keys():
            assert NEW_STDLIB[module] <= oldest, f"{path.name} imports {module} (Python {NEW_STDLIB[module]}), " \
                                                 f"but setup.cfg allows {oldest}"


def _build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the checkout's top-level files and hnm/, so the build leaves nothing here."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "hnm", src / "hnm", ignore=shutil.ignore_patterns("__pycache__"))
    for f in REPO.iterdir():
        if f.is_file():
            shutil.copy2(f, src / f.name)
    # --no-build-isolation: the setuptools already installed builds it, so nothing is downloaded
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("hnm-*.whl")
    return wheel


def test_a_built_wheel_runs_from_another_folder(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        assert z.read("hnm/weights.lock") == (REPO / "weights.lock").read_bytes()  # the real bytes, not a link
        packaged = {name for name in z.namelist() if name.startswith("hnm/")}
    checkout = {p.relative_to(REPO).as_posix() for p in (REPO / "hnm").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert packaged == checkout  # every module and data file of hnm/, the bundled Cranfield among them
    site, elsewhere, home = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "home"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
                    "-q", "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    elsewhere.mkdir()
    # Only the installed folder is importable (torch and the other dependencies come from this interpreter's
    # site-packages); no lock is named, so the one inside the package must be found.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HNM_LOCK")}
    env.update(PYTHONPATH=str(site), HNM_HOME=str(home))

    def hnm(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-s", *args], capture_output=True, text=True, cwd=elsewhere, env=env)

    where = hnm("-c", "import importlib.util; print(importlib.util.find_spec('hnm').origin)")  # imports nothing
    assert Path(where.stdout.strip()) == site / "hnm" / "__init__.py", where.stderr
    listed = hnm("-m", "hnm", "weights", "list")
    assert listed.returncode == 0, listed.stderr
    names = sorted(weights.read_lock(REPO / "weights.lock"))
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == names
    assert all("not cached" in line for line in listed.stdout.splitlines())  # HNM_HOME is empty
