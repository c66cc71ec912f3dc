"""WebArena's evaluators, as AgentTuning's copy of ``evaluation_harness/evaluators.py`` scored.

A task's score is the product of its ``eval_types`` (``evaluator_router`` + ``EvaluatorComb``):

- ``string_match``: the answer of the final ``stop`` action, one pair of surrounding quotes removed,
  lower-cased (not stripped); ``exact_match``: equal to the cleaned reference; ``must_include``:
  every cleaned phrase is a substring; ``fuzzy_match``: per reference, an LLM judge is asked
  ``Given the statement "{pred}", would it be correct to infer "{reference}"? Yes or No`` (system
  "You are a helpful assistant", temperature 0, 16 tokens) and scores 1 iff its reply holds "Yes".
  Upstream's judge was gpt-3.5-turbo; here any agent-gym backend (:class:`Judge`), named in ``info``.
- ``url_match``: the final page's URL, one trailing "/" removed, against the references split on
  ``" |OR| "``: ``url_note`` "EXACT" (default) membership, "GOLD in PRED" substring.
- ``program_html``: per target, go to its ``url`` (stay for "last"; ``func:`` URLs are helper
  calls), select the full HTML (empty locator), a JavaScript value (``document.…``) or a helper's
  result (``func:…``), strip and lower-case; the target passes iff one of the ``" |OR| "``
  alternatives of ``required_contents`` is a substring. web-arena-x/webarena's later dict form
  (``{"exact_match": s}`` / ``{"must_include": [...]}``) is read too (the ``latest`` split).

Upstream ``eval``-ed the helper calls; here they are parsed (:func:`parse_call`) and only
WebArena's five helpers run.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from agent_gym import pysource

FUZZY_SYSTEM = "You are a helpful assistant"
FUZZY_QUESTION = 'Given the statement "{pred}", would it be correct to infer "{reference}"? Yes or No'
#: ``browser_env/env_config.py``'s accounts (the deployment's seeded users); the shopping helpers log in as admin.
ACCOUNTS = {"shopping_site_admin": {"username": "admin", "password": "admin1234"}}


class JudgeMissing(RuntimeError):
    """A ``fuzzy_match`` task and no judge configured (the message names the setting)."""


@dataclasses.dataclass
class Judge:
    """An agent-gym backend asked WebArena's fuzzy-match question (``helper_functions.llm_fuzzy_match``)."""

    backend: Any

    @property
    def name(self) -> dict[str, Any]:
        prov = getattr(self.backend, "provenance", None)
        if isinstance(prov, dict):
            return {k: prov.get(k) for k in ("backend", "model", "url")}
        return {"backend": type(self.backend).__name__, "model": getattr(self.backend, "model_name", None)}

    def __call__(self, pred: str, reference: str) -> tuple[float, str]:
        messages = [{"role": "system", "content": FUZZY_SYSTEM},
                    {"role": "user", "content": FUZZY_QUESTION.format(pred=pred, reference=reference)}]
        # as chat messages, as upstream sent them: servers apply their model's template, the local backend its own
        reply = self.backend.generate(messages, max_new_tokens=16, temperature=0.0).text
        return (1.0 if "Yes" in reply else 0.0), reply


def clean_answer(answer: str) -> str:
    """AgentTuning's ``StringEvaluator.clean_answer``: one pair of quotes off, lower case."""
    if answer.startswith("'") and answer.endswith("'"):
        answer = answer[1:-1]
    elif answer.startswith('"') and answer.endswith('"'):
        answer = answer[1:-1]
    return answer.lower()


def string_match(answer: str, references: Mapping[str, Any], judge: Judge | None) -> tuple[float, dict[str, Any]]:
    """Score of the final answer against ``reference_answers``; the details (judge replies)."""
    pred = clean_answer(answer)
    score, details = 1.0, {}
    for approach, value in references.items():
        if approach == "exact_match":
            score *= float(pred == clean_answer(str(value)))
        elif approach == "must_include":
            for phrase in value:
                score *= float(clean_answer(str(phrase)) in pred)
        elif approach == "fuzzy_match":
            if judge is None:
                raise JudgeMissing(
                    "this task's answer is scored by fuzzy_match, an LLM judge: pass judge_backend= (local, tgi or "
                    "openai) with judge_model= / judge_url= to the env (upstream's judge was gpt-3.5-turbo)")
            replies = []
            for reference in value:
                fuzzy, reply = judge(pred, str(reference))
                replies.append(reply)
                score *= fuzzy
            details["judge"] = judge.name
            details["judge_replies"] = replies
        else:
            raise ValueError(f"unknown string_match approach {approach!r}")
    return score, details


def clean_url(url: str) -> str:
    url = str(url)
    return url[:-1] if url.endswith("/") else url


def url_match(url: str, evaluation: Mapping[str, Any]) -> float:
    """``URLExactEvaluator``."""
    pred = clean_url(url)
    refs = [clean_url(u) for u in str(evaluation["reference_url"]).split(" |OR| ")]
    rule = evaluation.get("url_note") or "EXACT"
    if rule == "EXACT":
        return float(pred in refs)
    if rule == "GOLD in PRED":
        return float(any(ref in pred for ref in refs))
    raise ValueError(f"Unknown matching rule: {rule}")


def contents_match(selected: Any, required: Any) -> float:
    """Whether the selected content holds what a ``program_html`` target requires."""
    selected = str(selected).strip().lower()
    if isinstance(required, str):
        return float(any(c.strip().lower() in selected for c in required.split(" |OR| ")))
    if "exact_match" in required:
        return float(selected == str(required["exact_match"]).strip().lower())
    if "must_include" in required:
        score = 1.0
        for content in required["must_include"]:
            score *= float(any(c.strip().lower() in selected for c in str(content).split(" |OR| ")))
        return score
    raise ValueError(f"Unknown required_contents: {list(required)}")


