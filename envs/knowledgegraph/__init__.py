"""The knowledgegraph task (package being written; see its env module)."""
