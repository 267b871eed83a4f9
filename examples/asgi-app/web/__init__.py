"""The asgi-app example's web app."""
