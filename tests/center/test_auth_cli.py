"""``citysense users`` on the case database (SQLite and PostgreSQL), ``serve`` in production
without an admin, and the API-calling commands' ``--token`` (one line on 401/403)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from center import Accounts, AccountStore, create_engine
from center.auth import Role
from citysense.cli import app
from simulator.truth import GroundTruth, write_truth
from tests.center.conftest import _fresh_schema, _run_aside

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend: the commands migrate it."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _run_aside(_fresh_schema(url))
    return url


def users(database_url: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app, ["users", *args, "--database-url", database_url], input=stdin, env={"COLUMNS": "200"}
    )
    return result.exit_code, result.stdout, result.stderr


def principal_of(database_url: str, token: str) -> tuple[str, Role] | None:
    async def look() -> tuple[str, Role] | None:
        engine = create_engine(database_url)
        try:
            found = await Accounts(AccountStore(engine)).authenticate(token=token)
        finally:
            await engine.dispose()
        return None if found is None else (found.name, found.role)

    return _run_aside(look())


def test_add_list_token_revoke(database_url: str) -> None:
    code, _, err = users(database_url, "add", "王工", "--role", "admin", "--password-stdin",
                         stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0, err
    assert "user 王工 added, role admin" in err
    code, _, err = users(database_url, "add", "ci-bot", "--role", "viewer", "--no-password")
    assert code == 0, err

    code, out, err = users(database_url, "list", "--json")
    assert code == 0, err
    listed = [(u["name"], u["role"], u["has_password"]) for u in json.loads(out)]
    assert listed == [("ci-bot", "viewer", False), ("王工", "admin", True)]

    code, out, err = users(database_url, "token", "ci-bot", "--role", "viewer", "--name", "ci")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("cst_")
    assert out == token + "\n"  # alone on stdout: TOKEN=$(citysense users token ...)
    assert "shown this once" in err
    assert principal_of(database_url, token) == ("ci-bot", Role.VIEWER)

    code, out, _ = users(database_url, "tokens", "--json")
    (listed_token,) = json.loads(out)
    assert (listed_token["user"], listed_token["name"], listed_token["revoked_at"]) == (
        "ci-bot",
        "ci",
        None,
    )
    assert token not in out
    code, _, err = users(database_url, "revoke-token", str(listed_token["id"]))
    assert (code, "revoked" in err) == (0, True)
    assert principal_of(database_url, token) is None


def test_passwd_and_disable(database_url: str) -> None:
    users(database_url, "add", "ana", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    code, _, err = users(database_url, "passwd", "ana", "--password-stdin", stdin="a new one, long")
    assert code == 0, err
    code, out, _ = users(database_url, "token", "ana", "--role", "viewer", "--name", "t")
    token = out.strip()
    assert code == 0
    code, _, err = users(database_url, "disable", "ana")
    assert (code, err.strip()) == (0, "user ana disabled")
    assert principal_of(database_url, token) is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "bo", "--role", "boss", "--no-password"], None, "'boss' is not a role"),
        (["add", "bo", "--role", "viewer", "--password-stdin"], "admin\n", "at least 10"),
        (["add", "bo", "--role", "viewer", "--password-stdin"], "\n", "gave no password"),
        (["add", "bo", "--role", "viewer"], None, "no terminal to ask for the password"),
        (["add", "system", "--role", "viewer", "--no-password"], None, "reserved"),
        (["add", "a b", "--role", "viewer", "--no-password"], None, "no spaces"),
        (["token", "nobody", "--role", "viewer", "--name", "x"], None, "no user nobody"),
        (["revoke-token", "42"], None, "no token 42"),
        (["passwd", "nobody", "--password-stdin"], PASSWORD, "no user nobody"),
    ],
)
def test_refusals_are_one_line_and_exit_2(
    database_url: str, args: list[str], stdin: str | None, message: str
) -> None:
    code, out, err = users(database_url, *args, stdin=stdin)
    assert code == 2, out + err
    [line] = err.strip().splitlines()
    assert line.startswith(f"citysense users {args[0]}: error: ")
    assert message in line


def test_a_user_that_exists_and_a_token_above_the_users_role(database_url: str) -> None:
    users(database_url, "add", "ana", "--role", "operator", "--no-password")
    code, _, err = users(database_url, "add", "ana", "--role", "viewer", "--no-password")
    assert (code, "user ana exists" in err) == (2, True)
    code, _, err = users(database_url, "token", "ana", "--role", "admin", "--name", "x")
    assert (code, "would hold more" in err) == (2, True)


def test_a_database_that_cannot_be_reached_is_one_line() -> None:
    code, _, err = users("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere", "list")
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("citysense users list: error: cannot use the case database")


def test_serve_in_production_refuses_a_database_without_an_admin(
    database_url: str, tmp_path: Path
) -> None:
    env = {
        "CITYSENSE_CENTER_ENV": "production",
        "CITYSENSE_CENTER_DATABASE_URL": database_url,
        "CITYSENSE_CENTER_PORT": "0",
        "CITYSENSE_INGEST_DEAD_LETTER_PATH": str(tmp_path / "dead.jsonl"),
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "citysense serve: error: cannot serve: no admin account in the case database: "
        "create one with 'citysense users add NAME --role admin'"
    )


class Refusing(BaseHTTPRequestHandler):
    """A center that refuses everything: 401 without a token, 403 with one."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization")
        Refusing.seen.append(authorization)
        status, detail = (
            (401, "not signed in")
            if authorization is None
            else (403, "viewer (viewer) may not do this: this needs the rules permission")
        )
        body = json.dumps({"detail": detail}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_center() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Refusing.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["rules", "explain", "eb-1.cover-1"], "citysense rules explain"),
        (["score", "TRUTH"], "citysense score"),
    ],
)
def test_api_commands_send_the_token_and_a_refusal_is_one_line(
    refusing_center: str, tmp_path: Path, command: list[str], name: str
) -> None:
    truth = tmp_path / "x.truth.json"
    start = datetime(2026, 7, 1, tzinfo=UTC)
    write_truth(GroundTruth("none", 1, start, start + timedelta(hours=1), 1, 1, (), ()), truth)
    args = [str(truth) if arg == "TRUTH" else arg for arg in command] + ["--api", refusing_center]
    runner = CliRunner()
    without = runner.invoke(app, args, env={"COLUMNS": "200", "CITYSENSE_TOKEN": None})
    with_env = runner.invoke(app, args, env={"COLUMNS": "200", "CITYSENSE_TOKEN": "cst_env"})
    with_option = runner.invoke(app, [*args, "--token", "cst_opt"], env={"COLUMNS": "200"})
    assert Refusing.seen == [None, "Bearer cst_env", "Bearer cst_opt"]
    for result, status in ((without, "401"), (with_env, "403"), (with_option, "403")):
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"{name}: error: {refusing_center} refused the request ({status} ")
    assert "--token or CITYSENSE_TOKEN" in without.stderr
    assert "needs the rules permission" in with_env.stderr
