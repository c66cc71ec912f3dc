"""The rewoo task (package being written; see its env module)."""
