"""The controller's commands for the `shelf` command line (see `commands.py`)."""
