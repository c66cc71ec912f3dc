"""agent_gym.pysource: Python source parsed from many threads at once (HumanEval replies in a threaded rollout)."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent_gym import pysource

NESTED = "def f(x):\n" + "".join("    " * (i + 1) + f"if x > {i}:\n" for i in range(20)) + "    " * 21 + "return [[x]]\n"


def test_parses_from_many_threads_give_the_trees_one_thread_gives():
    """CPython 3.11 raised ``SystemError: AST constructor recursion depth mismatch`` for parses interleaved
    across threads (CI: 4 threads over HumanEval's 164 canonical solutions)."""
    sources = [NESTED, "x = (", NESTED.replace("return", "yield"), "def g(:\n  pass"] * 100

    def parse(source: str) -> str:
        try:
            return ast.dump(pysource.parse(source))
        except SyntaxError as exc:
            return f"SyntaxError: {exc.msg}"

    alone = [parse(s) for s in sources[:4]] * 100
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(parse, sources)) == alone
    assert alone[1].startswith("SyntaxError")


def test_mode_is_passed_on():
    assert isinstance(pysource.parse("1 + 2", mode="eval"), ast.Expression)
    with pytest.raises(SyntaxError):
        pysource.parse("x = 1", mode="eval")
