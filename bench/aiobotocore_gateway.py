"""What a typical Python project writes to put Lambda behind HTTP: an ASGI app calling aiobotocore `invoke`.

One long-lived client per worker (created at lifespan start-up), credentials from the environment, the
function's JSON payload returned as the reply. Served by granian (`--interface asgi`), like the gateway.
"""

import contextlib
import os

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

ENDPOINT = os.environ.get("AIOBOTOCORE_ENDPOINT", "http://127.0.0.1:9001")
FUNCTION = os.environ.get("AIOBOTOCORE_FUNCTION", "bench")


class Gateway:
    client = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            stack = contextlib.AsyncExitStack()
            while (await receive())["type"] != "lifespan.shutdown":
                self.client = await stack.enter_async_context(
                    get_session().create_client(
                        "lambda",
                        region_name="us-east-1",
                        endpoint_url=ENDPOINT,
                        config=AioConfig(max_pool_connections=100),
                    )
                )
                await send({"type": "lifespan.startup.complete"})
            await stack.aclose()
            return await send({"type": "lifespan.shutdown.complete"})
        reply = await self.client.invoke(FunctionName=FUNCTION, Payload=b"{}")
        body = await reply["Payload"].read()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


app = Gateway()
