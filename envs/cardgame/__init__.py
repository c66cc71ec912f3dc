"""The cardgame task (package being written; see its env module)."""
