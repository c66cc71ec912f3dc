"""AgentBench's DB protocol as pure functions: prompt, reply parsing, rendering and scoring.

Everything here follows ``AgentBench.old/src/tasks/dbbench`` (the code the AgentTuning paper
evaluated with): the regexes are upstream's, results render as ``str(cursor.fetchall())``
cut at 800 characters, query answers are compared as ``DBBench.metrics`` compares them, and
write questions by the table hash of upstream's md5 query. No engine is touched here.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import re

# upstream's patterns, verbatim
_ACTION = re.compile(r"Action: (.*?)\n")
_SQL_BLOCK = re.compile(r"```sql\n([\s\S]*?)\n```")
_FINAL_ANSWER = re.compile(r"\nFinal Answer:(.*)")

OPERATION = "Operation"
#: Longest observation; longer results are cut and marked as upstream does.
OBSERVATION_LIMIT = 800
TRUNCATED = "[TRUNCATED]"
#: MySQL's default ``group_concat_max_len``, which bounds upstream's table hash.
GROUP_CONCAT_MAX_LEN = 1024


def messages(instruction: str) -> list[dict[str, str]]:
    """The chat turns before the question: the instruction, then the agent's ``Ok.``."""
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": "Ok."}]


def question_text(description: str, add_description: str) -> str:
    """The first observation: the question, then the table's name and headers."""
    return description + "\n" + add_description


@dataclasses.dataclass(frozen=True)
class Reply:
    """What upstream reads in one reply.

    ``action``: the text after ``Action: `` on a line that ends with a newline (else None).
    ``sql``: the first ```` ```sql ```` block, stripped and made one line (None if absent).
    ``answer``: the rest of the first ``\\nFinal Answer:`` line, not stripped (None if absent).
    """

    action: str | None
    sql: str | None
    answer: str | None

    @property
    def is_operation(self) -> bool:
        return self.action == OPERATION


def parse_reply(reply: str) -> Reply:
    action = _ACTION.search(reply)
    block = _SQL_BLOCK.search(reply)
    answer = _FINAL_ANSWER.search(reply)
    return Reply(
        action=action.group(1) if action else None,
        sql=block.group(1).strip().replace("\n", " ") if block else None,
        answer=answer.group(1) if answer else None,
    )


def operation(sql: str) -> str:
    """A reply that runs ``sql`` (the format the instruction asks for)."""
    return f"Action: Operation\n```sql\n{sql}\n```"


def answer_reply(answers: Sequence[str]) -> str:
    """A reply that commits ``answers`` as the final answer."""
    quoted = ", ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in answers)
    return f"Action: Answer\nFinal Answer: [{quoted}]"


def truncate(text: str) -> str:
    """Upstream's cut: at most 800 characters, then ``[TRUNCATED]``."""
    return text[:OBSERVATION_LIMIT] + TRUNCATED if len(text) > OBSERVATION_LIMIT else text


def render_rows(rows: Iterable[Sequence[Any]]) -> str:
    """``str(cursor.fetchall())`` of a result, truncated; reads only as many rows as show.

    The repr of a list's first rows is a prefix of the whole list's repr, so once the text
    passed the limit the remaining rows (of a huge result) cannot change the observation.
    """
    parts: list[str] = []
    size = 1
    for row in rows:
        part = repr(tuple(row))
        parts.append(part)
        size += len(part) + 2
        if size > OBSERVATION_LIMIT + 2:
            return truncate("[" + ", ".join(parts))
    return truncate("[" + ", ".join(parts) + "]")


def _literal(text: str) -> Any:
    """``eval(text)`` as upstream does it, restricted to Python literals (never runs code)."""
    return ast.literal_eval(text)


def answer_matches(answer: str, label: Sequence[str]) -> bool:
    """``DBBench.metrics``' check of a query answer (the raw text after ``Final Answer:``).

    The answer is read as a Python list (else taken as one string, leading space included);
    one answer vs one label compare as floats when both parse, else as exact strings;
    otherwise as sets (order and duplicates ignored, no type coercion). An answer the check
    cannot compare (an integer too large for a float: upstream's ``float()`` raised
    OverflowError there) is wrong.
    """
    try:
        got = list(_literal(answer))
    except Exception:  # noqa: BLE001 - upstream's bare except: anything unreadable is one string
        got = [answer]
    if len(got) == 1 and len(label) == 1:
        try:
            return float(got[0]) == float(label[0])
        except (ValueError, TypeError):
            return got[0] == label[0]
        except OverflowError:
            return False
    try:
        return set(got) == set(label)
    except TypeError:  # unhashable items
        return False


def _mysql_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def table_hash(rows: Iterable[Sequence[Any]]) -> str:
    """Upstream's md5 query computed in Python, rendered as upstream's answer string.

    ``md5(group_concat(substring(md5(concat_ws(',', cols...)), 1, 5) order by ...))``: NULLs
    are skipped by CONCAT_WS, the row hashes sorted and joined by ``,`` and cut at MySQL's
    default ``group_concat_max_len``; no rows give NULL. Used where the engine has no MD5
    (SQLite); on MariaDB the server runs upstream's query itself.
    """
    rowhashes = sorted(
        hashlib.md5(",".join(_mysql_text(v) for v in row if v is not None).encode("utf-8")).hexdigest()[:5]
        for row in rows
    )
    if not rowhashes:
        return str([(None,)])
    joined = ",".join(rowhashes).encode("utf-8")[:GROUP_CONCAT_MAX_LEN]
    return str([(hashlib.md5(joined).hexdigest(),)])


def md5_query(table: str, columns: Sequence[str]) -> str:
    """Upstream's hash query, verbatim (columns are given already escaped as at creation)."""
    cols = ",".join(f"`{c}`" for c in columns)
    return (f"select md5(group_concat(rowhash order by rowhash)) as hash "
            f"from( SELECT substring(MD5(CONCAT_WS(',', {cols})), 1, 5) AS rowhash FROM `{table}`) as sub;")


_ESCAPES = {"\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"', "\\": "\\\\"}


def mysql_escape(text: str) -> str:
    """``mysql_real_escape_string`` (what upstream applies to column names and values)."""
    return "".join(_ESCAPES.get(c, c) for c in text)
