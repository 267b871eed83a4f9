"""The database schema, in SQLAlchemy Core: what Alembic's autogenerate compares against."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, Uuid, func

# Constraint names Postgres and Alembic agree on, so autogenerate sees no spurious changes.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per task run by the worker, keyed by the Celery task id: a task delivered again
# (its worker died mid-run) updates its row and counts the attempt instead of adding a row.
task_records = Table(
    "task_records",
    metadata,
    Column("id", Uuid, primary_key=True, comment="Celery task id"),
    Column("message", Text, nullable=False),
    Column("worker", Text, nullable=False, comment="Celery node that last ran it"),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)
