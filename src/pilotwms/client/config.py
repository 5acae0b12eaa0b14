"""Where the client finds its server and token.

``$XDG_CONFIG_HOME/pilotwms/client.toml`` (``~/.config/pilotwms/client.toml`` by default)::

    url = "https://wms.example.org:8443"
    token = "..."
    verify = true          # or the path of a CA bundle
    timeout = 60

then ``PILOTWMS_URL``, ``PILOTWMS_TOKEN``, ``PILOTWMS_VERIFY`` and ``PILOTWMS_CONFIG`` (another
file), which win over the file: a one-off ``PILOTWMS_TOKEN=... pilotwms status`` must not need an
edit of the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotwms.client.errors import ConfigError

__all__ = ["ENV_CONFIG", "ENV_TOKEN", "ENV_URL", "ENV_VERIFY", "ClientConfig", "config_path"]

ENV_URL = "PILOTWMS_URL"
ENV_TOKEN = "PILOTWMS_TOKEN"
ENV_VERIFY = "PILOTWMS_VERIFY"
ENV_CONFIG = "PILOTWMS_CONFIG"
DEFAULT_TIMEOUT_S = 60.0


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The configuration file: ``PILOTWMS_CONFIG``, else under ``XDG_CONFIG_HOME``."""
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "pilotwms" / "client.toml"


def _verify_value(raw: object, where: str) -> bool | str:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return raw
    raise ConfigError(f"{where}: verify must be true, false or the path of a CA bundle")


@dataclass(frozen=True)
class ClientConfig:
    """The resolved configuration and where each part came from (for ``config show``)."""

    url: str | None
    token: str | None
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT_S
    path: Path | None = None
    file_exists: bool = False
    sources: Mapping[str, str] | None = None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> ClientConfig:
        """Read the file (if any) then the environment; raises ``ConfigError`` on a bad file."""
        env = os.environ if env is None else env
        path = config_path(env)
        data: dict[str, Any] = {}
        exists = path.is_file()
        if exists:
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read the client configuration {path}: {exc}") from exc
        sources: dict[str, str] = {}
        values: dict[str, Any] = {}
        for key in ("url", "token", "verify", "timeout"):
            if key in data:
                values[key] = data[key]
                sources[key] = str(path)
        for key, var in (("url", ENV_URL), ("token", ENV_TOKEN), ("verify", ENV_VERIFY)):
            if env.get(var):
                values[key] = env[var]
                sources[key] = f"${var}"
        unknown = sorted(set(data) - {"url", "token", "verify", "timeout"})
        if unknown:
            raise ConfigError(
                f"{path}: unknown keys {', '.join(unknown)} (known: url, token, verify, timeout)"
            )
        for key in ("url", "token"):
            if key in values and not isinstance(values[key], str):
                raise ConfigError(f"{sources[key]}: {key} must be a string")
        timeout = values.get("timeout", DEFAULT_TIMEOUT_S)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"{path}: timeout must be a positive number of seconds")
        return cls(
            url=values.get("url"),
            token=values.get("token"),
            verify=_verify_value(values.get("verify", True), sources.get("verify", "verify")),
            timeout=float(timeout),
            path=path,
            file_exists=exists,
            sources=sources,
        )

    def require(self) -> tuple[str, str]:
        """``(url, token)``, or a ``ConfigError`` saying where to put them."""
        missing = [n for n, v in (("url", self.url), ("token", self.token)) if not v]
        if missing:
            where = str(self.path) if self.path is not None else "the configuration file"
            state = "" if self.file_exists else " (it does not exist)"
            raise ConfigError(
                f"the client is not configured: no {' and no '.join(missing)}. Put "
                f'url = "..." and token = "..." in {where}{state}, or set {ENV_URL} and '
                f"{ENV_TOKEN}; 'pilotwms admin token create NAME' prints a token"
            )
        assert self.url is not None and self.token is not None
        return self.url, self.token
