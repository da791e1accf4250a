"""Alembic migrations for Shelf's metadata database (shipped inside the wheel)."""
