"""`vmeta` command line. Thin: parse arguments, call one library function, print with rich.

Heavy libraries (torch, transformers) are imported inside commands so `vmeta --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings

from vmeta.cli.apps import app, err_console
from vmeta.errors import UserError

# Each module attaches its commands to the apps in vmeta.cli.apps.
COMMAND_MODULES = (
    "data_build",
    "data_rewrite",
    "data_review",
    "data_split_export",
    "data_stats",
    "models",
    "video",
    "evaluate",
    "predict",
    "train",
    "export",
    "sweep",
    "serve",
    "rate",
    "rate_serve",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"vmeta.cli.{_name}")


def _quiet_third_party() -> None:
    """Library chatter that tells a user nothing they can act on (bitsandbytes' optional CPU kernels,
    transformers' deprecations of calls made inside peft) is hidden on the command line only."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")


def main() -> None:
    _quiet_third_party()
    try:
        app()
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/] — finished work is saved; run the same command again to resume.")
        sys.exit(130)


__all__ = ["app", "main"]
