"""--reload as the development override runs it: real gunicorn on a temp copy of the project, so
the tests can edit source and save syntax errors without touching the checkout."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.integration.conftest import DEMO_ENDPOINTS, ROOT, Gunicorn

# gunicorn's polling reloader checks every second (ReloaderBase's default interval).
RELOADER_INTERVAL_S = 1.0
# The line of app/api/demo.py the tests edit: a field of /api/demo/whoami's answer.
ANCHOR = '"scheme": request.url.scheme,'


def project_copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "gunicorn.conf.py", project)
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    return project


def reloading_server(gunicorn: type[Gunicorn], tmp_path: Path, project: Path) -> Gunicorn:
    # The launcher run from the copy (its own app/ and gunicorn.conf.py), as in the override.
    server = gunicorn(
        tmp_path,
        {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "1", "LOG_FORMAT": "text"},
        prefix=["env", f"--chdir={project}"],
        suffix=["--reload"],
    ).start()
    server.wait_ready(workers=1)
    # gunicorn's polling reloader (no inotify in the image) starts after the worker imports the
    # app and records each file's mtime on its first pass; an edit saved before that pass is
    # never seen (gunicorn/reloader.py). On a loaded machine the pass can come after the test's
    # first edit: two of its 1 s intervals, as a developer's first save comes after them too.
    time.sleep(2 * RELOADER_INTERVAL_S)
    return server


WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def get_once(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", path, headers=headers or {"Connection": "close"})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def wait_for_answer(server: Gunicorn, status: int, marker: bytes, timeout: float = 20) -> bytes:
    """Poll /api/demo/whoami until it answers `status` with `marker` in the body."""
    deadline = time.monotonic() + timeout
    seen: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        try:
            seen = get_once(server.url, "/api/demo/whoami")
        except OSError as error:
            seen = (0, repr(error).encode())
        if seen[0] == status and marker in seen[1]:
            return seen[1]
        time.sleep(0.05)
    raise AssertionError(f"no {status} with {marker!r} in {timeout}s; last {seen}:\n{server.log()}")


def test_an_edit_under_app_is_served_after_the_reload(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    project = project_copy(tmp_path)
    server = reloading_server(gunicorn, tmp_path, project)
    demo = project / "app" / "api" / "demo.py"
    demo.write_text(demo.read_text().replace(ANCHOR, f'{ANCHOR} "edited": 1,'))
    body = wait_for_answer(server, 200, b'"edited":1')
    assert json.loads(body)["edited"] == 1


def test_a_syntax_error_is_served_with_its_file_and_line_until_the_next_save_fixes_it(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    project = project_copy(tmp_path)
    server = reloading_server(gunicorn, tmp_path, project)
    demo = project / "app" / "api" / "demo.py"
    source = demo.read_text()
    line = source.splitlines().index(next(x for x in source.splitlines() if ANCHOR in x)) + 1

    demo.write_text(source.replace(ANCHOR, f"{ANCHOR},"))
    # The developer's answer, from the worker that could not import the app: which file, which
    # line, what is wrong (gunicorn's own fail app is WSGI and would raise a TypeError here).
    body = wait_for_answer(server, 500, b"SyntaxError").decode()
    summary = body.splitlines()[0]
    assert summary == f"SyntaxError: invalid syntax ({demo}, line {line})", body
    # ...and the offending line, as Python prints it.
    assert f"{ANCHOR},\n" in body, body
    # The log has the traceback once, and the summary as its last line after each request.
    assert get_once(server.url, "/api/items")[0] == 500
    time.sleep(0.2)
    log = server.log()
    assert log.count("Traceback (most recent call last)") == 1, log
    assert log.rstrip().splitlines()[-1].endswith(f"GET /api/items 500: {summary}"), log
    assert "TypeError" not in log
    # A websocket handshake gets the same 500 and body.
    status, answer = get_once(server.url, "/api/demo/echo", WEBSOCKET_HANDSHAKE)
    assert status == 500, (status, answer)
    assert answer.decode().startswith(f"{summary}\n"), answer

    # The next save recovers: the reloader watches the file that failed, the worker restarts.
    demo.write_text(source.replace(ANCHOR, f'{ANCHOR} "fixed": 1,'))
    body = wait_for_answer(server, 200, b'"fixed":1').decode()
    assert json.loads(body)["fixed"] == 1
    assert server.process is not None
    assert server.process.poll() is None


# gunicorn's own start-up of the master, up to the fork (the config file, the logger with our
# logconfig_dict, the worker class): the app modules it prints are the ones every worker inherits.
MASTER_IMPORTS = """
import json, sys
from gunicorn.app.wsgiapp import WSGIApplication
from gunicorn.arbiter import Arbiter

sys.argv = ["gunicorn", "-c", "gunicorn.conf.py"]
Arbiter(WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]"))
app_modules = [m for n, m in list(sys.modules.items()) if n == "app" or n.startswith("app.")]
print(json.dumps(sorted(m.__file__ for m in app_modules if getattr(m, "__file__", None))))
"""


def test_every_app_module_the_master_imports_restarts_the_dev_container(tmp_path: Path) -> None:
    # A worker --reload restarts is forked from the master and inherits these modules as they
    # were: editing one changes nothing until the master itself starts again.
    result = subprocess.run(
        [sys.executable, "-c", MASTER_IMPORTS],
        cwd=ROOT,
        # TMPDIR only keeps the metrics directory the config makes inside this test's own.
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = {Path(name).relative_to(ROOT) for name in json.loads(result.stdout)}
    assert Path("app/server/worker.py") in imported

    override = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())
    watch = override["services"]["app"]["develop"]["watch"]
    restarted = [Path(rule["path"]) for rule in watch if rule["action"] == "restart"]

    def restarts(module: Path) -> bool:
        return any(module == path or path in module.parents for path in restarted)

    assert sorted(str(m) for m in imported if not restarts(m)) == []
    # The app itself is left to --reload (a new worker in about a second, not a new container).
    assert not restarts(Path("app/main.py"))
    assert not restarts(Path("app/api/demo.py"))
