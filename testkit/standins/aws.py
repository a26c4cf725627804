"""A stand-in for AWS KMS: moto's server on 127.0.0.1, behind a small WSGI wrapper.

moto speaks the real KMS JSON protocol, so the real boto3 client talks to it over a socket. The
wrapper adds what moto lacks and the tests need:

- `calls`: every Encrypt ("wrap") and Decrypt ("unwrap") the server received, counted before
  moto sees it, so refused requests count too.
- revocation: moto ignores key state (a disabled key still encrypts), so revoke() makes the
  wrapper answer Encrypt / Decrypt for that key the way KMS answers a denied key: HTTP 400,
  `{"__type": "AccessDeniedException", ...}`. restore() undoes it; the key material never moves.
- faults: fail_next() answers the next requests with a given KMS error (throttling, 5xx, ...);
  fail_key() answers every request for one key with it until heal_key() (a long regional 5xx).
- outages: stop() closes the listening socket (connections are refused), start() listens on the
  same port again. moto's state is in-process, so keys survive.
- other accounts and regions: create_key(name, region=..., account=...) makes the key in that
  account (moto keeps one backend per account and region; the stand-in reaches another account
  by assuming a role in it, which moto ties to that account) and add_role() names a role in a
  customer's account vaultd may assume. moto trusts every AssumeRole, so the wrapper plays the
  role's trust policy: AssumeRole for a role not added, or with the wrong ExternalId, is denied
  the way STS denies it (HTTP 403, AccessDenied). `calls["assume_role"]` counts every request.

It is moto's own server (the app, request handler and werkzeug server that ThreadedMotoServer
assembles) built here because ThreadedMotoServer offers no hook to wrap its WSGI app.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
OTHER_REGION = "eu-west-1"
CUSTOMER_ACCOUNT = "222222222222"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
_OPERATIONS = {"TrentService.Encrypt": "wrap", "TrentService.Decrypt": "unwrap"}
_KEY_ID_BYTES = 36  # moto's ciphertext blob starts with the key id (a UUID)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _QuietHandler(MotoRequestHandler):
    """moto's handler without a log line per request, so failing tests' output stays readable."""

    def log_request(self, *args: Any) -> None:
        pass


class AwsKmsStandIn:
    """moto's KMS on a fixed loopback port, with counting, revocation, faults and outages."""

    scheme = "aws-kms"

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: Counter[str] = Counter()
        self.provider_settings: dict[str, Any] = {
            "region": REGION,
            "endpoint_url": self.url,
            **CREDENTIALS,
        }
        self.provider_settings["sts_endpoint_url"] = self.url
        self._roles: dict[str, str | None] = {}
        """Role ARN -> the ExternalId its trust policy requires (None: none required)."""
        self._names: dict[str, frozenset[str]] = {}
        """Every name of each key (id, ARN, alias, alias ARN) -> all its names."""
        self._denied: set[str] = set()
        self._faults: deque[tuple[str, int]] = deque()
        self._failing: dict[str, tuple[str, int]] = {}
        """Every name of a key in a long outage -> the error each request for it gets."""
        self._key_calls: Counter[frozenset[str]] = Counter()
        self._lock = threading.Lock()
        self._moto: WsgiApp = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._admin = boto3.client(
            "kms",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=CREDENTIALS["access_key_id"],
            aws_secret_access_key=CREDENTIALS["secret_access_key"],
        )
        self.start()

    # The StandIn shape.

    def create_key(self, name: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
        """A symmetric key with the alias `alias/<name>`; returns its key ARN URI."""
        admin = self._admin_client(region, account)
        meta = admin.create_key(Description=name)["KeyMetadata"]
        alias = f"alias/{name}"
        admin.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
        names = frozenset(
            {meta["KeyId"], meta["Arn"], alias, self._alias_arn(name, region, account)}
        )
        with self._lock:
            self._names.update(dict.fromkeys(names, names))
        return f"aws-kms://{meta['Arn']}"

    def revoke(self, key_uri: str) -> None:
        with self._lock:
            self._denied |= self._names[_arn(key_uri)]

    def restore(self, key_uri: str) -> None:
        with self._lock:
            self._denied -= self._names[_arn(key_uri)]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # werkzeug closes the listening socket as serve_forever ends, and its dev server answers
        # every request with `Connection: close`, so no kept-alive connection outlives this.
        server.shutdown()
        assert self._thread is not None
        self._thread.join()

    def start(self) -> None:
        if self._server is not None:
            return
        # threaded: boto3 calls arrive from several worker threads at once.
        self._server = make_server(
            "127.0.0.1", self.port, self._app, threaded=True, request_handler=_QuietHandler
        )
        # A short poll so stop() returns in tens of milliseconds, not werkzeug's half second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="aws-kms-standin", daemon=True
        )
        self._thread.start()

    # Beyond the shape.

    def alias_uri(self, name: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
        """The alias ARN URI of the key create_key(name) made."""
        return f"aws-kms://{self._alias_arn(name, region, account)}"

    def add_role(self, name: str, *, account: str, external_id: str | None = None) -> str:
        """A role in `account` that vaultd may assume (with this ExternalId); its ARN."""
        role_arn = f"arn:aws:iam::{account}:role/{name}"
        with self._lock:
            self._roles[role_arn] = external_id
        return role_arn

    def remove_role(self, role_arn: str) -> None:
        """The customer deletes the role (or its trust in vaultd): AssumeRole is denied."""
        with self._lock:
            self._roles.pop(role_arn, None)

    def _admin_client(self, region: str, account: str) -> Any:
        if region == REGION and account == ACCOUNT:
            return self._admin
        credentials: dict[str, str] = {
            "aws_access_key_id": CREDENTIALS["access_key_id"],
            "aws_secret_access_key": CREDENTIALS["secret_access_key"],
        }
        if account != ACCOUNT:
            # Straight to moto, past the wrapper's trust checks: this is the customer's own admin.
            sts = boto3.client("sts", region_name=region, endpoint_url=self.url, **credentials)
            found = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/standin-admin", RoleSessionName="admin"
            )["Credentials"]
            credentials = {
                "aws_access_key_id": found["AccessKeyId"],
                "aws_secret_access_key": found["SecretAccessKey"],
                "aws_session_token": found["SessionToken"],
            }
        return boto3.client("kms", region_name=region, endpoint_url=self.url, **credentials)

    def clear_faults(self) -> None:
        """Drop every fault fail_next() armed and not yet served: the KMS is healthy again."""
        with self._lock:
            self._faults.clear()

    def fail_next(self, error_type: str, status: int, times: int = 1) -> None:
        """Answer the next `times` Encrypt / Decrypt requests with this KMS error."""
        with self._lock:
            self._faults.extend([(error_type, status)] * times)

    def fail_key(self, key_uri: str, error_type: str, status: int) -> None:
        """Answer every Encrypt / Decrypt for this key with this error until heal_key()."""
        with self._lock:
            self._failing.update(dict.fromkeys(self._names[_arn(key_uri)], (error_type, status)))

    def calls_for(self, key_uri: str) -> int:
        """Encrypt / Decrypt requests that named this key (by any of its names)."""
        with self._lock:
            return self._key_calls[self._names[_arn(key_uri)]]

    def heal_key(self, key_uri: str) -> None:
        with self._lock:
            for name in self._names[_arn(key_uri)]:
                self._failing.pop(name, None)

    # The WSGI wrapper.

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        operation = _OPERATIONS.get(environ.get("HTTP_X_AMZ_TARGET", ""))
        if operation is None:
            return self._sts_or_moto(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        with self._lock:
            self.calls[operation] += 1
            requested = _requested_key(json.loads(body or b"{}"))
            if requested in self._names:
                self._key_calls[self._names[requested]] += 1
            fault = self._faults.popleft() if self._faults else self._failing.get(requested)
            denied = requested in self._denied
        if fault is not None:
            return _error(start_response, *fault, "injected by the stand-in")
        if denied:
            action = "kms:Encrypt" if operation == "wrap" else "kms:Decrypt"
            return _error(
                start_response,
                "AccessDeniedException",
                400,
                f"User: arn:aws:iam::{ACCOUNT}:user/vaultd is not authorized to perform: "
                f"{action} because the key policy does not allow it",
            )
        return self._moto(environ, start_response)

    def _sts_or_moto(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """AssumeRole from vaultd passes the role's trust policy first; all else goes to moto."""
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}
        if form.get("Action") != "AssumeRole" or form.get("RoleSessionName") == "admin":
            return self._moto(environ, start_response)
        role_arn = form.get("RoleArn", "")
        with self._lock:
            self.calls["assume_role"] += 1
            trusted = role_arn in self._roles and self._roles[role_arn] == form.get("ExternalId")
        if not trusted:
            return _sts_error(start_response, "AccessDenied", 403)
        return self._moto(environ, start_response)

    @staticmethod
    def _alias_arn(name: str, region: str = REGION, account: str = ACCOUNT) -> str:
        return f"arn:aws:kms:{region}:{account}:alias/{name}"


def _arn(key_uri: str) -> str:
    return key_uri.removeprefix("aws-kms://")


def _requested_key(request: dict[str, Any]) -> str:
    """The key a request names; a Decrypt without KeyId names it inside the ciphertext."""
    if "KeyId" in request:
        return str(request["KeyId"])
    blob = base64.b64decode(request.get("CiphertextBlob", ""))
    return blob[:_KEY_ID_BYTES].decode("ascii", errors="replace")


def _error(
    start_response: StartResponse, error_type: str, status: int, message: str
) -> list[bytes]:
    """An error the way KMS sends it: JSON 1.1, the type in `__type`."""
    body = json.dumps({"__type": error_type, "message": message}).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _sts_error(start_response: StartResponse, code: str, status: int) -> list[bytes]:
    """An error the way STS sends it: the query protocol's XML."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code>"
        "<Message>User is not authorized to perform: sts:AssumeRole</Message>"
        "</Error><RequestId>standin</RequestId></ErrorResponse>"
    ).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def aws_kms_standin() -> Iterator[AwsKmsStandIn]:
    """One stand-in per session; tests keep apart by creating their own keys."""
    standin = AwsKmsStandIn()
    yield standin
    standin.stop()
