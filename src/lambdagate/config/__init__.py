"""Config stage: read the KrakenD-format file and validate it once into typed objects."""

from lambdagate.config.loader import LoadedConfig, is_typed_backend, load_config, read_document, validate_document
from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
from lambdagate.config.namespaces import LoadOptions

__all__ = ["BackendConfig", "EndpointConfig", "LoadOptions", "LoadedConfig", "ServiceConfig", "is_typed_backend",
           "load_config", "read_document", "validate_document"]
