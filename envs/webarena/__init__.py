"""The webarena task (package being written; see its env module)."""
