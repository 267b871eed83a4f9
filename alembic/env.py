"""Alembic's environment: the logic lives in service.migrations (typed, tested)."""

from logging.config import fileConfig

from alembic import context

from service.migrations import run_migrations

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

run_migrations(context)  # type: ignore[arg-type]  # a module proxying EnvironmentContext
