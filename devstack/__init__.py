"""devstack: one command to the healthy local stack your project declares in its stack.py."""

__version__ = "0.1.0"
