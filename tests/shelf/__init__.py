"""The composition root's tests: migrations of both packages' tables, apps and CLI assembly."""
