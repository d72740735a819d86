#!/usr/bin/env python
"""Dev/test set-up on CPU machines: let PyPI's CUDA torchvision import next to the CPU build of PyTorch.

Writes `vmeta_torchvision_shim.pth` into this interpreter's site-packages (only when torchvision's
compiled ops fail to load); `--uninstall` removes it. See src/vmeta/devtools/torchvision_shim.py.

    .venv/bin/python scripts/install_torchvision_shim.py [--uninstall]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vmeta.devtools.torchvision_shim import main

if __name__ == "__main__":
    raise SystemExit(main())
