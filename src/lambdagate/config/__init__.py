"""Config stage: read the KrakenD-format file and validate it once into typed objects."""

from lambdagate.config.loader import LoadedConfig, is_typed_backend, load_config, read_document, validate_document
from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
from lambdagate.config.namespaces import LoadOptions
from lambdagate.config.server_options import ServerOptions, server_options

__all__ = [
    "BackendConfig",
    "EndpointConfig",
    "LoadOptions",
    "LoadedConfig",
    "ServerOptions",
    "ServiceConfig",
    "is_typed_backend",
    "load_config",
    "read_document",
    "server_options",
    "validate_document",
]
