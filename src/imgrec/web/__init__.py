"""The web tier: FastAPI app, uploads, reply channel, metrics and the page."""
