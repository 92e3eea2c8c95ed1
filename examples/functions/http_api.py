"""A handler written for API Gateway HTTP API events (payload format version 2.0)."""

import json


def handler(event, context):
    method = event["requestContext"]["http"]["method"]
    params = event.get("queryStringParameters") or {}  # absent when there is no query string
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"method": method, "path": event["rawPath"], "query": params}),
    }