# ---------------------------------------------------------------------- helper functions
HELPERS = ("reddit_get_post_url", "shopping_get_latest_order_url", "shopping_get_sku_latest_review_author",
           "shopping_get_sku_latest_review_rating", "gitlab_get_project_memeber_role")


def parse_call(expr: str) -> tuple[str, list[Any]]:
    """``name(arg, ...)`` of a ``func:`` entry: a known helper, literal or ``__page__`` arguments."""
    try:
        node = pysource.parse(expr.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not a helper call: {expr!r} ({exc.msg})") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in HELPERS
            and not node.keywords):
        raise ValueError(f"not a call of one of WebArena's helpers ({', '.join(HELPERS)}): {expr!r}")
    args: list[Any] = []
    for arg in node.args:
        if isinstance(arg, ast.Name) and arg.id in ("__page__", "page"):
            args.append(PAGE)
        else:
            args.append(ast.literal_eval(arg))
    return node.func.id, args


PAGE = object()  # stands for the browser page in a parsed call


def reddit_get_post_url(url: str) -> str:
    """``http://domain/f/<forum>/<post id>/...`` -> the post's URL; other URLs as they are."""
    parsed = urllib.parse.urlparse(url)
    parts = parsed.path.split("/")
    if len(parts) < 4 or parts[1] != "f":
        return url
    return f"{parsed.scheme}://{parsed.netloc}/f/{parts[2]}/{parts[3]}/"


def _shopping_json(shopping: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    account = ACCOUNTS["shopping_site_admin"]
    request = urllib.request.Request(f"{shopping}/rest/default/V1/integration/admin/token",
                                     data=json.dumps(account).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    request = urllib.request.Request(f"{shopping}{path}{query}", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def call_helper(name: str, args: list[Any], browser: Any, sites: Mapping[str, str]) -> str:
    """Run one of WebArena's helpers (``evaluation_harness/helper_functions.py``)."""
    if name == "reddit_get_post_url":
        return reddit_get_post_url(str(args[0]).replace("__last_url__", browser.url))
    shopping = sites.get("SHOPPING") or ""
    if name == "shopping_get_latest_order_url":
        items = _shopping_json(shopping, "/rest/V1/orders", {
            "searchCriteria[sortOrders][0][field]": "created_at",
            "searchCriteria[sortOrders][0][direction]": "DESC", "searchCriteria[pageSize]": "1"})["items"]
        return f"{shopping}/sales/order/view/order_id/{int(items[0]['increment_id'])}/"
    if name in ("shopping_get_sku_latest_review_author", "shopping_get_sku_latest_review_rating"):
        reviews = _shopping_json(shopping, f"/rest/V1/products/{urllib.parse.quote(str(args[0]))}/reviews")
        if not reviews:
            return ""
        if name.endswith("author"):
            return str(reviews[-1]["nickname"])
        return str(reviews[-1]["ratings"][0]["percent"])
    if name == "gitlab_get_project_memeber_role":
        account = json.dumps("@" + str(args[1]))
        try:
            return str(browser.evaluate(
                "(() => { const names = document.querySelectorAll(\"td[data-label='Account'] "
                "span.gl-avatar-labeled-sublabel\"); let index = -1; for (let i = 0; i < names.length; i++) "
                f"{{ if (names[i].outerText === {account}) {{ index = i; break; }} }} "
                "return document.querySelectorAll('td.col-max-role span')[index].outerText; })()"))
        except Exception:  # noqa: BLE001 - upstream: any failure reads as no role
            return ""
    raise ValueError(f"unknown helper {name}")


def program_html(targets: list[Mapping[str, Any]], browser: Any, sites: Mapping[str, str],
                 settle: float = 3.0) -> float:
    """``HTMLContentExactEvaluator`` (``settle``: upstream's sleep after each navigation, 3 s)."""
    score = 1.0
    for target in targets:
        url = str(target["url"])
        if url.startswith("func"):
            name, args = parse_call(url.split("func:", 1)[1].replace("__last_url__", browser.url))
            url = call_helper(name, args, browser, sites)
        if url != "last":
            browser.goto(url)
            browser.settle(settle)
        locator = str(target.get("locator") or "")
        if not locator.strip():
            selected: Any = browser.html()
        elif locator.startswith("document."):
            try:
                selected = browser.evaluate(locator) or ""
            except Exception:  # noqa: BLE001 - upstream: the page is wrong, nothing selected
                selected = ""
        elif locator.startswith("func:"):
            name, args = parse_call(locator.split("func:", 1)[1])
            selected = call_helper(name, args, browser, sites)
        else:
            raise ValueError(f"Unknown locator: {locator}")
        score *= contents_match(selected, target["required_contents"])
    return score


def evaluate(evaluation: Mapping[str, Any], answer: str, browser: Any, sites: Mapping[str, str],
             judge: Judge | None, settle: float = 3.0) -> tuple[float, dict[str, Any]]:
    """The task's score (product over ``eval_types``) and each evaluator's score and details."""
    score, details = 1.0, {}
    for kind in evaluation["eval_types"]:
        if kind == "string_match":
            part, extra = string_match(answer, evaluation["reference_answers"], judge)
            details.update(extra)
        elif kind == "url_match":
            part = url_match(browser.url, evaluation)
        elif kind == "program_html":
            part = program_html(evaluation["program_html"], browser, sites, settle)
        else:
            raise ValueError(f"eval_type {kind} is not supported")
        details[kind] = part
        score *= part
    return score, details
