"""Dev/test-only workaround: make PyPI's CUDA torchvision importable next to the CPU build of PyTorch.

PyPI's torchvision wheel is built against CUDA. With the CPU build of torch its compiled extension
(`torchvision/_C.so`) fails to load, so its operators are never registered, and `import torchvision`
then dies in `torchvision/_meta_registrations.py` with ``operator torchvision::nms does not exist``.
transformers' Qwen2-VL video processor needs torchvision's pure-Python transforms, which do not use
those compiled ops at all.

:func:`install` first tries to load the real extension. Only when that fails does it define stub
``torchvision::nms`` / ``torchvision::qnms`` operators (the two that torchvision registers fake
kernels for unconditionally at import), whose kernels raise a clear error if anyone calls them.
Everything else in torchvision already checks ``torchvision.extension._has_ops()`` and stays off.

Nothing in vmeta's library code imports this module. It is activated by the dev set-up only:

* ``python scripts/install_torchvision_shim.py`` (run by ``scripts/setup.sh`` on CPU machines) drops
  ``vmeta_torchvision_shim.pth`` into the virtualenv's site-packages. At interpreter start-up that
  file only registers an import hook (cheap, imports nothing heavy); the hook calls :func:`install`
  the first time something looks for ``torchvision``. ``--uninstall`` removes the file.
* the test suite calls :func:`install` from a conftest, so the tests also work without the .pth.

On a GPU machine (or with a CPU torchvision build from download.pytorch.org) the real extension
loads and :func:`install` does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "vmeta_torchvision_shim.pth"
# One line: .pth files execute lines that start with "import". Must never fail loudly at start-up.
PTH_LINE = (
    'import sys; exec("try:\\n from vmeta.devtools.torchvision_shim import register_import_hook as _r\\n'
    ' _r()\\nexcept Exception:\\n pass")\n'
)

_STUB_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_state: dict[str, object] = {"result": None, "lib": None}
_in_progress = False


def _extension_path() -> Path | None:
    """Where torchvision's compiled `_C` extension lies, found without importing torchvision."""
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = Path(folder) / f"_C{suffix}"
            if candidate.exists():
                return candidate
    return None


def status() -> str | None:
    """What :func:`install` did in this process: None (not run), "real-ops", "stubbed" or "no-torchvision"."""
    return _state["result"]  # type: ignore[return-value]


def install() -> str:
    """Make ``import torchvision`` work; idempotent. Returns "real-ops", "stubbed", "no-torchvision" or "too-late".

    Must run before torchvision is imported. Does nothing when torchvision's compiled ops load.
    """
    global _in_progress
    if _state["result"] is not None:
        return _state["result"]  # type: ignore[return-value]
    if "torchvision" in sys.modules:
        return "too-late"
    _in_progress = True
    try:
        import torch

        path = _extension_path()
        if path is None:
            result = "no-torchvision"
        elif hasattr(torch.ops.torchvision, "nms"):
            result = "real-ops"
        else:
            try:
                torch.ops.load_library(str(path))
                loaded = hasattr(torch.ops.torchvision, "nms")
            except (OSError, ImportError, RuntimeError):
                loaded = False
            if loaded:
                result = "real-ops"
            else:
                _define_stubs(torch)
                result = "stubbed"
        _state["result"] = result
        return result
    finally:
        _in_progress = False


def _define_stubs(torch) -> None:  # type: ignore[no-untyped-def]
    lib = torch.library.Library("torchvision", "FRAGMENT")  # kept alive in _state: dropping it unregisters the ops

    def _unavailable(name: str):  # type: ignore[no-untyped-def]
        def kernel(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError(
                f"torchvision::{name} is a stub registered by vmeta.devtools.torchvision_shim: this torchvision "
                "build's compiled ops do not load with the installed (CPU) PyTorch. Install a torchvision "
                "build that matches torch to use torchvision.ops."
            )

        return kernel

    for name, schema in _STUB_OPS.items():
        lib.define(schema)
        lib.impl(name, _unavailable(name), "CompositeExplicitAutograd")
    _state["lib"] = lib


class _TorchvisionImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`install` the first time anything looks for the top-level ``torchvision`` package."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname != "torchvision" or _in_progress:
            return None
        remove_import_hook()
        try:
            install()
        except Exception as exc:  # never break the import itself; torchvision will report its own error
            if os.environ.get("VMETA_SHIM_DEBUG"):
                print(f"vmeta torchvision shim failed: {exc!r}", file=sys.stderr)
        return None  # let the normal finders import torchvision


def register_import_hook() -> None:
    """Install the lazy hook (what the .pth file calls at start-up). Cheap: imports neither torch nor torchvision."""
    if os.environ.get("VMETA_NO_TORCHVISION_SHIM"):
        return
    if any(isinstance(f, _TorchvisionImportHook) for f in sys.meta_path):
        return
    if "torchvision" in sys.modules:
        return
    sys.meta_path.insert(0, _TorchvisionImportHook())


def remove_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionImportHook)]


def pth_path(site_packages: str | Path | None = None) -> Path:
    return Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME


def write_pth(site_packages: str | Path | None = None) -> Path:
    """Drop the start-up hook into (by default) the running interpreter's site-packages. Idempotent."""
    target = pth_path(site_packages)
    if not target.exists() or target.read_text(encoding="utf-8") != PTH_LINE:
        target.write_text(PTH_LINE, encoding="utf-8")
    return target


def remove_pth(site_packages: str | Path | None = None) -> bool:
    target = pth_path(site_packages)
    if target.exists():
        target.unlink()
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m vmeta.devtools.torchvision_shim",
        description="Dev/test set-up on CPU machines: let PyPI's CUDA torchvision import next to CPU torch.",
    )
    parser.add_argument("--uninstall", action="store_true", help=f"remove {PTH_NAME}")
    parser.add_argument("--site-packages", help="target folder (default: this interpreter's site-packages)")
    parser.add_argument("--force", action="store_true", help="write the .pth even when torchvision's ops load")
    args = parser.parse_args(argv)

    if args.uninstall:
        removed = remove_pth(args.site_packages)
        print(f"{'removed' if removed else 'not present'}: {pth_path(args.site_packages)}")
        return 0
    if importlib.util.find_spec("torchvision") is None:
        print("torchvision is not installed: nothing to do.")
        return 0
    import subprocess

    # Probe in a fresh interpreter, so this process' imports do not matter.
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, torchvision; print(torch.version.cuda)"],
        capture_output=True,
        text=True,
        env={**os.environ, "VMETA_NO_TORCHVISION_SHIM": "1"},
    )
    if probe.returncode == 0 and not args.force:
        remove_pth(args.site_packages)
        print("torchvision imports with its compiled ops: no shim needed.")
        return 0
    target = write_pth(args.site_packages)
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torchvision, torchvision.transforms.v2.functional; print(torchvision.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        print(f"wrote {target}, but torchvision still fails to import:\n{check.stderr[-2000:]}", file=sys.stderr)
        return 1
    print(f"wrote {target}: torchvision {check.stdout.strip()} now imports (stub nms/qnms ops; dev/test only).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
