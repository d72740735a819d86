"""Import-layer rules of the package (which layer may import which), checked by parsing the source with `ast`:
imports inside functions and under `if TYPE_CHECKING:` count too, relative imports are resolved."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, by absolute name (`from a import b` counts as `a` and `a.b`)."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_video_does_not_import_dataset():
    """vmeta.video is below vmeta.dataset: a dataset record holds a `VideoMeta`, never the other way round."""
    offenders = {
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted((SRC / "vmeta" / "video").rglob("*.py"))
        for name in _imported_modules(path)
        if name == "vmeta.dataset" or name.startswith("vmeta.dataset.")
    }
    assert (SRC / "vmeta" / "video" / "probe.py").exists()  # the rule looks at real files
    assert not offenders, f"vmeta.video must not import vmeta.dataset: {sorted(offenders)}"
