"""The `shelf` command line."""
