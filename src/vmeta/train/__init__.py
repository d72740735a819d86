"""Fine-tuning: the method table, config, data, collator, callbacks and the run (``vmeta train``).

Heavy libraries (torch, transformers, peft) are imported inside functions, so importing
``vmeta.train.config`` stays cheap for the CLI and config validation.
"""

from vmeta.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
