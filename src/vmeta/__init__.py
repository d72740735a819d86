"""vmeta: short-video metaphor understanding — dataset, fine-tuning, evaluation, chat assistant."""

__version__ = "0.1.0"
