"""The image's entrypoint: `python -m app.server [print-config | pre-start | gunicorn args...]`.

1. Validate every variable first. gunicorn parses WEB_CONCURRENCY with int() when it is
   imported, before any config file runs, so `WEB_CONCURRENCY=lots gunicorn ...` would die with a
   traceback; here it gets one line naming the variable, and exit code 2. With
   ON_CONFIG_ERROR=wait (docker-compose.yml sets it) the process prints the same line and then
   waits to be stopped instead of exiting: see `wait_for_stop`.
2. Run the pre-start hook (PRE_START_PATH, e.g. migrations) once, if the file exists, unless
   PRE_START_IN_SERVER is false.
3. exec() gunicorn in this same process: gunicorn keeps the PID (1 in a container) and receives
   SIGTERM/SIGHUP directly, with no shell in between.

`pre-start` does steps 1 and 2 only, whatever PRE_START_IN_SERVER says, and exits with the hook's
code: what a Kubernetes Job (components/migrations) or `docker compose run --rm app pre-start`
runs once per release, so that replicas starting together do not race through the migrations.
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 - runs the operator's own pre-start hook, no shell
import sys
from pathlib import Path

from app.server.config import CONFIG_ERROR_EXIT, CONFIG_FILE, ConfigError, load_settings
from app.server.config import main as print_config

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Read raw here although the settings model declares it (and documents it): it decides what
# happens when that model refuses the rest.
ON_CONFIG_ERROR = "ON_CONFIG_ERROR"
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


def wait_for_stop(signals: frozenset[signal.Signals] = STOP_SIGNALS) -> int:
    """Block until one of `signals` arrives; the configuration error's exit code.

    A restart policy cannot leave out one exit code: `restart: unless-stopped` restarts a
    container that exits 2 forever, and `on-failure:N` would also give up on a pre-start hook
    waiting for a database, count crashes over the container's whole life, and not start the app
    after a clean reboot. A container's environment cannot change while it exists, so restarting
    it cannot fix its configuration: the process stays, restarts nothing, the healthcheck reports
    the line, and `docker compose up` (which recreates the container) or `stop` ends it.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    signal.sigwait(signals)
    return CONFIG_ERROR_EXIT


def run_pre_start(hook: Path, when_it_fails: str = "") -> int:
    """Run the hook if it exists; its exit code (0 when absent).

    `when_it_fails` ends the line printed for a failure: what does not happen because of it.
    """
    if hook.is_dir():
        print(
            f"pre-start: PRE_START_PATH={hook} is a directory, not a script{when_it_fails}",
            file=sys.stderr,
            flush=True,
        )
        return CONFIG_ERROR_EXIT
    if not hook.exists():
        return 0
    print(f"pre-start: running {hook}", file=sys.stderr, flush=True)
    command = [str(hook)] if os.access(hook, os.X_OK) else ["sh", str(hook)]
    returncode = subprocess.run(command, check=False).returncode  # noqa: S603  # nosec B603 - the operator's hook
    if returncode != 0:
        print(
            f"pre-start: {hook} failed with exit code {returncode}{when_it_fails}",
            file=sys.stderr,
            flush=True,
        )
    return returncode


def pre_start_only(argv: list[str]) -> int:
    """`pre-start`: validate the configuration, run the hook, exit with its code.

    A configuration error always exits here, whatever ON_CONFIG_ERROR says: a one-off run that
    waited would hold a Job (or `docker compose run`) open until its deadline.
    """
    if argv:
        print(f"pre-start takes no arguments, got: {' '.join(argv)}", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT
    try:
        settings, _ = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT
    hook = PROJECT_DIR / settings.PRE_START_PATH
    if not hook.exists():
        # Not an error: the component may be on before the project has migrations.
        print(f"pre-start: no hook at {hook} (PRE_START_PATH): nothing to run", file=sys.stderr)
        return 0
    returncode = run_pre_start(hook)
    if returncode == 0:
        print(f"pre-start: {hook} finished", file=sys.stderr, flush=True)
    return returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["print-config"]:
        return print_config(argv[1:])
    if argv[:1] == ["pre-start"]:
        return pre_start_only(argv[1:])
    try:
        settings, _ = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr, flush=True)
        if os.environ.get(ON_CONFIG_ERROR) == "wait":
            print(
                "not starting, and not exiting into a restart loop: fix the variable, then "
                "`docker compose up -d` replaces this container",
                file=sys.stderr,
                flush=True,
            )
            return wait_for_stop()
        return CONFIG_ERROR_EXIT
    if settings.PRE_START_IN_SERVER:
        hook = PROJECT_DIR / settings.PRE_START_PATH
        hook_status = run_pre_start(hook, when_it_fails="; not starting the server")
        if hook_status != 0:
            return hook_status
    command = [sys.executable, "-m", "gunicorn", "-c", str(CONFIG_FILE), *argv]
    os.execv(sys.executable, command)  # noqa: S606  # nosec B606 - becomes gunicorn
    raise AssertionError("unreachable: execv does not return")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
