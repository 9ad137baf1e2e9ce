"""Alembic migrations of the kyros store."""
