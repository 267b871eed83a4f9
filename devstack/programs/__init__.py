"""Programs that run inside the containers, mounted read-only as this folder at
/opt/devstack: `devserver.py` (reload, error page, command mode) and `gate.py` (held start).
They use the standard library only and import nothing from devstack."""
