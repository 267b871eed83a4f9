"""FastAPI dependencies: typed access to the settings and clients opened by the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.resources import Resources


def get_app_settings(request: Request) -> Settings:
    """The settings this app was created with."""
    settings = request.app.state.settings
    if not isinstance(settings, Settings):
        raise RuntimeError("app.state.settings is not set: build the app with create_app()")
    return settings


def get_resources(request: Request) -> Resources:
    """The pool and Redis client opened by the lifespan."""
    resources = getattr(request.state, "resources", None)
    if not isinstance(resources, Resources):
        raise RuntimeError("clients are not open: the app lifespan has not run")
    return resources


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
