"""``ast.parse`` that is safe to call from several threads at once.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state. Two parses in
different threads can interleave and fail with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905; seen here when 4 HumanEval replies were read in 4 threads). Rollouts run envs in
threads, so every parse of Python source in agent-gym goes through this one lock.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str, mode: str = "exec") -> ast.AST:
    """``ast.parse(source, mode=mode)`` under a process-wide lock. Raises what ``ast.parse`` raises
    (``SyntaxError``, ``ValueError`` for NUL bytes, ``RecursionError`` for very deep nesting)."""
    with _LOCK:
        return ast.parse(source, mode=mode)
