"""The webshop task (package being written; see its env module)."""
