"""`vmeta predict`: run a model over a dataset split and write one JSONL line per sample, resumably
(`loop.py`), into a self-describing file whose settings a re-run must share (`output_file.py`); with a run
folder, the prompt, frames and context it was trained with (`run_inputs.py`); several base models side by side
(`compare.py`). What it is asked to run: `config.py`; which records: `records.py`.
"""

from vmeta.predict.compare import compare_models
from vmeta.predict.config import PredictConfig, PredictSummary
from vmeta.predict.loop import predict
from vmeta.predict.output_file import meta_path
from vmeta.predict.records import select_records, split_hash

__all__ = [
    "PredictConfig",
    "PredictSummary",
    "compare_models",
    "meta_path",
    "predict",
    "select_records",
    "split_hash",
]
