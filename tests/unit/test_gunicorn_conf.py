"""gunicorn.conf.py exports exactly the settings app.server.config decides, under names gunicorn
knows (gunicorn ignores an unknown name in a config file without a word)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import prometheus_client
import pytest

from app.server.hooks import freeze_before_fork, metrics_dir

ROOT = Path(__file__).resolve().parents[2]

INSPECT = """
import json, runpy, types
from gunicorn.config import Config
namespace = runpy.run_path("gunicorn.conf.py")
known = set(Config().settings)
# What the file defines: not its imports (modules, and functions or classes from elsewhere).
exported = {
    name: value for name, value in namespace.items()
    if not name.startswith("_") and not isinstance(value, types.ModuleType)
    and not (callable(value) and value.__module__ != namespace["__name__"])
}
# gunicorn's own validation of each value, as it loads a config file (Config.set).
config, refused = Config(), {}
for name, value in exported.items():
    try:
        config.set(name, value)
    except Exception as error:
        refused[name] = f"{type(error).__name__}: {error}"
print(json.dumps({
    "unknown": sorted(set(exported) - known),
    "refused": refused,
    "values": {k: v for k, v in exported.items() if not callable(v)},
    "hooks": sorted(k for k, v in exported.items() if callable(v)),
}, default=str))
"""


def run_python(args: list[str], tmp_path: Path, env: dict[str, str]) -> str:
    """Python in the project directory with only PATH and `env`; its stdout. TMPDIR only keeps
    the metrics directory the config makes inside this test's own."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def inspect_conf(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    inspected: dict[str, object] = json.loads(run_python(["-c", INSPECT], tmp_path, env))
    return inspected


def test_every_exported_name_is_a_gunicorn_setting(tmp_path: Path) -> None:
    inspected = inspect_conf(tmp_path, {})
    assert inspected["unknown"] == []
    assert inspected["hooks"] == [
        "child_exit",
        "nworkers_changed",
        "on_exit",
        "on_reload",
        "on_starting",
        "pre_fork",
        "when_ready",
    ]


def test_exported_values_are_the_decided_ones(tmp_path: Path) -> None:
    env = {"WEB_CONCURRENCY": "3", "PORT": "9001", "CONTROL_SOCKET": "/tmp/x.ctl"}
    values = inspect_conf(tmp_path, env)["values"]
    assert isinstance(values, dict)
    assert values["workers"] == 3
    assert values["bind"] == ["0.0.0.0:9001"]
    assert values["worker_class"] == "app.server.worker.Worker"
    assert values["wsgi_app"] == "app.main:create_app()"
    assert values["control_socket"] == "/tmp/x.ctl"
    assert values["control_socket_disable"] is False
    assert values["accesslog"] is None


def test_print_config_shows_exactly_what_the_file_sets(tmp_path: Path) -> None:
    env = {"WEB_CONCURRENCY": "2", "CONTROL_SOCKET": "/tmp/y.ctl", "LOG_LEVEL": "warning"}
    values = inspect_conf(tmp_path, env)["values"]
    assert isinstance(values, dict)
    own_tmp = tmp_path / "print-config"
    own_tmp.mkdir()
    printed = run_python(["-m", "app.server.config"], own_tmp, env)
    shown = {k: v for k, v in values.items() if k != "logconfig_dict"}
    assert json.loads(printed)["gunicorn"] == shown
    assert list(own_tmp.iterdir()) == [], "print-config removed the metrics directory it made"


# Values at the edges of what the settings accept: gunicorn must take each of them too, or a
# variable the entrypoint let through would stop gunicorn with a line that names no variable.
ACCEPTED_AT_THE_EDGES = [
    {},
    {"FORWARDED_ALLOW_IPS": "*"},
    {"FORWARDED_ALLOW_IPS": "10.0.0.0/8, ::1, 192.168.0.0/16"},
    {"BIND": "unix:/tmp/app.sock, [::1]:8000, 127.0.0.1:65535"},
    {"HOST": "::", "PORT": "1"},
    {"WORKER_TMP_DIR": "/tmp", "CONTROL_SOCKET": "/tmp/c.ctl", "PRELOAD": "yes"},
    {"LOG_LEVEL": "critical", "LOG_FORMAT": "text", "ACCESS_LOG": "on"},
    {"TIMEOUT": "3600", "GRACEFUL_TIMEOUT": "1", "KEEP_ALIVE": "3600", "BACKLOG": "65535"},
    {"MAX_REQUESTS": "1", "MAX_REQUESTS_JITTER": "0", "WEB_CONCURRENCY": "1"},
]


@pytest.mark.parametrize("env", ACCEPTED_AT_THE_EDGES, ids=str)
def test_gunicorn_takes_every_value_the_settings_accept(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert inspect_conf(tmp_path, env)["refused"] == {}


def test_the_control_socket_is_off_unless_a_path_is_given(tmp_path: Path) -> None:
    values = inspect_conf(tmp_path, {})["values"]
    assert isinstance(values, dict)
    assert values["control_socket_disable"] is True


def test_readme_configuration_tables_match_the_settings_models_and_nginx_variables() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/config_reference.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_preload_freezes_the_masters_objects_before_fork_and_only_then() -> None:
    try:
        freeze_before_fork(preload=False)
        assert gc.get_freeze_count() == 0
        freeze_before_fork(preload=True)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_metrics_directory_is_refused_once_prometheus_chose_in_process_values(
    tmp_path: Path,
) -> None:
    # This process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR: the choice the
    # master must never make before the directory exists (workers would each count alone).
    assert prometheus_client.values.ValueClass is prometheus_client.values.MutexValue
    with pytest.raises(RuntimeError, match="imported before PROMETHEUS_MULTIPROC_DIR was set"):
        metrics_dir(tmp_path, {})


def test_the_config_leaves_prometheus_client_unimported_until_the_directory_is_set(
    tmp_path: Path,
) -> None:
    # As the image runs it: no PROMETHEUS_MULTIPROC_DIR in the environment.
    probe = (
        "import runpy, sys\n"
        "runpy.run_path('gunicorn.conf.py')\n"
        "from prometheus_client import values\n"
        "print(values.ValueClass is values.MutexValue)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "False", "workers would count in-process"
