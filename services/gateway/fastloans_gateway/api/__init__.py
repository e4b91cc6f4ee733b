"""The HTTP layer: routes, their dependencies, error answers and the OpenAPI document."""
