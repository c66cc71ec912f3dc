"""The miniwob task (package being written; see its env module)."""
