"""The mt_bench task (package being written; see its env module)."""
