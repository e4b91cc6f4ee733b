"""The gateway's routers: one module per part of the API."""
