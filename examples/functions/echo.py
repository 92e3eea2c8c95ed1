"""Returns the event it received, unchanged."""


def handler(event, context):
    return event
