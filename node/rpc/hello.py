"""A bare hello-world ASGI app: the baseline the RPC benchmark measures on the same stack."""

from __future__ import annotations

from node.rpc.serving import AsgiReceive, AsgiScope, AsgiSend

_BODY = b'{"hello":"world"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def hello_app(scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
    """Reads the whole request body (as the RPC server must) and answers a constant."""
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
