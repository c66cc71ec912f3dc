"""The hotpotqa task (package being written; see its env module)."""
