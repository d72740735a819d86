"""The videos folder of `vmeta data build`, indexed so a sheet cell finds its file: by folded file name and
stem (any case or width, with or without extension or folder); hidden files skipped, symlink loops avoided."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from vmeta.dataset.categories import fold
from vmeta.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".flv", ".m4v", ".3gp", ".ts")


_SEP = re.compile(r"[\\/]")


class VideoIndex:
    """The videos folder, indexed by folded file name and folded stem."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: videos folder not found; pass the folder holding the videos with --videos.")
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        self.count = 0
        seen: set[tuple[int, int]] = set()  # followed symlinks must not loop
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if name.startswith("."):
                    continue
                stem, ext = os.path.splitext(name)
                if ext.lower() not in VIDEO_EXTENSIONS:
                    continue
                p = Path(dirpath, name)
                self.by_name[fold(name)].append(p)
                self.by_stem[fold(stem)].append(p)
                self.count += 1

    def match(self, cell: str) -> list[Path]:
        """Files a sheet cell names: with or without extension, any case or width, with or without a folder."""
        name = _SEP.split(cell.strip())[-1].strip()
        key = fold(name)
        if not key:
            return []
        hits = self.by_name.get(key)
        if hits:
            return sorted(hits)
        stem, ext = os.path.splitext(key)
        if ext in VIDEO_EXTENSIONS:  # "a.mov" in the sheet, "a.mp4" on disk
            return sorted(self.by_stem.get(stem, []))
        return sorted(self.by_stem.get(key, []))

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()
