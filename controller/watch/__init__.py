"""The champion watch: every champion's live statistics against its reference profile and its
own first period in production, by sequential change detectors (``controller.stats.drift``),
with a shelf life from its training-data window (docs/champion-watch.md)."""
