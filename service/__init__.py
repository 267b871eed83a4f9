"""The devstack API: a small FastAPI service that reports on its PostgreSQL and Redis."""

__version__ = "0.1.0"
