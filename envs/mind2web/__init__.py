"""The mind2web task (package being written; see its env module)."""
