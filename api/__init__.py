"""The FastAPI application: ingest, customers and health routers over a thin Redis store."""
