"""Configuration from the environment: defaults a container behind nginx wants, and a bad
variable refused with one line naming it, its value and what is allowed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from app.main import create_app
from app.server.config import ConfigError, build, load_settings
from app.server.settings import ServerSettings
from app.settings import AppSettings

SetEnv = Callable[[dict[str, str]], None]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> SetEnv:
    """Sets the variables a test names, in this process's environment, which is what the master
    and the workers read; every other settings variable is removed first, so the shell's own
    PORT or LOG_LEVEL cannot decide a test."""
    for name in {*ServerSettings.model_fields, *AppSettings.model_fields}:
        monkeypatch.delenv(name, raising=False)

    def set_env(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return set_env


BAD_INPUTS = [
    ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY='abc'", "valid integer"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0'", "greater than or equal to 1"),
    ({"WEB_CONCURRENCY": "-3"}, "WEB_CONCURRENCY='-3'", "greater than or equal to 1"),
    ({"WORKERS_PER_CORE": "zero"}, "WORKERS_PER_CORE='zero'", "valid number"),
    ({"WORKERS_PER_CORE": "0"}, "WORKERS_PER_CORE='0'", "greater than 0"),
    ({"MIN_WORKERS": "0"}, "MIN_WORKERS='0'", "greater than or equal to 1"),
    ({"MIN_WORKERS": "4", "MAX_WORKERS": "2"}, "MIN_WORKERS=4", "greater than MAX_WORKERS=2"),
    ({"MAX_WORKERS": "1.5"}, "MAX_WORKERS='1.5'", "valid integer"),
    ({"PORT": "70000"}, "PORT='70000'", "less than or equal to 65535"),
    ({"PORT": "0"}, "PORT='0'", "greater than or equal to 1"),
    ({"PORT": "http"}, "PORT='http'", "valid integer"),
    ({"BIND": "localhost"}, "BIND='localhost'", "host:port, [ipv6]:port, unix:/path or fd://N"),
    ({"BIND": "0.0.0.0:99999"}, "BIND='0.0.0.0:99999'", "outside 1-65535"),
    ({"TIMEOUT": "-1"}, "TIMEOUT='-1'", "greater than or equal to 1"),
    ({"GRACEFUL_TIMEOUT": "soon"}, "GRACEFUL_TIMEOUT='soon'", "valid integer"),
    ({"KEEP_ALIVE": "0"}, "KEEP_ALIVE='0'", "greater than or equal to 1"),
    ({"MAX_REQUESTS": "-1"}, "MAX_REQUESTS='-1'", "greater than or equal to 0"),
    (
        {"LOG_LEVEL": "verbose"},
        "LOG_LEVEL='verbose'",
        "'debug', 'info', 'warning', 'error' or 'critical'",
    ),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'", "'json' or 'text'"),
    ({"ACCESS_LOG": "sometimes"}, "ACCESS_LOG='sometimes'", "valid boolean"),
    ({"PRELOAD": "2"}, "PRELOAD='2'", "valid boolean"),
    (
        {"FORWARDED_ALLOW_IPS": "nginx"},
        "FORWARDED_ALLOW_IPS='nginx'",
        "'nginx' is not an IP address or CIDR network",
    ),
    (
        {"FORWARDED_ALLOW_IPS": "10.0.0.1/24"},
        "FORWARDED_ALLOW_IPS='10.0.0.1/24'",
        "'10.0.0.1/24' is not an IP address or CIDR network (10.0.0.1/24 has host bits set)",
    ),
    ({"MEMORY_PER_WORKER_MB": "1"}, "MEMORY_PER_WORKER_MB='1'", "greater than or equal to 16"),
    ({"DOCS_ENABLED": "perhaps"}, "DOCS_ENABLED='perhaps'", "valid boolean"),
    ({"ROOT_PATH": "api/"}, "ROOT_PATH='api/'", "should match pattern"),
]


@pytest.mark.parametrize(
    ("env", "names", "allowed"),
    BAD_INPUTS,
    ids=[next(iter(env)) + "=" + next(iter(env.values())) for env, _, _ in BAD_INPUTS],
)
def test_bad_variable_is_refused_in_one_line_naming_it(
    environment: SetEnv, env: dict[str, str], names: str, allowed: str
) -> None:
    environment(env)
    with pytest.raises(ConfigError) as caught:
        build(proc_self_cgroup="", affinity=2, host_cpus=2)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: ")
    assert names in message
    assert allowed in message


def test_every_bad_variable_is_named_at_once(environment: SetEnv) -> None:
    # Two of the server's and one of the app's: both models are read before the line is made.
    environment({"PORT": "x", "LOG_LEVEL": "y", "DOCS_ENABLED": "z"})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "PORT='x'" in str(caught.value)
    assert "LOG_LEVEL='y'" in str(caught.value)
    assert "DOCS_ENABLED='z'" in str(caught.value)


def test_empty_variable_means_unset(environment: SetEnv) -> None:
    environment({"WEB_CONCURRENCY": "", "PORT": ""})
    server, _ = load_settings()
    assert server.WEB_CONCURRENCY is None
    assert server.PORT == 8000


def test_defaults_suit_a_container_behind_nginx() -> None:
    settings = ServerSettings.model_validate({})
    assert settings.binds == ["0.0.0.0:8000"]
    assert "*" not in settings.FORWARDED_ALLOW_IPS
    assert settings.GRACEFUL_TIMEOUT < 30  # compose's stop_grace_period
    assert str(settings.WORKER_TMP_DIR) == "/dev/shm"
    assert settings.LOG_FORMAT == "json"


@pytest.mark.parametrize(
    ("env", "binds"),
    [
        ({"HOST": "127.0.0.1", "PORT": "9000"}, ["127.0.0.1:9000"]),
        ({"HOST": "::", "PORT": "9000"}, ["[::]:9000"]),
        (
            {"BIND": "unix:/tmp/app.sock, 0.0.0.0:8000", "PORT": "1"},
            ["unix:/tmp/app.sock", "0.0.0.0:8000"],
        ),
        ({"BIND": "[::1]:8000"}, ["[::1]:8000"]),
    ],
)
def test_bind_comes_from_host_and_port_unless_bind_is_set(
    env: dict[str, str], binds: list[str]
) -> None:
    assert ServerSettings.model_validate(env).binds == binds


def test_trusted_proxies_accept_addresses_and_networks() -> None:
    settings = ServerSettings.model_validate({"FORWARDED_ALLOW_IPS": "10.0.0.1, 172.30.0.0/24"})
    assert settings.FORWARDED_ALLOW_IPS == "10.0.0.1,172.30.0.0/24"


# The app's variables as an operator may write them: bad, empty (unset), and spellings pydantic
# accepts. Workers never read the server's model; they build the app from AppSettings().
APP_ENVIRONMENTS = [
    {"DOCS_ENABLED": "perhaps"},
    {"DOCS_ENABLED": ""},
    {"DOCS_ENABLED": "TRUE"},
    {"DOCS_ENABLED": "0"},
    {"APP_NAME": ""},
    {"APP_NAME": " spaced name "},
    {"ROOT_PATH": "api/"},
    {"ROOT_PATH": ""},
    {"APP_VERSION": "", "FAULT_INJECTION_ENABLED": "off"},
]


@pytest.mark.parametrize("env", APP_ENVIRONMENTS, ids=str)
def test_the_master_accepts_exactly_what_a_worker_accepts(
    environment: SetEnv, env: dict[str, str]
) -> None:
    environment(env)
    try:
        _, master = load_settings()
    except ConfigError:
        master = None
    # What a worker runs: gunicorn calls the app factory, which reads the environment itself.
    try:
        worker = create_app().state.settings
    except ValidationError:
        worker = None
    assert master == worker
