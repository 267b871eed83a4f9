"""The vocabulary of a stack (pure data): services, ports, mounts, dependencies and builds
(`spec`), readiness checks (`checks`), settings and the `.env` reader (`settings`, `envfile`),
ownership labels (`labels`), and the loader of a project's `stack.py` (`stackfile`)."""
