"""The pre-start hook as the entrypoint runs it: in the server's start, or alone (`pre-start`).

Real processes: `python -m app.server ...` from this checkout, with a real hook script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import ROOT, Gunicorn


def hook_that_counts(tmp_path: Path, exit_code: int = 0) -> tuple[Path, Path]:
    """A hook that appends a line to a file each time it runs, then exits `exit_code`."""
    runs = tmp_path / "runs"
    hook = tmp_path / "prestart.sh"
    hook.write_text(f"echo ran >> {runs}\necho 'hook says hello' >&2\nexit {exit_code}\n")
    return hook, runs


def entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.server", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def times_run(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_pre_start_runs_the_hook_once_and_exits_with_its_code(tmp_path: Path) -> None:
    hook, runs = hook_that_counts(tmp_path)
    result = entrypoint("pre-start", env={"PRE_START_PATH": str(hook)})
    assert result.returncode == 0, result.stderr
    assert times_run(runs) == 1
    assert "hook says hello" in result.stderr
    assert f"pre-start: {hook} finished" in result.stderr
    assert "Starting gunicorn" not in result.stdout + result.stderr


def test_pre_start_reports_a_failing_hook_without_talking_of_a_server(tmp_path: Path) -> None:
    hook, runs = hook_that_counts(tmp_path, exit_code=7)
    result = entrypoint("pre-start", env={"PRE_START_PATH": str(hook)})
    assert result.returncode == 7
    assert times_run(runs) == 1
    assert result.stderr.rstrip().endswith(f"pre-start: {hook} failed with exit code 7")


def test_pre_start_without_a_hook_says_so_and_succeeds(tmp_path: Path) -> None:
    missing = tmp_path / "prestart.sh"
    result = entrypoint("pre-start", env={"PRE_START_PATH": str(missing)})
    assert result.returncode == 0
    assert f"pre-start: no hook at {missing} (PRE_START_PATH): nothing to run" in result.stderr


def test_pre_start_exits_on_a_bad_variable_even_when_the_server_would_wait(
    tmp_path: Path,
) -> None:
    hook, runs = hook_that_counts(tmp_path)
    env = {"PRE_START_PATH": str(hook), "ON_CONFIG_ERROR": "wait", "WEB_CONCURRENCY": "lots"}
    result = entrypoint("pre-start", env=env)
    assert result.returncode == 2
    assert "WEB_CONCURRENCY='lots'" in result.stderr
    assert times_run(runs) == 0


def test_pre_start_refuses_arguments(tmp_path: Path) -> None:
    hook, runs = hook_that_counts(tmp_path)
    result = entrypoint("pre-start", "--now", env={"PRE_START_PATH": str(hook)})
    assert result.returncode == 2
    assert result.stderr.strip() == "pre-start takes no arguments, got: --now"
    assert times_run(runs) == 0


def test_a_directory_as_the_hook_is_named_in_one_line(tmp_path: Path) -> None:
    result = entrypoint("pre-start", env={"PRE_START_PATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"pre-start: PRE_START_PATH={tmp_path} is a directory, not a script"
    )


def test_the_server_runs_the_hook_before_gunicorn_by_default(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    hook, runs = hook_that_counts(tmp_path)
    server = gunicorn(tmp_path, {"WEB_CONCURRENCY": "1", "PRE_START_PATH": str(hook)}).start()
    server.wait_ready(workers=1)
    assert times_run(runs) == 1
    log = server.log()
    assert log.index("hook says hello") < log.index("Starting gunicorn")


def test_the_server_leaves_the_hook_to_pre_start_when_told(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    hook, runs = hook_that_counts(tmp_path)
    env = {"WEB_CONCURRENCY": "1", "PRE_START_PATH": str(hook), "PRE_START_IN_SERVER": "false"}
    server = gunicorn(tmp_path, env).start()
    server.wait_ready(workers=1)
    assert times_run(runs) == 0
    assert "pre-start" not in server.log()
