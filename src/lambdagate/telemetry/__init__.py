"""Observability: logs (`telemetry/logging`), Prometheus metrics (`telemetry/metrics`) and OpenTelemetry
traces (`telemetry/opentelemetry`). Each module registers its namespace; heavy libraries are imported only
when a config turns the feature on.
"""
