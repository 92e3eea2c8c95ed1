"""lambdagate: a KrakenD-compatible API gateway for AWS Lambda functions and HTTP services."""

__version__ = "0.1.0"
