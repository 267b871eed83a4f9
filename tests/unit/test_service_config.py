"""Settings of the API service: defaults, URL normalisation, one-line errors naming the variable."""

from __future__ import annotations

import os

import pytest

from service.config import Settings, get_settings, redact_url

DSN = "postgresql://app:s3cret@db:5432/appdb"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AI_AGENTS_* variable from the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("AI_AGENTS_"):
            monkeypatch.delenv(name)


def startup_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The message get_settings() exits with for this environment."""
    for name, value in env.items():
        monkeypatch.setenv(f"AI_AGENTS_{name}", value)
    with pytest.raises(SystemExit) as excinfo:
        get_settings()
    message = str(excinfo.value.code)
    assert "\n" not in message, "the error must be one line"
    assert message.startswith("configuration error: ")
    return message


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_AGENTS_DATABASE_URL", DSN)
    settings = get_settings()
    assert settings.database_url == DSN
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.celery_broker_url == "redis://redis:6379/1"
    assert (settings.cache_db, settings.broker_db) == (0, 1)
    assert settings.log_level == "info"
    assert settings.environment == "development"
    assert settings.health_timeout_s == 1.0


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:s3cret@db:5432/appdb",
        "postgres://app:s3cret@db:5432/appdb",
        "postgresql://app:s3cret@db:5432/appdb",
        "  POSTGRESQL+ASYNCPG://app:s3cret@db:5432/appdb ",
    ],
)
def test_database_url_normalised_for_asyncpg(url: str) -> None:
    assert Settings(database_url=url).database_url == DSN


def test_database_name_and_user_without_password() -> None:
    settings = Settings(database_url="postgres://app%40x:p%3Aw@db/my%20db")
    assert settings.database_name == "my db"
    assert settings.database_user == "app@x"
    assert "p:w" in settings.secrets and "p%3Aw" in settings.secrets


def test_enum_like_values_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_AGENTS_DATABASE_URL", DSN)
    monkeypatch.setenv("AI_AGENTS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("AI_AGENTS_ENVIRONMENT", "Production")
    monkeypatch.setenv("AI_AGENTS_HEALTH_TIMEOUT_S", "2.5")
    settings = get_settings()
    assert (settings.log_level, settings.environment) == ("debug", "production")
    assert settings.health_timeout_s == 2.5


def test_missing_database_url_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = startup_error(monkeypatch)
    assert message == "configuration error: AI_AGENTS_DATABASE_URL: field required"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://app:s3cret@db/appdb"),
        ("DATABASE_URL", "postgresql://app:s3cret@db"),
        ("DATABASE_URL", "postgresql://app:s3cret@db:port/appdb"),
        ("REDIS_URL", "redis://redis:99999/0"),
        ("REDIS_URL", "http://redis:6379/0"),
        ("CELERY_BROKER_URL", "redis://redis:6379/one"),
        ("LOG_LEVEL", "verbose"),
        ("ENVIRONMENT", "prod"),
        ("HEALTH_TIMEOUT_S", "0"),
        ("HEALTH_TIMEOUT_S", "soon"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env = {"DATABASE_URL": DSN, variable: value}
    message = startup_error(monkeypatch, **env)
    assert f"AI_AGENTS_{variable}: " in message
    assert "s3cret" not in message
    assert "Traceback" not in message and "pydantic" not in message


def test_several_errors_share_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = startup_error(monkeypatch, LOG_LEVEL="loud", HEALTH_TIMEOUT_S="-1")
    for variable in ("DATABASE_URL", "LOG_LEVEL", "HEALTH_TIMEOUT_S"):
        assert f"AI_AGENTS_{variable}: " in message


def test_cache_and_broker_must_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    message = startup_error(monkeypatch, DATABASE_URL=DSN, CELERY_BROKER_URL="redis://redis:6379/0")
    assert "AI_AGENTS_REDIS_URL" in message and "AI_AGENTS_CELERY_BROKER_URL" in message


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url(DSN) == "postgresql://app:***@db:5432/appdb"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_result_backend_defaults_to_db_2_on_the_brokers_server() -> None:
    settings = Settings(database_url=DSN, celery_broker_url="rediss://:pw@queue:6380/1")
    assert settings.result_backend_url == "rediss://:pw@queue:6380/2"
    assert settings.result_db == 2
    assert "pw" in settings.secrets


def test_result_backend_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_AGENTS_DATABASE_URL", DSN)
    monkeypatch.setenv("AI_AGENTS_CELERY_RESULT_BACKEND", "redis://results:6379/5")
    settings = get_settings()
    assert (settings.result_backend_url, settings.result_db) == ("redis://results:6379/5", 5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CELERY_RESULT_BACKEND", "http://results:6379/2"),
        ("CELERY_RESULT_BACKEND", "redis://results:6379/two"),
        ("CELERY_VISIBILITY_TIMEOUT_S", "0"),
    ],
)
def test_invalid_celery_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    message = startup_error(monkeypatch, DATABASE_URL=DSN, **{variable: value})
    assert f"AI_AGENTS_{variable}: " in message


def test_results_must_not_share_the_cache_database(monkeypatch: pytest.MonkeyPatch) -> None:
    message = startup_error(monkeypatch, DATABASE_URL=DSN, REDIS_URL="redis://redis:6379/2")
    assert "AI_AGENTS_REDIS_URL" in message and "AI_AGENTS_CELERY_RESULT_BACKEND" in message


def test_sqlalchemy_url_uses_asyncpg() -> None:
    settings = Settings(database_url="postgres://app:s3cret@db:5432/appdb")
    assert settings.sqlalchemy_url == "postgresql+asyncpg://app:s3cret@db:5432/appdb"
