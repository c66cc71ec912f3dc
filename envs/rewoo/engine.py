"""ReWOO's workers (tools) offline, and the LLM calls the env makes itself (the LLM tool and judge, when configured).

- ``Wikipedia``: :class:`agent_gym.textsearch.Explorer` ``search`` over the HotpotQA pages (upstream:
  langchain ``DocstoreExplorer(Wikipedia()).search``): a page's first paragraph, or "Could not find [x]. Similar: [...]".
- ``Calculator``: exact arithmetic with sympy (upstream: langchain ``LLMMathChain``, an LLM writing numexpr code).
  Only numbers, + - * / ^ ** ( ) %, and a few functions (sqrt, exp, log, ln, sin, cos, tan, pi, E, abs, floor,
  ceiling, factorial); powers, factorials and every intermediate value's size (:data:`MAX_DIGITS`) are
  bounded so a reply cannot stall the env.
- ``SearchSOTU``: the BM25 best passage of the 2023 State of the Union (upstream: a vector store's top chunk of
  1000 characters).
- ``Google``, ``WolframAlpha``: online services; answered :data:`NOT_AVAILABLE` unless ``endpoints`` names a URL,
  which gets ``GET <url>?q=<input>`` and answers with the response body (text).
- ``LLM``: a :class:`agent_gym.policies.backend.Backend` (``get_backend(kind, **config)``).
"""

from __future__ import annotations

import functools
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from decimal import Decimal, localcontext
from typing import Any

from agent_gym.core import LLAMA2_SYSTEM
from agent_gym.textsearch import Document, Explorer, TextIndex

NOT_AVAILABLE = ("{tool} is not available offline (the paper called an online service). "
                 "Configure one with endpoints={{'{tool}': URL}}.")
NO_EVIDENCE = "No evidence found"
ONLINE_TOOLS = ("Google", "WolframAlpha")
ENDPOINT_TIMEOUT = 30.0
SOTU_CHUNK = 1000  # characters, the size of langchain's default splitter chunks

# ------------------------------------------------------------------------------ Wikipedia
_wiki: dict[str, TextIndex] = {}


def wikipedia_index(pages: Callable[[], list[Document]]) -> TextIndex:
    if "pages" not in _wiki:
        _wiki["pages"] = TextIndex.build(pages())
    return _wiki["pages"]


def wikipedia(index: TextIndex, query: str) -> str:
    return Explorer(index).search(query)


# ------------------------------------------------------------------------------ SearchSOTU
def chunks(text: str, size: int = SOTU_CHUNK) -> list[str]:
    """Paragraphs (blank-line separated) packed greedily into chunks of at most ``size`` characters."""
    out: list[str] = []
    current = ""
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        while len(para) > size:  # a paragraph longer than a chunk is cut at its last space before the limit
            cut = para.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            if current:
                out.append(current)
                current = ""
            out.append(para[:cut])
            para = para[cut:].strip()
        if current and len(current) + 2 + len(para) > size:
            out.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


@functools.lru_cache(maxsize=2)
def sotu_index(text: str) -> TextIndex:
    return TextIndex.build([Document("", c) for c in chunks(text)])


def search_sotu(index: TextIndex, query: str) -> str:
    hits = index.search(query, k=1)
    return index.documents[hits[0].index].text if hits else "No passage of state_of_the_union matches the query."


# ------------------------------------------------------------------------------ Calculator
_FUNCTIONS = ("sqrt", "exp", "log", "ln", "sin", "cos", "tan", "pi", "E", "abs", "Abs", "floor", "ceiling",
              "factorial")
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000
MAX_SIMPLIFY_OPS = 12  # larger irrational results are shown as computed, with their decimal value
MAX_DIGITS = 100_000  # of any intermediate value: exact products of that size take milliseconds


class CalculatorError(ValueError):
    pass


