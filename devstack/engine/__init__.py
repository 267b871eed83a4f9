"""The only code that talks to Docker: `docker.DockerEngine` (the Engine protocol), its
standard-library socket transport (`socket`), which engine to use (`endpoint`), and Docker's
errors translated into devstack's (`errors`)."""
