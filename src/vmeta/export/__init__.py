"""Merged, sharded exports of training runs (`vmeta export`): see :mod:`vmeta.export.merge`."""

from vmeta.export.merge import ExportConfig, ExportSummary, export_run
from vmeta.export.shard import parse_size, verify_shards
from vmeta.export.source import RunInfo, read_run

__all__ = ["ExportConfig", "ExportSummary", "RunInfo", "export_run", "parse_size", "read_run", "verify_shards"]
