"""The controller's HTTP API: request/response schemas (:mod:`.schemas`, light enough for the
client library) and routes (:mod:`.routers`, which ``shelf.app`` mounts)."""
