"""The demo OIP v2 model server; see ``shelf/demo/model_server.py`` for its options.

Run: ``python -m examples.model_server --port 9001 --version-name v1``."""

from shelf.demo.model_server import main

if __name__ == "__main__":
    main()
