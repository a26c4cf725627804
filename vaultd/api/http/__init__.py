"""The WorkOS-Vault-compatible HTTP/JSON front door (docs/HTTP.md), beside the gRPC servicers.

A thin adapter: routes.py maps each WorkOS route to a vaultd method, shapes.py converts JSON
to and from its messages, calls.py runs the method through the same wrapped handler the gRPC
server runs (so auth, permissions, rate limits, audit, logs, metrics and errors are shared),
errors.py renders the resulting status as the SDKs expect, listener.py serves it with uvicorn
on vaultd's event loop. Off unless `http_listen` is set.
"""

from vaultd.api.http.listener import HttpListener, start_http

__all__ = ["HttpListener", "start_http"]
