"""Evaluation: reference-exact metrics (registry), slot-level scores, bootstrap CIs, reports, comparisons.

Importing this package fills `METRICS` (text metrics and slot metrics); heavy libraries load lazily.
"""

from vmeta.evaluate import slots as _slots  # noqa: F401  (registers the "slots" metric)
from vmeta.evaluate.metrics import METRICS, EvalContext, Metric, MetricResult, metric

__all__ = ["METRICS", "EvalContext", "Metric", "MetricResult", "metric"]
