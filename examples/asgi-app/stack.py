"""PostgreSQL and one ASGI web app built from this folder's Dockerfile (no Redis, no worker, no
migrations job): the Python recipes outside the seed's stack. In dev mode the app runs under
devserver with web/ mounted (a save reloads it); `DEVSTACK_DEV_MODE=false`: plain uvicorn.

`python -m devstack --project-dir examples/asgi-app up`; its tests, through the pytest plugin
(each run gets an empty database: there are no migrations): `cd examples/asgi-app &&
python -m pytest -p devstack`. tests/integration/test_other_stack.py does all of it."""

from devstack import recipes as r


def stack(env: r.Env) -> r.Stack:
    db = r.postgres(
        env,
        "postgres",
        image=env.image("DEVSTACK_POSTGRES_IMAGE", "postgres:17-alpine"),
        password=env.secret("POSTGRES_PASSWORD", r.EXAMPLE_PASSWORD),
        database="app",
    )
    image = r.dockerfile(
        env,
        "devstack-asgi-app/web",
        args={"PYTHON_IMAGE": env.image("DEVSTACK_PYTHON_IMAGE", "python:3.12-slim")},
    )
    web = r.asgi_app(
        env,
        "web",
        image,
        title="Web",
        app="web.main:app",
        port=r.publish(env, "DEVSTACK_WEB_PORT", 8080, 8000, url="http://{host}:{port}"),
        sources="web",
        environment={"DATABASE_URL": r.database_url(db, scheme="postgresql")},
        depends_on=(r.ready(db, before_start=False),),  # /ready answers once it connects
        ready_path="/ready",
        health_path="/ready",
        uid=10001,  # the Dockerfile's USER
    )
    return r.stack(env, db, web)
