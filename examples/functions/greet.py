"""Greets by name: {"name": "Ana"} -> {"greeting": "Hello, Ana!"}.

The name arrives as a top-level key, whether the gateway built the event from
a GET's URL placeholders ({name}) or passed a JSON POST body through.
"""


def handler(event, context):
    name = (event or {}).get("name") or "World"
    return {"greeting": f"Hello, {name}!"}
