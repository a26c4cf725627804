"""vaultd's settings: command-line options over VAULTD_* variables over the YAML config file.

The YAML file may group storage options as `storage: {redis_url: ..., data_dir: ...,
allow_volatile_redis: ...}` (docs/ARCHITECTURE.md section 10); they land on the same fields as
--redis-url and --data-dir. Likewise `tls: {cert_file, key_file, client_ca_file}` lands on
tls_cert_file, ... (--tls-cert, ...) and `audit: {retention_days, reads}` on
audit_retention_days and audit_reads.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from vaultd.core.types import DEFAULT_MAX_VALUE_BYTES
from vaultd.logs import LogFormat, LogLevel

# YAML groups whose keys land on flat fields, with the prefix those fields carry.
_FLATTENED_GROUPS = {"storage": "", "tls": "tls_", "audit": "audit_"}


class ReflectionSettings(BaseModel):
    """Server reflection for grpcurl and `buf curl`: open by default, since the schema is
    public; `require_api_key: true` makes it need a valid key like any call."""

    model_config = SettingsConfigDict(extra="forbid")

    require_api_key: bool = False


class KekCacheSettings(BaseModel):
    model_config = SettingsConfigDict(extra="forbid")

    ttl_seconds: float = Field(300.0, ge=0)
    max_entries: int = Field(100_000, ge=0)
    outage_grace_seconds: float = Field(0.0, ge=0)
    """How long past its TTL a cached KEK keeps serving while its KMS is down (timeouts,
    connection errors, 5xx). Off by default: during the grace a revocation that the KMS cannot
    report (because it is down) is not seen. An explicit denial always drops the KEK at once."""


class RateLimitSettings(BaseModel):
    """Per API key: `requests_per_second` on average, bursts of up to `burst`; 0 is no limit."""

    model_config = SettingsConfigDict(extra="forbid")

    requests_per_second: float = Field(0.0, ge=0)
    burst: int | None = Field(None, ge=1)
    # Failed authentications per peer address (on by default): past `failed_auth_burst`, at
    # `failed_auth_per_second` on average, a peer's calls are refused before any key lookup or
    # audit write, whatever token they carry (docs/SECURITY.md section 5). 0: no limit.
    failed_auth_per_second: float = Field(5.0, ge=0)
    failed_auth_burst: int = Field(100, ge=1)

    @property
    def enabled(self) -> bool:
        return self.requests_per_second > 0

    @property
    def bucket_size(self) -> int:
        """`burst`, or by default one second's worth of requests."""
        return self.burst or max(1, math.ceil(self.requests_per_second))


class TransportSettings(BaseModel):
    """HTTP/2 limits per connection and stream (docs/SECURITY.md section 5); 0 leaves gRPC's
    own default (mostly: no limit)."""

    model_config = SettingsConfigDict(extra="forbid")

    # Streams (calls) one connection may have open at once. A client that opens more before
    # the server's SETTINGS reach it sees the extra ones refused (UNAVAILABLE, retryable).
    max_concurrent_streams: int = Field(1000, ge=0)
    # Flow-control credit per stream before the server has read what was sent; BDP probing,
    # which grows it, is off while this is set.
    stream_window_bytes: int = Field(64 * 1024, ge=0)
    # The server pings a connection quiet for this long, and drops it if no answer in timeout.
    keepalive_time_seconds: float = Field(60.0, ge=0)
    keepalive_timeout_seconds: float = Field(20.0, ge=0)
    # A connection with no call for this long is closed (GOAWAY).
    max_connection_idle_seconds: float = Field(300.0, ge=0)
    # Every connection is closed after this long (clients reconnect, and rebalance), after
    # letting its calls finish for the grace period.
    max_connection_age_seconds: float = Field(3600.0, ge=0)
    max_connection_age_grace_seconds: float = Field(30.0, ge=0)
    # Request metadata (headers) larger than this is refused.
    max_metadata_bytes: int = Field(16 * 1024, ge=0)


class KekQuotaSettings(BaseModel):
    """New KEKs (one per new context item) a caller may cause; 0 turns a quota off."""

    model_config = SettingsConfigDict(extra="forbid")

    per_key_per_minute: int = Field(600, ge=0)
    per_environment_per_minute: int = Field(6000, ge=0)
    per_environment_total: int = Field(1_000_000, ge=0)
    # Counted in the store, so it holds across restarts and every process sharing the store.
    per_key_total: int = Field(100_000, ge=0)


class KeyLifecycleSettings(BaseModel):
    """Automatic KEK rotation, and how rewrap jobs run (docs/KEYS.md)."""

    model_config = SettingsConfigDict(extra="forbid")

    # A KEK whose newest version is older than this gets a new one when next used; 0: never.
    rotation_days: float = Field(0.0, ge=0)
    # Rewrap pacing: object versions examined per second per job; 0: as fast as it can.
    rewrap_versions_per_second: float = Field(1000.0, ge=0)
    # A job whose process stops saving progress for this long is taken over by another.
    rewrap_lease_seconds: float = Field(60.0, gt=0)
    # Whether DecryptDataKey, RekeyDataKey and Decrypt still take format-1 data keys (made
    # before each purpose had its own label). Turn off once every object version was rewrapped
    # and no client holds an old data key: a stolen store dump's format-1 object keys then no
    # longer open through KeyService either (docs/SECURITY.md section 1).
    accept_legacy_data_keys: bool = True

    @property
    def rotation_period(self) -> timedelta | None:
        return timedelta(days=self.rotation_days) if self.rotation_days else None


