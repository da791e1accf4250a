"""Metadata database: SQLAlchemy 2 ORM models, engine/session setup and migrations."""
