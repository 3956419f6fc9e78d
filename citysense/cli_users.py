"""``citysense users``: accounts of the center, on its case database directly.

The first admin has to come from somewhere: these commands work without a running node, on the
database of ``CITYSENSE_CENTER_DATABASE_URL`` (or ``--database-url``), which they migrate first.
Tokens are printed once, alone on stdout (``TOKEN=$(citysense users token ...)``); what the
command did goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from citysense.cli_common import UNREACHABLE, JsonOption, console, err_console, fail, one_line

if TYPE_CHECKING:
    from center.auth import Accounts, Role, TokenRecord, UserRecord

T = TypeVar("T")

users_app = typer.Typer(
    help="Users of the center, their roles and API tokens (docs/access.md).",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        show_default=False,
        help="The case database (default: env CITYSENSE_CENTER_DATABASE_URL, else the node's"
        " default sqlite+aiosqlite:///./data/citysense.db).",
    ),
]
ROLES = "viewer (read), operator (+ move cases), engineer (+ rules), admin (everything)"
RoleOption = Annotated[str, typer.Option("--role", help=f"One of: {ROLES}.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin (no prompt)."
    ),
]
Name = Annotated[str, typer.Argument(help="The user's name: the actor of what they do.")]


def _role(value: str) -> Role:
    from center.auth import Role

    try:
        return Role(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a role ({', '.join(r.value for r in Role)})", param_hint="--role"
        ) from None


def _database_url(option: str | None) -> str:
    if option is not None:
        return option
    from pydantic import ValidationError

    from center.settings import CenterSettings

    try:
        return CenterSettings().database_url
    except ValidationError as exc:
        fail(f"bad configuration: {one_line(exc)}")


def _with_accounts(database_url: str | None, work: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run ``work`` on the accounts of the (migrated) database; every refusal is one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from center import Accounts, AccountStore, create_engine, migrate
    from center.auth import AccountError, WeakPasswordError
    from center.errors import StoreError

    url = _database_url(database_url)
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise typer.BadParameter(one_line(exc), param_hint="--database-url") from None

    async def run() -> T:
        await migrate(url)
        engine = create_engine(url)
        try:
            return await work(Accounts(AccountStore(engine)))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (AccountError, WeakPasswordError) as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(f"cannot use the case database {shown}: {one_line(exc)}", UNREACHABLE)


def _password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            fail("--password-stdin: stdin gave no password")
        return password
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: give it with --password-stdin")
    typed: str = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    return typed


@users_app.command("add")
def add(
    name: Name,
    role: RoleOption,
    password_stdin: PasswordStdin = False,
    no_password: Annotated[
        bool,
        typer.Option(
            "--no-password", help="An account that only holds API tokens (a service, CI)."
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a user. Asks for the password (twice), or reads it with --password-stdin.

    Example: citysense users add wang.gong --role operator
    """
    from center.auth import AccountError, WeakPasswordError, check_name
    from center.auth.credentials import check_password_policy

    chosen = _role(role)
    if no_password and password_stdin:
        raise typer.BadParameter("give one of --no-password and --password-stdin")
    try:
        check_name(name)  # before asking for a password
        password = None if no_password else _password(name, password_stdin)
        if password is not None:
            check_password_policy(name, password)
    except (AccountError, WeakPasswordError) as exc:
        fail(str(exc))
    _with_accounts(database_url, lambda accounts: accounts.add_user(name, chosen, password))
    err_console.print(f"user {name} added, role {chosen.value}")


@users_app.command("passwd")
def passwd(
    name: Name, password_stdin: PasswordStdin = False, database_url: DatabaseUrl = None
) -> None:
    """Set a user's password; their browser sessions end."""
    password = _password(name, password_stdin)
    _with_accounts(database_url, lambda accounts: accounts.set_password(name, password))
    err_console.print(f"password of {name} set; their sessions ended")


@users_app.command("disable")
def disable(name: Name, database_url: DatabaseUrl = None) -> None:
    """Disable a user: no sign-in, and their sessions and tokens stop working."""
    _with_accounts(database_url, lambda accounts: accounts.disable(name))
    err_console.print(f"user {name} disabled")


def _user_json(user: UserRecord) -> dict[str, object]:
    return {
        "name": user.name,
        "role": user.role.value,
        "has_password": user.password_hash is not None,
        "created_at": user.created_at.isoformat(),
        "disabled_at": None if user.disabled_at is None else user.disabled_at.isoformat(),
    }


@users_app.command("list")
def list_users(database_url: DatabaseUrl = None, as_json: JsonOption = False) -> None:
    """Every user with its role."""
    users = _with_accounts(database_url, lambda accounts: accounts.users())
    if as_json:
        typer.echo(json.dumps([_user_json(user) for user in users], ensure_ascii=False))
        return
    table = Table("name", "role", "password", "created", "disabled")
    for user in users:
        table.add_row(
            user.name,
            user.role.value,
            "yes" if user.password_hash is not None else "no (tokens only)",
            f"{user.created_at:%Y-%m-%d %H:%M}Z",
            "" if user.disabled_at is None else f"{user.disabled_at:%Y-%m-%d %H:%M}Z",
        )
    console.print(table)


@users_app.command("token")
def token(
    name: Name,
    role: RoleOption,
    token_name: Annotated[
        str, typer.Option("--name", help="What the token is for, e.g. ci, prometheus.")
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Issue an API token of the user: printed once, alone on stdout.

    Its role is the user's or one the user's covers (an operator may hold a viewer token).
    Example: citysense users token ci-bot --role viewer --name ci
    """
    chosen = _role(role)
    secret, record = _with_accounts(
        database_url, lambda accounts: accounts.issue_token(name, token_name, chosen)
    )
    typer.echo(secret)
    err_console.print(
        f"token {record.id} ({record.name}) of {record.user}, role {record.role.value}: "
        "shown this once; send it as 'Authorization: Bearer <token>' (CLI: CITYSENSE_TOKEN)"
    )


def _token_json(record: TokenRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "user": record.user,
        "name": record.name,
        "role": record.role.value,
        "created_at": record.created_at.isoformat(),
        "last_used_at": None if record.last_used_at is None else record.last_used_at.isoformat(),
        "revoked_at": None if record.revoked_at is None else record.revoked_at.isoformat(),
    }


@users_app.command("tokens")
def tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's.")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOption = False,
) -> None:
    """API tokens (never the tokens themselves), revoked ones too."""
    records = _with_accounts(database_url, lambda accounts: accounts.tokens(name))
    if as_json:
        typer.echo(json.dumps([_token_json(r) for r in records], ensure_ascii=False))
        return
    table = Table("id", "user", "name", "role", "created", "last used", "revoked")
    for record in records:
        table.add_row(
            str(record.id),
            record.user,
            record.name,
            record.role.value,
            f"{record.created_at:%Y-%m-%d %H:%M}Z",
            "" if record.last_used_at is None else f"{record.last_used_at:%Y-%m-%d %H:%M}Z",
            "" if record.revoked_at is None else f"{record.revoked_at:%Y-%m-%d %H:%M}Z",
        )
    console.print(table)


@users_app.command("revoke-token")
def revoke_token(
    token_id: Annotated[int, typer.Argument(help="The token's id (citysense users tokens).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API token: it stops working at once."""
    record = _with_accounts(database_url, lambda accounts: accounts.revoke_token(token_id))
    err_console.print(f"token {record.id} ({record.name}) of {record.user} revoked")
