"""List the functions of a package longer than a number of lines, longest first: `python scripts/long_functions.py
[--over 100] [hnm]`. A function's length runs from its `def` (decorators included) to its last line."""

import argparse
import ast
from pathlib import Path
from typing import List, Tuple


def long_functions(root: Path, over: int) -> List[Tuple[int, str]]:
    """[(lines, "file:line name")] of the functions under `root` longer than `over` lines, longest first."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - start + 1
                if length > over:
                    found.append((length, f"{path}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1] / "hnm")
    parser.add_argument("--over", type=int, default=100, help="lines (default 100)")
    args = parser.parse_args()
    for length, where in long_functions(args.root, args.over):
        print(f"{length:5d}  {where}")