class ByokRuleSettings(BaseModel):
    model_config = SettingsConfigDict(extra="forbid")

    match: dict[str, str]
    key: str | list[str]
    """One key URI, or several: the primary first, then secondary keys (docs/BYOK.md)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VAULTD_", env_nested_delimiter="__", extra="forbid"
    )

    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("vaultd-data")
    redis_url: str | None = None
    root_key_file: Path | None = None
    audit_key_file: Path | None = None
    max_value_bytes: int = Field(DEFAULT_MAX_VALUE_BYTES, ge=1)
    kek_cache: KekCacheSettings = KekCacheSettings()
    keys: KeyLifecycleSettings = KeyLifecycleSettings()
    providers: dict[str, dict[str, Any]] = {}
    byok: list[ByokRuleSettings] = []
    bootstrap_api_key: SecretStr | None = None
    # How long a looked-up API key is trusted without asking the store again: a key revoked
    # through another process stops working within this many seconds.
    api_key_cache_seconds: float = Field(5.0, ge=0)
    audit_retention_days: float = Field(90, gt=0)
    # Whether a read is answered when its audit event cannot be stored (docs/OPERATIONS.md):
    # fail_closed withholds it (the default: nothing is read unrecorded); best_effort answers it
    # and logs the lost event, so reads survive an audit store that cannot reach a replica.
    audit_reads: Literal["fail_closed", "best_effort"] = "fail_closed"
    # A Redis without persistence loses every acknowledged write on a restart; vaultd refuses
    # to serve one unless told it is a cache or a test.
    allow_volatile_redis: bool = False
    # Each store command fails after this long; a call whose client set no deadline gets
    # default_deadline_seconds, so nobody waits out a hung store for a minute.
    store_timeout_seconds: float = Field(5.0, gt=0)
    default_deadline_seconds: float = Field(10.0, gt=0)
    # How long a deleted object can be undeleted (UndeleteObject) before the purge job destroys
    # it; 0: DeleteObject destroys it at once (docs/OPERATIONS.md, "Deleted objects").
    deleted_retention_days: float = Field(30.0, ge=0)
    # Overrides deleted_retention_days when set: a retention under a day, for tests and demos.
    deleted_retention_seconds: float | None = Field(None, ge=0)
    # How often each serving process's purge job looks for objects past their retention, and
    # how long its lease lasts: one process purges at a time, and another takes over once the
    # holder has stopped renewing it for this long (killed, say).
    purge_interval_seconds: float = Field(60.0, gt=0)
    purge_lease_seconds: float = Field(60.0, gt=0)
    # How often the store's durability and identity are checked again while serving.
    store_check_seconds: float = Field(5.0, gt=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    workers: int = Field(1, ge=1)
    metrics_listen: str | None = None
    # HOST:PORT of the WorkOS-Vault-compatible HTTP/JSON API (docs/HTTP.md); off when unset.
    http_listen: str | None = None
    # HOST:PORT of the operator web console (docs/CONSOLE.md); off when unset.
    console_listen: str | None = None
    log_format: LogFormat = "json"
    log_level: LogLevel = "info"
    # One JSON line per call (method, code, duration, peer, request id); off where that costs
    # too much at high call rates. Request ids still reach clients, other lines and audit events.
    access_log: bool = True
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    rate_limit: RateLimitSettings = RateLimitSettings()
    transport: TransportSettings = TransportSettings()
    kek_quota: KekQuotaSettings = KekQuotaSettings()
    reflection: ReflectionSettings = ReflectionSettings()

    @model_validator(mode="before")
    @classmethod
    def _flatten_groups(cls, data: Any) -> Any:
        # A flat field set elsewhere (variable, option) wins over the file's group.
        if isinstance(data, dict):
            for group, prefix in _FLATTENED_GROUPS.items():
                if isinstance(data.get(group), dict):
                    data = dict(data)
                    for key, value in data.pop(group).items():
                        data.setdefault(prefix + key, value)
        return data

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls: client_ca_file (mutual TLS) needs cert_file and key_file")
        return self

    @model_validator(mode="after")
    def _check_console(self) -> Self:
        # Console sessions live in the memory of the process that signed in; workers sharing
        # one port would each know only some of them.
        if self.console_listen and self.workers > 1:
            raise ValueError("console_listen serves from one process: it needs workers: 1")
        return self

    @property
    def deleted_retention(self) -> timedelta:
        """How long a deleted object stays recoverable (deleted_retention_seconds, if set)."""
        if self.deleted_retention_seconds is not None:
            return timedelta(seconds=self.deleted_retention_seconds)
        return timedelta(days=self.deleted_retention_days)

    @property
    def root_key_path(self) -> Path:
        return self.root_key_file or self.data_dir / "root.key"

    @property
    def audit_key_path(self) -> Path:
        """The secret that chains audit events and hashes their context values; every
        process writing one store must share it (docs/SECURITY.md section 7)."""
        return self.audit_key_file or self.data_dir / "audit.key"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the file (if any), the environment, then non-None overrides (CLI)."""
    cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"config file {config_file} does not exist")
        config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})
        cls = type("FileSettings", (Settings,), {"model_config": config})
    return cls(**{k: v for k, v in overrides.items() if v is not None})
