"""Cross-cutting behaviour (observe, errors, rate limit, auth) wrapped around each method's
handler once, when services are registered, instead of by grpc.aio interceptors on every call.

An aio server interceptor runs for every call: a coroutine per interceptor to find the handler,
then a fresh handler and closure per interceptor. Here the wrapping happens once per method and
each call runs only the wrapped handler, which reads its metadata from its context. The layers
compose as the interceptors did: the first wrapper given is the outermost.

`WrappingRegistrar` stands in for the server in the generated `add_*_to_server` functions (and
health and reflection), so every handler any of them registers is wrapped, whether through a
generic handler or the registered-method table grpc looks up first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import grpc


class Wrapper(Protocol):
    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` (of `method`, "/package.Service/Method") with this layer around it."""
        ...


def wrap_all(
    wrappers: Sequence[Wrapper], method: str, handler: grpc.RpcMethodHandler
) -> grpc.RpcMethodHandler:
    for wrapper in reversed(wrappers):  # innermost first, so wrappers[0] ends up outermost
        handler = wrapper.wrap(method, handler)
    return handler


class _WrappedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler's answers, wrapped on first use and kept per method."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrappers: Sequence[Wrapper]) -> None:
        self._inner = inner
        self._wrappers = wrappers
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        try:
            return self._wrapped[method]
        except KeyError:
            pass
        handler = self._inner.service(details)
        wrapped = None if handler is None else wrap_all(self._wrappers, method, handler)
        if handler is not None:  # an unknown name is not kept: a caller could fill memory
            self._wrapped[method] = wrapped
        return wrapped


class WrappingRegistrar:
    """What the generated `add_*_to_server` functions call, wrapping before registering."""

    def __init__(self, server: grpc.aio.Server, wrappers: Sequence[Wrapper]) -> None:
        self._server = server
        self._wrappers = tuple(wrappers)
        # The wrapped handler of every registered method, by "/package.Service/Method": the
        # HTTP adapter (vaultd/api/http/) calls these, so both front doors share every layer.
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_WrappedGeneric(handler, self._wrappers) for handler in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        # Registered as a generic handler on purpose: grpc.aio's server keeps one pending
        # "next call" task per registered method and, for every call that arrives, waits on all
        # of them again (asyncio.wait over ~30 futures, each given and then relieved of a done
        # callback). A generic handler is one pending task, and its lookup one dict access.
        wrapped = {
            name: wrap_all(self._wrappers, f"/{service}/{name}", handler)
            for name, handler in handlers.items()
        }
        self.handlers.update((f"/{service}/{name}", h) for name, h in wrapped.items())
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, wrapped),)
        )
