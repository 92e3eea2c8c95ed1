"""The Lambda floor: the skeleton, but each request is a SigV4-signed Invoke POST (lambdagate's own signer).

`granian --interface rsgi bench.skeleton_lambda:app`; the bench's `skeleton_lambda`. Set LAMBDA_ENDPOINT.
"""

import os
from urllib.parse import urlsplit

import aiohttp

from lambdagate.aws.sigv4 import Credentials, SigV4Signer

ENDPOINT = os.environ.get("LAMBDA_ENDPOINT", "http://127.0.0.1:9001")
PATH = "/2015-03-31/functions/bench/invocations"
CREDS = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
SIGNER, HOST = SigV4Signer("us-east-1"), urlsplit(ENDPOINT).netloc


class Skeleton:
    session = None

    async def __rsgi__(self, scope, proto):
        if self.session is None:  # created lazily: it needs the worker's running loop
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        headers = SIGNER.sign("POST", HOST, PATH, "", {}, b"{}", CREDS)
        async with self.session.post(ENDPOINT + PATH, data=b"{}", headers=headers) as resp:
            proto.response_bytes(200, [("content-type", "application/json")], await resp.read())


app = Skeleton()
