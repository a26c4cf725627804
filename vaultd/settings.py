"""vaultd's settings: command-line options over VAULTD_* variables over the YAML config file.

The YAML file may group storage options as `storage: {redis_url: ..., data_dir: ...}`
(DESIGN.md section 10); they land on the same fields as --redis-url and --data-dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class KekCacheSettings(BaseModel):
    model_config = SettingsConfigDict(extra="forbid")

    ttl_seconds: float = Field(300.0, ge=0)
    max_entries: int = Field(100_000, ge=0)


class ByokRuleSettings(BaseModel):
    model_config = SettingsConfigDict(extra="forbid")

    match: dict[str, str]
    key: str


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VAULTD_", env_nested_delimiter="__", extra="forbid"
    )

    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("vaultd-data")
    redis_url: str | None = None
    root_key_file: Path | None = None
    max_value_bytes: int = Field(1024 * 1024, ge=1)
    kek_cache: KekCacheSettings = KekCacheSettings()
    providers: dict[str, dict[str, Any]] = {}
    byok: list[ByokRuleSettings] = []
    bootstrap_api_key: SecretStr | None = None
    shutdown_grace_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _flatten_storage(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("storage"), dict):
            data = dict(data)
            for key, value in data.pop("storage").items():
                data.setdefault(key, value)
        return data

    @property
    def root_key_path(self) -> Path:
        return self.root_key_file or self.data_dir / "root.key"

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
