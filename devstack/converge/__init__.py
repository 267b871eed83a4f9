"""Bringing a project to its declared state: what exists (`observed`), what to change and
why (`plan`, a graph), doing it (`executor`, with `readiness` waits and image `build`s), the
rows `status` shows, and the Engine protocol all of it drives (`engine_protocol`)."""
