"""Merged, sharded exports of training runs (`vmeta export`): see :mod:`vmeta.export.merge`."""

from vmeta.export.merge import ExportConfig, ExportSummary, RunInfo, export_run, read_run
from vmeta.export.shard import parse_size, verify_shards

__all__ = ["ExportConfig", "ExportSummary", "RunInfo", "export_run", "parse_size", "read_run", "verify_shards"]