def calculate(expression: str) -> str:
    """The exact value of an arithmetic expression (``"(2 * 3.5 - 10) - 8"`` -> ``"-11"``,
    ``"1/3"`` -> ``"1/3 ≈ 0.333333333333333"``); raises :class:`CalculatorError` for anything else."""
    import sympy
    from sympy.parsing.sympy_parser import parse_expr, rationalize, standard_transformations

    text = expression.strip().rstrip("=?").strip()
    text = text.replace("^", "**").replace("×", "*").replace("÷", "/").replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)        # 1,234 -> 1234
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", text)     # 20% -> (20/100)
    if not text or len(text) > 500:
        raise CalculatorError("give one arithmetic expression (at most 500 characters)")
    if not re.fullmatch(r"[0-9A-Za-z\s.+\-*/()]*", text) or re.search(r"[A-Za-z)]\s*\.", text):
        raise CalculatorError("only numbers, + - * / ^ ( ) and functions like sqrt(...) are understood")
    unknown = sorted(set(re.findall(r"[A-Za-z]+", text)) - set(_FUNCTIONS))
    if unknown:
        raise CalculatorError(f"unknown names {unknown}: the calculator has no variables")
    names = {name: getattr(sympy, name) for name in _FUNCTIONS if name not in ("abs", "ln")}
    names.update({"abs": sympy.Abs, "ln": sympy.log})
    try:
        tree = parse_expr(text, local_dict=names, transformations=standard_transformations + (rationalize,),
                          evaluate=False)
    except Exception as exc:  # noqa: BLE001 - sympy's parser raises many kinds
        raise CalculatorError(f"cannot parse {expression!r} ({type(exc).__name__})") from None
    for node in sympy.preorder_traversal(tree):
        if isinstance(node, sympy.Pow):
            exponent = node.exp if node.exp.is_Number else None
            if exponent is None and not node.exp.has(sympy.Pow, sympy.factorial):
                exponent = node.exp.doit()
            limit = 100 if node.base.has(sympy.Pow, sympy.factorial) else MAX_EXPONENT  # (10**9999)**9999: too big
            if exponent is None or not exponent.is_number or abs(exponent) > limit:
                raise CalculatorError(f"exponents are limited to numbers up to {limit}")
        if isinstance(node, sympy.factorial) and not (node.args[0].is_Number and node.args[0] <= MAX_FACTORIAL):
            raise CalculatorError(f"factorials are limited to numbers up to {MAX_FACTORIAL}")
    for node in sympy.preorder_traversal(tree):
        # exact integers of every sub-expression are computed: refuse one past MAX_DIGITS by its
        # floating-point size first (((9**9999)**100)**100 has 95 million digits: minutes, then memory)
        try:
            size = abs(sympy.N(node, 5)) if node.is_number else None
        except Exception:  # noqa: BLE001 - evaluated again below, which reports it
            size = None
        if size is not None and size.is_Float and size > _too_big():
            raise CalculatorError(f"a number in it has more than {MAX_DIGITS} digits")
    try:
        value = tree.doit()
        if not value.is_Rational and sympy.count_ops(value) <= MAX_SIMPLIFY_OPS:
            # simplify has no time bound: a product of 19 sums of square roots ran for minutes
            value = sympy.simplify(value)
    except Exception as exc:  # noqa: BLE001
        raise CalculatorError(f"cannot evaluate {expression!r} ({type(exc).__name__})") from None
    if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise CalculatorError("the result is undefined (division by zero?)")
    if not value.is_number or not value.is_real:
        raise CalculatorError(f"{value} is not a real number")
    return _show(value, sympy)


def _show(value: Any, sympy: Any) -> str:
    if value.is_Rational and max(abs(int(value.p)), int(value.q)).bit_length() > 3000:  # ~900 digits: say it roughly
        return str(sympy.N(value, 15))
    if value.is_Integer:
        return str(int(value))
    if value.is_Rational:
        p, q = int(value.p), int(value.q)
        rest = q
        for prime in (2, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:  # a terminating decimal: exact
            with localcontext() as ctx:
                ctx.prec = 200
                return format((Decimal(p) / Decimal(q)).normalize(), "f")
        return f"{p}/{q} ≈ {sympy.N(value, 15)}"
    return f"{value} ≈ {sympy.N(value, 15)}"


@functools.lru_cache(maxsize=1)
def _too_big() -> Any:
    import sympy

    return sympy.Float(10, 5) ** MAX_DIGITS  # Float("1e100000") takes seconds to parse


def calculator(expression: str) -> str:
    try:
        return calculate(expression)
    except CalculatorError as exc:
        return f"Calculator error: {exc}"
    except Exception as exc:  # noqa: BLE001 - a tool never crashes the env
        return f"Calculator error: cannot evaluate {expression!r} ({type(exc).__name__})"


# ------------------------------------------------------------------------------ online tools
def endpoint(url: str, query: str, timeout: float = ENDPOINT_TIMEOUT) -> str:
    """``GET url?q=query`` -> the body as text (at most 8000 characters); a failure is said, not raised."""
    sep = "&" if "?" in url else "?"
    try:
        with urllib.request.urlopen(f"{url}{sep}q={urllib.parse.quote(query)}", timeout=timeout) as resp:
            return resp.read(64_000).decode("utf-8", "replace")[:8000].strip()
    except Exception as exc:  # noqa: BLE001 - a tool failure is evidence, not an env fault
        return f"The endpoint {url} failed: {type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------ LLM calls
def make_backend(config: dict[str, Any]):
    """A backend from ``{"backend": "local"|"tgi"|"openai", "model": ..., "url": ...}`` (policies' get_backend)."""
    from agent_gym.policies.backend import get_backend

    config = dict(config)
    kind = config.pop("backend", "local")
    return get_backend(kind, **config)


def ask(backend: Any, user: str, *, max_new_tokens: int = 256, system: str | None = LLAMA2_SYSTEM) -> str:
    """One greedy chat turn through ``backend`` (its own chat template, or messages for a server)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    render = backend.chat_template() if callable(getattr(backend, "chat_template", None)) else None
    prompt: str | Sequence[dict[str, str]] = render(messages) if render is not None else messages
    return backend.generate(prompt, max_new_tokens=max_new_tokens, temperature=0.0).text


def backend_label(backend: Any) -> dict[str, Any]:
    prov = getattr(backend, "provenance", None)
    prov = prov() if callable(prov) else prov
    prov = prov if isinstance(prov, dict) else {}
    return {"backend": prov.get("backend", getattr(backend, "kind", type(backend).__name__)),
            "model": prov.get("model", getattr(backend, "model_name", None)), "url": prov.get("url")}
