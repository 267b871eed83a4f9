"""task_records: one row per task run by the worker

Revision ID: 0001
Revises:
Create Date: 2025-06-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create task_records."""
    op.create_table(
        "task_records",
        sa.Column("id", sa.Uuid(), nullable=False, comment="Celery task id"),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False, comment="Celery node that last ran it"),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_records")),
    )


def downgrade() -> None:
    """Drop task_records."""
    op.drop_table("task_records")
