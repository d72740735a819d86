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


# docs/architecture.md, "Layers": a package imports only packages in lower layers (and itself).
LAYERS: dict[str, int] = {
    **dict.fromkeys(("errors", "config", "progress", "plotting", "devtools"), 0),
    "jsonio": 1,
    "llm_client": 2,
    **dict.fromkeys(("video", "web"), 3),
    **dict.fromkeys(("dataset", "runs"), 4),
    **dict.fromkeys(("models", "evaluate"), 5),
    **dict.fromkeys(("predict", "train", "serve", "rating"), 6),
    "export": 7,
    "testing": 8,
    "recipes": 9,
    "cli": 10,
    "__main__": 11,
}
SIDE = {"recipes", "testing", "devtools", "cli"}  # what no library package (layers 0-7) may import


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "vmeta" and len(parts) > 1 else None


def _packages_on_disk() -> set[str]:
    root = SRC / "vmeta"
    return {p.stem for p in root.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"} - {
        "__init__"
    }


def test_every_package_has_a_layer():
    assert _packages_on_disk() == set(LAYERS), "add new packages to LAYERS here and in docs/architecture.md"


def test_packages_import_only_lower_layers():
    offenders = []
    for path in sorted((SRC / "vmeta").rglob("*.py")):
        parts = path.relative_to(SRC / "vmeta").with_suffix("").parts
        own = parts[0]
        if own == "__init__":
            continue
        for name in sorted(_imported_modules(path)):
            other = _package(name)
            if other is None or other == own or other not in LAYERS:
                continue  # third-party, itself, or a name imported from the vmeta package root
            if LAYERS[other] >= LAYERS[own] or (other in SIDE and LAYERS[own] <= 7):
                offenders.append(
                    f"{path.relative_to(SRC)} (layer {LAYERS[own]}) imports {name} (layer {LAYERS[other]})"
                )
    assert len(offenders) == 0, "\n".join(offenders)
    assert (SRC / "vmeta" / "video" / "probe.py").exists()  # the rule looks at real files
