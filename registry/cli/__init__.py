"""The registry's commands for the `shelf` command line (`commands.py`), with the context
and output helpers every command uses."""
