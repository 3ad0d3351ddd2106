"""A small JSON-RPC client for the CLI: HTTP for calls, WebSocket for watching a transaction."""

from __future__ import annotations

import itertools
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator
from typing import Any

import trio
import trio_websocket

from node.errors import NodeError

DEFAULT_RPC_URL = "http://127.0.0.1:9944"


class RpcClientError(NodeError):
    """The node could not be reached or did not answer with JSON-RPC."""


class RpcCallError(NodeError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})" + (f": {data}" if data else ""))
        self.code = code
        self.message = message
        self.data = data


def default_url() -> str:
    return os.environ.get("STATEMESH_RPC", DEFAULT_RPC_URL)


class RpcClient:
    def __init__(self, url: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = url or default_url()
        if not self.url.startswith(("http://", "https://")):
            raise RpcClientError(f"--rpc must be an http(s) URL, got {self.url!r}")
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        ).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if not raw:
                raise RpcClientError(f"{self.url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcClientError(f"cannot reach the node at {self.url}: {reason}") from None
        return _result(raw, self.url)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    async def watch(self, method: str, *params: Any) -> AsyncGenerator[Any, None]:
        """Call a subscription method over WebSocket and yield each notification's result."""
        try:
            async with trio_websocket.open_websocket_url(self.ws_url) as ws:
                await ws.send_message(
                    json.dumps(
                        {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
                    )
                )
                subscription = _result(await ws.get_message(), self.url)
                while True:
                    with trio.fail_after(self.timeout):
                        message = json.loads(await ws.get_message())
                    if "error" in message and "id" in message:
                        error = message["error"]
                        raise RpcCallError(error.get("code", 0), error.get("message", ""))
                    params_obj = message.get("params") or {}
                    if params_obj.get("subscription") != subscription:
                        continue
                    if "error" in params_obj:
                        raise RpcClientError(f"subscription ended: {params_obj['error']}")
                    yield params_obj.get("result")
        except (OSError, trio_websocket.HandshakeError) as exc:
            raise RpcClientError(f"cannot reach the node at {self.ws_url}: {exc}") from None
        except trio_websocket.ConnectionClosed as exc:
            raise RpcClientError(f"the node closed the connection: {exc.reason}") from None
        except trio.TooSlowError:
            raise RpcClientError(f"no news from the node for {self.timeout:.0f} s") from None


def _result(raw: bytes | str, url: str) -> Any:
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RpcClientError(f"{url} did not answer with JSON") from None
    if not isinstance(message, dict):
        raise RpcClientError(f"{url} answered with an unexpected JSON value")
    if "error" in message:
        error = message["error"] or {}
        raise RpcCallError(error.get("code", 0), error.get("message", ""), error.get("data"))
    return message.get("result")
