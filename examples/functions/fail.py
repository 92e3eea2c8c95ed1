"""Always raises, to show how an unhandled handler error comes back."""


def handler(event, context):
    raise ValueError("something went wrong")
