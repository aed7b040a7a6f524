"""The HTTP edge: FastAPI app, auth dependency, error rendering, routes."""
