"""devstack: one command to a healthy local stack (PostgreSQL, Redis, FastAPI) on docker-py."""

__version__ = "0.1.0"
