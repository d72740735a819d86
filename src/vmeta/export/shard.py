"""Shard sizes: parse "2GB", plan shards so every *file* (tensor bytes + safetensors header) stays under the limit,
and verify a saved folder (every shard <= the limit, the index names exactly the tensors in the files).

transformers' ``save_pretrained(max_shard_size=...)`` counts tensor bytes only (the JSON header of each file comes
on top) and silently writes a bigger shard when one tensor alone exceeds the limit. :func:`plan_shard_size` takes
the header into account and :func:`check_tensors_fit` refuses a limit no shard can respect, naming the tensor.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta.errors import UserError

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: str | int) -> int:
    """Size text -> bytes: "2GB" = 2_000_000_000 (decimal, as transformers and the Hub count), "5MiB" = 5_242_880."""
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(str(value))
        unit = m.group(2).upper() if m else None
        if m is None or unit not in _UNITS:
            raise UserError(
                f"--shard-size {value!r}: give a size like 2GB, 500MB or 5MiB (decimal KB/MB/GB or binary KiB/MiB/GiB)."
            )
        size = int(float(m.group(1)) * _UNITS[unit])
    if size < 1024:
        raise UserError(f"--shard-size {value!r} is {size} bytes; a shard must hold at least 1 KB.")
    return size


def human_size(n: int | float) -> str:
    for unit, step in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= step:
            return f"{n / step:.2f} {unit}"
    return f"{int(n)} B"


def header_allowance(names: list[str]) -> int:
    """An upper bound on one safetensors file's header (8-byte length + JSON, padded to 8) for these tensors.

    Per tensor the JSON holds ``"NAME":{"dtype":"BF16","shape":[d0,d1,...],"data_offsets":[a,b]}``: the name plus at
    most ~120 characters for ≤ 5 dimensions and 20-digit offsets; plus the ``__metadata__`` entry.
    """
    return 8 + 256 + sum(len(n.encode("utf-8")) + 160 for n in names) + 8


def plan_shard_size(limit: int, names: list[str]) -> int:
    """The ``max_shard_size`` to give ``save_pretrained`` so that no file exceeds ``limit`` bytes."""
    return limit - header_allowance(names)


def check_tensors_fit(sizes: dict[str, int], limit: int, max_bytes: int, shard_size_text: str) -> None:
    """Raise a clear error when one tensor alone cannot fit in a shard (safetensors cannot split a tensor)."""
    if not sizes:
        return
    name, biggest = max(sizes.items(), key=lambda kv: kv[1])
    if biggest > max_bytes:
        need = biggest + (limit - max_bytes)
        raise UserError(
            f"--shard-size {shard_size_text} is too small: the tensor {name} alone is {human_size(biggest)} "
            f"and a tensor cannot be split across shard files. Use --shard-size {_round_up_mb(need)} or more."
        )


def _round_up_mb(n: int) -> str:
    mb = -(-n // 10**6)
    return f"{mb}MB" if mb < 1000 else f"{-(-mb // 1000)}GB"


@dataclass
class ShardReport:
    folder: Path
    files: list[tuple[str, int]]  # (file name, bytes on disk)
    tensors: int
    total_tensor_bytes: int
    indexed: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def largest(self) -> int:
        return max((s for _, s in self.files), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [{"name": n, "bytes": s} for n, s in self.files],
            "tensors": self.tensors,
            "total_tensor_bytes": self.total_tensor_bytes,
            "indexed": self.indexed,
            "largest_file_bytes": self.largest,
        }


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor name -> dtype/shape/data_offsets; plus ``__metadata__``)."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        return json.loads(fh.read(n))


def verify_shards(folder: str | Path, limit: int | None = None) -> ShardReport:
    """Check the safetensors weights of a model folder: every file <= ``limit`` bytes; with an index, every file it
    names exists, every tensor it maps is in that file, every tensor in the files is mapped, and total_size adds up."""
    folder = Path(folder)
    problems: list[str] = []
    index_path = folder / SAFE_INDEX_NAME
    files: list[str]
    weight_map: dict[str, str] | None = None
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = index.get("weight_map") or {}
        files = sorted(set(weight_map.values()))
        on_disk = sorted(p.name for p in folder.glob("*.safetensors"))
        extra = sorted(set(on_disk) - set(files))
        if extra:
            problems.append(f"safetensors files not named by the index: {', '.join(extra)}")
    elif (folder / SAFE_WEIGHTS_NAME).is_file():
        files = [SAFE_WEIGHTS_NAME]
    else:
        return ShardReport(folder, [], 0, 0, False, [f"{folder}: no {SAFE_WEIGHTS_NAME} and no {SAFE_INDEX_NAME}"])

    sizes: list[tuple[str, int]] = []
    seen: dict[str, str] = {}
    total = 0
    for name in files:
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is named by the index but missing")
            continue
        size = path.stat().st_size
        sizes.append((name, size))
        if limit is not None and size > limit:
            problems.append(f"{name} is {size} bytes, over the limit of {limit}")
        header = read_safetensors_header(path)
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            if key in seen:
                problems.append(f"tensor {key} is stored twice ({seen[key]} and {name})")
            seen[key] = name
            begin, end = meta["data_offsets"]
            total += end - begin
    if weight_map is not None:
        for key, name in weight_map.items():
            if seen.get(key) != name:
                problems.append(f"index maps {key} to {name} but it is in {seen.get(key) or 'no file'}")
        for key in set(seen) - set(weight_map):
            problems.append(f"tensor {key} in {seen[key]} is missing from the index")
        recorded = (index.get("metadata") or {}).get("total_size")
        if recorded is not None and int(recorded) != total:
            problems.append(f"index metadata total_size {recorded} != {total} bytes of tensors in the files")
    return ShardReport(folder, sizes, len(seen), total, weight_map is not None, problems)


_FLOAT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def planned_tensor_sizes(folder: Path, dtype_name: str) -> dict[str, int]:
    """Tensor name -> bytes in the export dtype, read from the safetensors headers of ``folder`` (no loading).

    Empty when the folder holds no safetensors (then the check runs after loading instead).
    """
    index = folder / SAFE_INDEX_NAME
    if index.is_file():
        files = sorted(set((json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}).values()))
    else:
        files = [p.name for p in folder.glob("*.safetensors")]
    out: dict[str, int] = {}
    for name in files:
        try:
            header = read_safetensors_header(folder / name)
        except (OSError, ValueError):
            return {}
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            numel = 1
            for d in meta["shape"]:
                numel *= int(d)
            floating = meta["dtype"] in ("F64", "F32", "F16", "BF16")
            out[key] = numel * (_FLOAT_BYTES[dtype_name] if floating else _ST_BYTES.get(meta["dtype"], 4))
    return out


__all__ = [
    "ShardReport",
    "check_tensors_fit",
    "header_allowance",
    "human_size",
    "parse_size",
    "plan_shard_size",
    "planned_tensor_sizes",
    "read_safetensors_header",
    "verify_shards",
]
