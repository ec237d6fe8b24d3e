"""HTTP API: the FastAPI app, its routes and their guards, and the server that runs it."""
