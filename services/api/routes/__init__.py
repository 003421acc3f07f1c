"""The API's routers, one module per concern: health, use-case configuration and requests,
observations (metrics, alerts, models)."""
