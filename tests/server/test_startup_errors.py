"""Every start-up failure is one line naming the setting and the fix, never a traceback, with
exit code 2 for a configuration mistake and 1 for the run-time world (vaultd/startup.py).

Each case runs `vaultd serve` as an operator would, in a separate process with a clean
environment and a root key made beforehand (so no "generated a root key" line precedes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from providers.internal import InternalProvider
from testkit.serving import VAULTD, clean_env, free_port
from vaultd import startup
from vaultd.storage.errors import StoreUnavailable

TIMEOUT_SECONDS = 60


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    data_dir = tmp_path / "data"
    InternalProvider.from_file(data_dir / "root.key")
    result = subprocess.run(
        [str(VAULTD), "serve", "--data-dir", str(data_dir), *args],
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        cwd=tmp_path,
    )
    return result.returncode, result.stdout, result.stderr


def assert_one_line(stderr: str, *fragments: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vaultd: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_taken_port_stops_startup_in_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = serve(tmp_path, "--listen", f"127.0.0.1:{port}")
    assert code == 1
    assert_one_line(err, f"cannot listen on 127.0.0.1:{port}", "--listen", "VAULTD_LISTEN")


def test_a_taken_port_stops_startup_with_workers_too(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = serve(tmp_path, "--listen", f"127.0.0.1:{port}", "--workers", "2")
    assert code == 1
    assert_one_line(err, f"cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize(
    "listen", ["nonsense", "127.0.0.1:70000", "127.0.0.1:", "::1:50051", "[zz::1]:5", " :5"]
)
def test_a_malformed_listen_address_is_refused_as_host_port(tmp_path: Path, listen: str) -> None:
    code, _, err = serve(tmp_path, "--listen", listen)
    assert code == 2
    assert_one_line(err, repr(listen), "--listen", "HOST:PORT")


def test_a_malformed_metrics_listen_address_is_refused(tmp_path: Path) -> None:
    code, _, err = serve(tmp_path, "--listen", "127.0.0.1:0", "--metrics-listen", "9090")
    assert code == 2
    assert_one_line(err, "'9090'", "--metrics-listen")


def test_invalid_yaml_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "vaultd.yaml"
    config.write_text("listen: 127.0.0.1:0\nkek_cache: {ttl_seconds: 5\n")
    code, _, err = serve(tmp_path, "--config", str(config))
    assert code == 2
    assert_one_line(err, "not valid YAML", "vaultd.yaml line 3")


def test_unknown_and_bad_settings(tmp_path: Path) -> None:
    config = tmp_path / "vaultd.yaml"
    config.write_text("listen: 127.0.0.1:0\nlisen: x\nmax_value_bytes: -1\n")
    code, _, err = serve(tmp_path, "--config", str(config))
    assert code == 2
    assert_one_line(err, "lisen: Extra inputs are not permitted", "max_value_bytes")


def test_missing_config_file(tmp_path: Path) -> None:
    code, _, err = serve(tmp_path, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert_one_line(err, "nope.yaml does not exist")


def test_settings_error_never_shows_the_value(tmp_path: Path) -> None:
    secret = "sk_not-a-valid-key-but-secret-all-the-same"
    code, _, err = serve(
        tmp_path, "--listen", "127.0.0.1:0", env={"VAULTD_BOOTSTRAP_API_KEY": secret}
    )
    assert code == 2
    assert_one_line(err, "VAULTD_BOOTSTRAP_API_KEY")
    assert secret not in err


def test_an_unreachable_redis_is_named_with_its_password_masked(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://ops:hunter2@127.0.0.1:{port}/0"
    code, _, err = serve(tmp_path, "--listen", "127.0.0.1:0", "--redis-url", url)
    assert code == 1
    assert_one_line(err, f"Redis at redis://ops:***@127.0.0.1:{port}/0", "--redis-url")
    assert "hunter2" not in err


def test_unwritable_data_dir(tmp_path: Path) -> None:
    # Tests may run as root, for whom mode bits do not refuse a write: a file where the data
    # directory should be refuses everyone.
    (tmp_path / "blocked").write_text("a file, not a directory")
    data_dir = tmp_path / "blocked" / "data"
    result = subprocess.run(
        [str(VAULTD), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 1
    assert_one_line(result.stderr, f"cannot write {data_dir}", "--data-dir")


def test_missing_tls_file_with_workers(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    port = free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--workers", "2"]
    code, _, err = serve(tmp_path, *args, "--tls-cert", missing, "--tls-key", missing)
    assert code == 2
    assert_one_line(err, f"{missing} does not exist")


def test_failure_inside_a_worker_is_one_line_and_its_exit_code(tmp_path: Path) -> None:
    """A worker process that fails to start (here: its port taken after the parent's check)
    prints the same one line, with its pid, and exits with the failure's code."""
    InternalProvider.from_file(tmp_path / "root.key")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        fields = {"listen": f"127.0.0.1:{port}", "data_dir": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "-c", f"from vaultd.workers import _worker; _worker({fields!r})"],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    assert result.returncode == 1
    # Not gRPC's own lines (E...) nor vaultd's JSON log lines: the one line for the operator.
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("E", "{"))]
    assert len(lines) == 1 and lines[0].startswith("vaultd: worker "), result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]


# --- describe(), for what a process test cannot easily provoke --------------------------------


def test_exit_code_attribute_is_used_as_is() -> None:
    from vaultd.core.storeguard import StoreRefused

    failure = startup.describe(StoreRefused("the store was written by a newer vaultd", 2))
    assert failure == startup.Failure("the store was written by a newer vaultd", 2)
    assert startup.describe(StoreRefused("x", 1)) == startup.Failure("x", 1)


def test_unknown_errors_keep_their_traceback() -> None:
    assert startup.describe(KeyError("a bug")) is None
    assert startup.describe(RuntimeError("a bug")) is None


def test_store_unavailable_without_redis_names_the_store() -> None:
    failure = startup.describe(StoreUnavailable("disk I/O error"))
    assert failure is not None and failure.exit_code == 1
    assert "cannot reach the store: disk I/O error" in failure.message


def test_redact_url_masks_only_the_password() -> None:
    assert startup.redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert startup.redact_url("rediss://u:pw@h:1/0") == "rediss://u:***@h:1/0"
    assert startup.redact_url("redis://h:1/0") == "redis://h:1/0"


def test_permission_denied_names_the_uid_and_the_fix() -> None:
    """What a Docker volume not writable by uid 10001 raises (root cannot be refused here)."""
    denied = PermissionError(13, "Permission denied", "/var/lib/vaultd/root.key")
    failure = startup.describe(denied)
    assert failure is not None and failure.exit_code == 1
    uid = os.getuid()
    assert failure.message.startswith("cannot write /var/lib/vaultd/root.key: Permission denied")
    assert f"writable by uid {uid}" in failure.message and "chown -R" in failure.message
    assert "--data-dir" in failure.message


def test_a_store_that_cannot_take_the_start_up_writes_is_one_runtime_line() -> None:
    from vaultd.core.errors import BackendUnavailable

    refused = BackendUnavailable("storage is unavailable (only 0 replica(s) connected); retry")
    failure = startup.describe(refused)
    assert failure == startup.Failure(
        "cannot start: storage is unavailable (only 0 replica(s) connected); retry", 1
    )
