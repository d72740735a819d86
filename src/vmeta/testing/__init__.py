"""Helpers for tests and demos that work offline (generated media, sample videos)."""
