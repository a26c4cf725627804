"""Start-up failures as one clear line for the operator, with an exit code that says whose fix
it is: 2 for a configuration mistake (change a setting), 1 for the run-time world (a port in
use, Redis down, a directory vaultd may not write).

`describe` turns a known failure into that line; anything it does not know is a bug and keeps
its traceback. The line names the setting (option, variable and config key) and the fix, and
never a secret: a Redis URL is shown without its password, a settings error without the value.

An exception with an integer `exit_code` attribute (StartupError here, StoreRefused from the
store's guard) is already an operator's message: its text and exit code are used as they are.
"""

from __future__ import annotations

import errno
import importlib.metadata
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import ValidationError

from providers import ProviderError
from vaultd.core.errors import BackendUnavailable
from vaultd.core.rules import RuleError
from vaultd.storage.errors import StoreUnavailable

CONFIG = 2
RUNTIME = 1

LISTEN_SETTING = "--listen (VAULTD_LISTEN, `listen:`)"
METRICS_SETTING = "--metrics-listen (VAULTD_METRICS_LISTEN, `metrics_listen:`)"
REDIS_SETTING = "--redis-url (VAULTD_REDIS_URL, `storage: {redis_url:}`)"
DATA_DIR_SETTING = "--data-dir (VAULTD_DATA_DIR, `storage: {data_dir:}`)"
_BIND_FAILED = "Failed to bind to address "


class StartupError(Exception):
    """A start-up failure already phrased for the operator."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Failure:
    message: str
    exit_code: int


def check_address(address: str, setting: str) -> None:
    """HOST:PORT with a port 0-65535 and a host that is a name or an IP address; else a
    configuration StartupError naming `setting`."""
    host, sep, port = address.rpartition(":")
    fix = f"set {setting} to HOST:PORT, e.g. 127.0.0.1:50051 or [::1]:50051"
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise StartupError(f"{address!r} is not HOST:PORT: {fix}", CONFIG)
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare:
        try:
            ipaddress.IPv6Address(bare.split("%")[0])
        except ValueError:
            raise StartupError(f"{address!r} has a bad IPv6 host: {fix}", CONFIG) from None
        if bare == host:
            raise StartupError(f"{address!r}: put an IPv6 host in brackets: {fix}", CONFIG)
    elif not bare or any(c.isspace() or c in "/@?#" for c in bare):
        raise StartupError(f"{address!r} has a bad host: {fix}", CONFIG)


def check_port_free(address: str, *, shared: bool) -> None:
    """Bind `address` once as gRPC will (SO_REUSEADDR; SO_REUSEPORT when workers share it), so
    a port held by another program fails here in one line: not after the store is opened, with
    gRPC's own log line first, nor once per worker."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((host, int(port)))
    except OSError as exc:
        raise StartupError(_bind_line(address), RUNTIME) from exc


def _bind_line(address: str) -> str:
    return (
        f"cannot listen on {address}: the port is taken or the address is not on this "
        f"machine; stop what holds it (ss -ltnp) or choose another {LISTEN_SETTING}"
    )


def redact_url(url: str) -> str:
    """`url` without its password (user names are kept; they help and are not secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _validation_line(error: ValidationError) -> str:
    """Each problem as `setting: what is wrong`, without the value (it may be a secret)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "settings"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def _yaml_line(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is not None:
        return f"{Path(mark.name).name} line {mark.line + 1} column {mark.column + 1}: {problem}"
    return problem


def version() -> str:
    """vaultd's installed version ("unknown" when run from a tree that was never installed)."""
    try:
        return importlib.metadata.version("vaultd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def banner(
    *,
    listen: str,
    port: int,
    tls: str,
    store: str,
    providers: Iterable[str],
    byok_rules: int,
    metrics: str | None,
) -> str:
    """The start line: what an operator checks first (version, where, TLS, store, keys)."""
    return (
        # "vaultd listening on" first: scripts (bench/servers.py) wait for exactly that.
        f"vaultd listening on {listen} (port {port}, {tls}); version {version()}; store {store}; "
        f"providers {', '.join(sorted(providers))}; {byok_rules} BYOK rule(s); "
        f"metrics {f'http://{metrics}/metrics' if metrics else 'off'}"
    )


def store_description(redis_url: str | None, data_dir: Path) -> str:
    """The store as the banner shows it: a Redis URL without its password, or the file."""
    return f"redis {redact_url(redis_url)}" if redis_url else f"sqlite {data_dir / 'vaultd.db'}"


def describe(
    exc: BaseException, *, listen: str | None = None, redis_url: str | None = None
) -> Failure | None:
    """The operator's line for a known start-up failure, or None for a bug (keep the traceback).

    `listen` and `redis_url` are the settings in force, so the line can name them.
    """
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return Failure(str(exc), code)
    if isinstance(exc, ValidationError):
        return Failure(f"bad configuration: {_validation_line(exc)}", CONFIG)
    if isinstance(exc, yaml.YAMLError):
        return Failure(
            f"the config file is not valid YAML: {_yaml_line(exc)}; fix it or drop --config",
            CONFIG,
        )
    if isinstance(exc, RuntimeError) and str(exc).startswith(_BIND_FAILED):
        return Failure(_bind_line(str(exc)[len(_BIND_FAILED) :].split(";")[0]), RUNTIME)
    if isinstance(exc, StoreUnavailable):
        where = f"Redis at {redact_url(redis_url)}" if redis_url else "the store"
        return Failure(f"cannot reach {where}: {exc}; start it, or fix {REDIS_SETTING}", RUNTIME)
    if isinstance(exc, BackendUnavailable):
        # Reached, but it could not take the start-up writes (a full disk, no replica for
        # wait_replicas): the message says which.
        return Failure(f"cannot start: {exc.message}", RUNTIME)
    if isinstance(exc, PermissionError | IsADirectoryError | NotADirectoryError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC, errno.EACCES)
    ):
        target = exc.filename or "the data directory"
        uid, gid = os.getuid(), os.getgid()
        return Failure(
            f"cannot write {target}: {exc.strerror}; make it writable by uid {uid} "
            f"(e.g. chown -R {uid}:{gid} on the directory; for a Docker volume, on the host) or "
            f"choose another {DATA_DIR_SETTING}",
            RUNTIME,
        )
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        return Failure(
            f"bad configuration: {exc.filename} does not exist; fix the setting that names it",
            CONFIG,
        )
    if isinstance(exc, RuleError | ProviderError | ValueError | FileNotFoundError):
        return Failure(f"bad configuration: {exc}", CONFIG)
    return None
