"""Model registry, loading and the tiny test model."""
