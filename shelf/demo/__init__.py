"""Demo pieces for the quickstart and the examples (not used by the running system)."""
