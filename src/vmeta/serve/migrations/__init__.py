"""Alembic migrations of the serve database (env.py, versions/)."""
