"""The FastAPI app in-process: routes by name, probes, request ids, metrics, docs switch."""

from __future__ import annotations

import inspect
import json
import logging
import logging.config
from collections.abc import Iterable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from app.logs import ACCESS_LOGGER, logging_config
from app.main import create_app
from app.settings import AppSettings


@pytest.fixture
def app() -> FastAPI:
    return create_app(AppSettings.model_validate({}))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:  # runs the lifespan: startup completed
        yield client


@pytest.fixture
def demo_app() -> FastAPI:
    # The tests of /api/demo/{wait,whoami,echo} themselves: those are off unless this is set.
    return create_app(AppSettings.model_validate({"DEMO_ENDPOINTS_ENABLED": "true"}))


@pytest.fixture
def demo_client(demo_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(demo_app) as client:
        yield client


def test_healthz_answers(client: TestClient, app: FastAPI) -> None:
    response = client.get(app.url_path_for("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_until_startup_completes(app: FastAPI) -> None:
    not_started = TestClient(app)  # no context manager: lifespan never ran
    response = not_started.get(app.url_path_for("readyz"))
    assert response.status_code == 503
    assert response.json() == {"status": "starting"}
    with TestClient(app) as started:
        assert started.get(app.url_path_for("readyz")).status_code == 200


def test_readyz_is_503_once_shutdown_has_begun(app: FastAPI) -> None:
    with TestClient(app):
        pass  # lifespan shutdown ran on exit
    response = TestClient(app).get(app.url_path_for("readyz"))
    assert response.status_code == 503
    assert response.json() == {"status": "shutting down"}


def test_items_can_be_created_listed_and_fetched(client: TestClient, app: FastAPI) -> None:
    created = client.post(
        app.url_path_for("create_item"), json={"name": "widget", "price": 2.5, "tags": ["a"]}
    )
    assert created.status_code == 201
    item = created.json()
    assert item == {"id": 1, "name": "widget", "price": 2.5, "tags": ["a"]}
    assert client.get(app.url_path_for("get_item", item_id=1)).json() == item
    assert client.get(app.url_path_for("list_items")).json() == [item]


def test_missing_item_is_a_404_with_a_reason(client: TestClient, app: FastAPI) -> None:
    response = client.get(app.url_path_for("get_item", item_id=99))
    assert response.status_code == 404
    assert response.json() == {"detail": "item 99 not found"}


def test_invalid_body_is_a_422_naming_the_field(client: TestClient, app: FastAPI) -> None:
    response = client.post(app.url_path_for("create_item"), json={"name": "", "price": -1})
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert fields == {("body", "name"), ("body", "price")}


def test_request_id_from_nginx_is_kept(client: TestClient, app: FastAPI) -> None:
    rid = "0123456789abcdef0123456789abcdef"
    response = client.get(app.url_path_for("healthz"), headers={"X-Request-ID": rid})
    assert response.headers["x-request-id"] == rid


@pytest.mark.parametrize("bad", ["short", "a" * 200, "has space inside it", "new\\nline-injection"])
def test_malformed_request_id_is_replaced(client: TestClient, app: FastAPI, bad: str) -> None:
    response = client.get(app.url_path_for("healthz"), headers={"X-Request-ID": bad})
    generated = response.headers["x-request-id"]
    assert generated != bad
    assert len(generated) == 32
    int(generated, 16)


def test_request_id_is_generated_when_absent(client: TestClient, app: FastAPI) -> None:
    first = client.get(app.url_path_for("healthz")).headers["x-request-id"]
    second = client.get(app.url_path_for("healthz")).headers["x-request-id"]
    assert first != second


@pytest.fixture
def broken_app() -> FastAPI:
    """This test's own app: the shipped one plus a route that raises (the shipped app has none)."""
    app = create_app(AppSettings.model_validate({}))

    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/broken", broken)
    return app


def test_an_unhandled_exception_is_a_500_with_the_request_id_counted_and_logged(
    broken_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    rid = "fedcba9876543210fedcba9876543210"
    with (
        caplog.at_level(logging.INFO),
        TestClient(broken_app, raise_server_exceptions=False) as client,
    ):
        before = _counter(client.get("/metrics").text, "/broken", "500")
        sent = client.get("/broken", headers={"X-Request-ID": rid})
        unsent = client.get("/broken")
        after = _counter(client.get("/metrics").text, "/broken", "500")
    assert (sent.status_code, sent.text) == (500, "Internal Server Error")
    assert sent.headers["x-request-id"] == rid
    assert unsent.status_code == 500
    generated = unsent.headers["x-request-id"]
    assert len(generated) == 32
    assert generated != rid
    int(generated, 16)
    assert after == before + 2
    # The access line and the error line (with its traceback) both name the request.
    access = [r.__dict__["request_id"] for r in caplog.records if r.name == ACCESS_LOGGER]
    assert access == [rid, generated]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.__dict__.get("request_id") for r in errors] == [rid, generated]
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in errors)


def test_access_line_has_route_status_duration_client_and_request_id(
    client: TestClient, app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.get(
            app.url_path_for("get_item", item_id=7), headers={"X-Request-ID": "req-12345678"}
        )
    [record] = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    fields = record.__dict__
    assert fields["method"] == "GET"
    assert fields["path"] == "/api/items/7"
    assert fields["route"] == "/api/items/{item_id}"
    assert fields["status"] == 404
    assert fields["duration_ms"] >= 0
    assert fields["client_ip"] == "testclient"
    assert fields["request_id"] == "req-12345678"


def test_with_access_log_off_only_server_errors_are_logged(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/broken", broken)
    # ACCESS_LOG=false leaves the access logger at WARNING (app.logs.logging_config).
    with (
        caplog.at_level(logging.WARNING, logger=ACCESS_LOGGER),
        TestClient(app, raise_server_exceptions=False) as started,
    ):
        assert started.get(app.url_path_for("list_items")).status_code == 200
        assert started.get("/broken").status_code == 500
    logged = [
        (r.levelno, r.__dict__["path"], r.__dict__["status"])
        for r in caplog.records
        if r.name == ACCESS_LOGGER
    ]
    assert logged == [(logging.WARNING, "/broken", 500)]


def _counter(metrics_text: str, route: str, status: str) -> float:
    for line in metrics_text.splitlines():
        if (
            line.startswith("http_requests_total{")
            and f'route="{route}"' in line
            and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_by_route_template_not_raw_path(client: TestClient, app: FastAPI) -> None:
    metrics_url = app.url_path_for("metrics")
    before = _counter(client.get(metrics_url).text, "/api/items/{item_id}", "404")
    for item_id in (101, 102, 103):
        client.get(app.url_path_for("get_item", item_id=item_id))
    after = client.get(metrics_url).text
    assert _counter(after, "/api/items/{item_id}", "404") == before + 3
    assert "/api/items/101" not in after


def test_unknown_paths_share_one_metrics_series(client: TestClient, app: FastAPI) -> None:
    before = _counter(client.get(app.url_path_for("metrics")).text, "unmatched", "404")
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    after = client.get(app.url_path_for("metrics")).text
    assert _counter(after, "unmatched", "404") == before + 2


def test_docs_are_off_by_default_and_switchable() -> None:
    with TestClient(create_app(AppSettings.model_validate({}))) as off:
        assert off.get("/docs").status_code == 404
        assert off.get("/openapi.json").status_code == 404
    with TestClient(create_app(AppSettings.model_validate({"DOCS_ENABLED": "true"}))) as on:
        assert on.get("/docs").status_code == 200
        schema = on.get("/openapi.json").json()
        assert "/api/items" in schema["paths"]


def test_wait_endpoint_is_bounded(demo_client: TestClient, demo_app: FastAPI) -> None:
    wait = demo_app.url_path_for("wait")
    assert demo_client.get(wait, params={"ms": 1}).json()["waited_ms"] == 1
    assert demo_client.get(wait, params={"ms": 600_000}).status_code == 422


def test_demo_endpoints_are_off_by_default(client: TestClient, app: FastAPI) -> None:
    for name in ("wait", "whoami"):
        answer = client.get(app.url_path_for(name))
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"})
    answer = client.post(app.url_path_for("upload"), content=b"x")
    assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"})
    # The websocket's upgrade is refused with the same 404, before any handshake.
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/api/demo/echo"),
    ):
        pass
    assert refused.value.status_code == 404


def test_json_log_lines_are_single_objects(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logging_config("info", "json", access_log=False))
    try:
        logging.getLogger("app").info("hello", extra={"answer": 42})
        line = capsys.readouterr().out.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "hello"
        assert record["answer"] == 42
        assert record["level"] == "INFO"
        assert {"time", "logger", "pid"} <= record.keys()
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_websocket_echo(demo_client: TestClient) -> None:
    with demo_client.websocket_connect("/api/demo/echo") as websocket:
        websocket.send_text("ping")
        assert websocket.receive_text() == "ping"


def test_probes_are_logged_only_when_they_fail(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        with TestClient(app) as started:
            started.get(app.url_path_for("healthz"))
            started.get(app.url_path_for("readyz"))
            started.get(app.url_path_for("metrics"))
        TestClient(app).get(app.url_path_for("readyz"))  # after shutdown: 503
    logged = [
        (r.__dict__["path"], r.__dict__["status"])
        for r in caplog.records
        if r.name == ACCESS_LOGGER
    ]
    assert logged == [("/readyz", 503)]


def test_block_endpoint_is_off_unless_fault_injection_is_enabled(app: FastAPI) -> None:
    with TestClient(app) as off:
        assert off.get(app.url_path_for("block"), params={"seconds": 0.01}).status_code == 404
    on_app = create_app(AppSettings.model_validate({"FAULT_INJECTION_ENABLED": "true"}))
    with TestClient(on_app) as on:
        answer = on.get(on_app.url_path_for("block"), params={"seconds": 0.01})
        assert answer.json() == {"blocked_s": 0.01}


def test_whoami_reports_client_and_scheme(demo_client: TestClient, demo_app: FastAPI) -> None:
    answer = demo_client.get(demo_app.url_path_for("whoami")).json()
    assert answer["client"] == "testclient"
    assert answer["scheme"] == "http"


def _sync_dependencies(dependant: Dependant) -> list[str]:
    found = []
    for sub in dependant.dependencies:
        if sub.call is not None and not inspect.iscoroutinefunction(sub.call):
            found.append(getattr(sub.call, "__qualname__", repr(sub.call)))
        found += _sync_dependencies(sub)
    return found


def _routes(routes: Iterable[object]) -> Iterator[APIRoute | APIWebSocketRoute]:
    """Every route, through included routers (FastAPI 0.165 keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield route
        inner = getattr(getattr(route, "original_router", route), "routes", None)
        if inner is not None and inner is not routes:
            yield from _routes(inner)


def test_no_dependency_of_a_route_runs_in_the_thread_pool(demo_app: FastAPI) -> None:
    # FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request. The
    # demo gate was one for a while, and /api/demo/whoami served about 40% fewer requests/s.
    routes = list(_routes(demo_app.routes))
    assert {"/api/demo/whoami", "/api/demo/echo", "/api/items"} <= {r.path for r in routes}
    sync = {route.path: names for route in routes if (names := _sync_dependencies(route.dependant))}
    assert sync == {}
