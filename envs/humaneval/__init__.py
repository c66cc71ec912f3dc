"""The humaneval task (package being written; see its env module)."""
