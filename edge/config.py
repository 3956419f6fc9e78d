"""Build ``EdgeSettings`` from a TOML file, the environment and command-line flags.

Precedence, highest first: command-line flags, ``CITYSENSE_EDGE_*`` environment variables, the
config file, the defaults. Tables merge key by key (``[udp]`` in the file and
``CITYSENSE_EDGE_UDP__PORT`` in the environment both apply); lists (``[[sensors]]``) are
replaced whole. Every problem becomes one ``EdgeConfigError`` line naming where the bad value
came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError

from edge.settings import EdgeSettings

ENV_PREFIX = "CITYSENSE_EDGE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
"""Names the config file when ``--config`` is not given."""


class EdgeConfigError(ValueError):
    """The settings cannot be built; the message is one line for the operator."""


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML config file; unknown top-level keys are refused (typos)."""
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        raise EdgeConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise EdgeConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EdgeConfigError(f"{path}: not UTF-8 text: {exc.reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgeConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(values) - EdgeSettings.model_fields.keys())
    if unknown:
        raise EdgeConfigError(f"{path}: unknown setting {', '.join(unknown)}")
    return values


def load_edge_settings(
    config: Path | None = None, flags: Mapping[str, Any] | None = None
) -> EdgeSettings:
    """Settings from ``flags`` over the environment over ``config`` over the defaults."""
    flags = {name: value for name, value in (flags or {}).items() if value is not None}
    from_file = read_config_file(config) if config is not None else {}
    try:
        from_env = EnvSettingsSource(EdgeSettings)()
    except SettingsError as exc:
        raise EdgeConfigError(f"environment: {_one_line(str(exc))}") from None
    values = _merge(_merge(from_file, from_env), flags)
    try:
        return EdgeSettings(**values)
    except ValidationError as exc:
        raise EdgeConfigError(_explain(exc, config, from_env, flags)) from None


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _explain(
    exc: ValidationError,
    config: Path | None,
    from_env: Mapping[str, Any],
    flags: Mapping[str, Any],
) -> str:
    """``<where>: <field>: <message>`` for each error, joined into one line."""
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        env_depth = _env_depth(from_env, loc)
        if loc and loc[0] in flags:
            where = "command line"
        elif env_depth:
            where = "environment " + ENV_PREFIX + "__".join(loc[:env_depth]).upper()
        elif config is not None:
            where = str(config)
        else:
            where = "settings"
        message = _one_line(error["msg"])
        if error["type"] == "missing" and loc == ["station_id"]:
            message += f" (give STATION, {ENV_PREFIX}STATION_ID or station_id in the file)"
        parts.append(f"{where}: {'.'.join(loc)}: {message}" if loc else f"{where}: {message}")
    return "; ".join(parts)


def _env_depth(values: Mapping[str, Any], loc: list[str]) -> int:
    """How many levels of ``loc`` the environment named (0: it did not set that value)."""
    node: Any = values
    for depth, part in enumerate(loc, start=1):
        if not isinstance(node, Mapping) or part not in node:
            return 0
        node = node[part]
        if not isinstance(node, Mapping):
            return depth
    return len(loc)


def _one_line(text: str) -> str:
    return " ".join(text.split())
