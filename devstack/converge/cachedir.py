"""Where devstack keeps its own files in a project (`.devstack-cache/`: build digests, what
`up` found ready). Never a build input; deleting it is always safe. A module of its own so
that `status` finds the verdicts without importing the build-input machinery."""

CACHE_DIR = ".devstack-cache"
