"""Settings: where vitaltwin keeps things and which servers it talks to, from one object.

Read from the environment (``VITALTWIN_STORE_DIR``, ``VITALTWIN_POSTGRES``, ...) or a file named
by ``VITALTWIN_SETTINGS_FILE`` (``KEY=value`` lines, default ``vitaltwin.env`` in the working
directory); a command-line option wins over both. Nothing points into a development checkout:
reference data sets such as PhysioNet 2019 set A are found only where the user says they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Paths and servers (every field can be set as ``VITALTWIN_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="VITALTWIN_", extra="forbid", frozen=True)

    out_dir: Path = Field(Path("out"), description="where commands write results by default")
    store_dir: Path = Field(Path("out/store"), description="the embedded (DuckDB) store")
    postgres: str | None = Field(
        None, description="PostgreSQL conninfo; when set, the store lives there instead"
    )
    registry_dir: Path = Field(Path("out/registry"), description="the MLflow model registry")
    physionet_set_a: Path | None = Field(
        None, description="PhysioNet 2019 set A (Parquet or PSV folder) for the validations"
    )
    # the service (vitaltwin serve)
    host: str = Field("127.0.0.1", description="address the service binds")
    port: int = Field(8000, description="HTTP port of the service")
    bus: str = Field(
        "memory",
        description="'memory' (one process, the default) or a Redis URL such as "
        "redis://127.0.0.1:6379/0 (Redis Streams)",
    )
    partitions: int = Field(8, description="bus partitions (patients are spread over them)")
    bus_prefix: str = Field("vitaltwin:obs", description="Redis key prefix of the bus streams")
    max_body_bytes: int = Field(1 << 20, description="largest request body accepted")
    twins: bool = Field(True, description="run the live twins (checkpoints go to the store)")
    twin_checkpoint_s: float = Field(60.0, description="seconds between twin checkpoints")
    twin_settle_s: float = Field(
        3600.0,
        ge=0.0,
        description="seconds of twin time a twin tracks a patient before it forecasts (and so "
        "alerts): a new twin knows the population, not yet the patient",
    )
    expected_beds: int = Field(
        64, ge=1, description="patients the twins are compiled for at start-up (more still work)"
    )
    risk_task: str | None = Field(
        "sepsis",
        description="risk task whose champion in the registry the service scores with "
        "(none registered, or unset: no risk scoring)",
    )
    shadow_alerts: bool = Field(
        True, description="alerts logged but shown to no one (until validated locally)"
    )
    security_dir: Path = Field(
        Path("out/security"),
        description="users, clients and devices (directory.json), the audit trail "
        "(audit.jsonl) and, unless keys_from is 'environment', the keys (keys/)",
    )
    keys_from: str = Field(
        "files",
        pattern="^(files|environment)$",
        description="'files' (security_dir/keys, made owner-only on first use) or "
        "'environment' (VITALTWIN_KEY_TOKEN_SIGNING, VITALTWIN_KEY_AUDIT_SIGNING, base64)",
    )
    access_token_s: int = Field(900, ge=60, le=3600, description="access token lifetime (s)")
    refresh_token_s: int = Field(
        12 * 3600, ge=600, le=7 * 86400, description="refresh token (session) lifetime (s)"
    )
    secure_cookies: bool = Field(
        False, description="session cookies only over HTTPS (on whenever tls_cert is set)"
    )
    tls_cert: Path | None = Field(
        None, description="the service's TLS certificate (PEM): HTTPS and WSS when set"
    )
    tls_key: Path | None = Field(None, description="its private key (PEM)")
    tls_client_ca: Path | None = Field(
        None, description="MLLP: clients must present a certificate this authority signed"
    )
    mqtt_tls_ca: Path | None = Field(
        None, description="MQTT over TLS, trusting this authority for the broker (PEM)"
    )
    mqtt_tls_cert: Path | None = Field(
        None, description="the service's client certificate for the broker (mutual TLS)"
    )
    mqtt_tls_key: Path | None = Field(None, description="its private key (PEM)")
    mqtt_host: str | None = Field(
        None, description="MQTT broker to subscribe to for device data (e.g. 127.0.0.1)"
    )
    mqtt_port: int = Field(1883, description="MQTT broker port")
    mqtt_username: str | None = Field(None, description="the service's user name at the broker")
    mqtt_password: SecretStr | None = Field(
        None, description="its password (VITALTWIN_MQTT_PASSWORD; never logged or shown)"
    )
    mqtt_topic: str = Field("vitaltwin/observations/#", description="MQTT topic filter")


def load_settings() -> Settings:
    """The settings in force: environment, then the settings file, then the defaults."""
    env_file = os.environ.get("VITALTWIN_SETTINGS_FILE", "vitaltwin.env")
    return Settings(_env_file=env_file if Path(env_file).is_file() else None)
