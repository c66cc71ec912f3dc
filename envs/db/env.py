"""``AgentTuning/DB-v0``: AgentBench's DBBench, one question per episode, on MariaDB or SQLite.

The episode follows ``AgentBench.old``'s ``dbbench.process``: the instruction and ``Ok.`` are
the prompt, the question and its table's headers the first observation. A reply whose first
``Action: `` line says ``Operation`` runs its first ```` ```sql ```` block (made one line) and
the result, or the SQL error, is the next observation. Any other reply ends the episode with
the text after ``\\nFinal Answer:``; an Operation without a SQL block ends it with no answer
(upstream's invalid action). At most 15 SQL rounds: the reply after the 15th is read for a
final answer only (so an episode has at most 16 replies). Query questions score 1 when the
answer matches upstream's check; INSERT/UPDATE questions when the table's final hash is the
expected one, whatever the answer (even after an invalid reply, as upstream).

Splits: ``test`` (upstream's ``std``, the paper's 300 questions; alias ``"std"``) and ``dev``
(upstream's 60-question dev file); ``tasks_file=PATH`` plays a user's JSON-lines file in the same
format. The paper's harness sent no system message and decoded greedily with 128 new tokens.

Engines: ``engine="mariadb"`` (default where ``mariadbd`` is installed, and the paper's
option; the expected hash is upstream's ``answer_md5``) or ``engine="sqlite"`` (the expected
hash is recomputed by running the gold SQL on SQLite). Known differences from upstream (see
docs/db.md): MariaDB 10.11 for MySQL 8 (error wording, float text); a 30 s statement limit;
a 256 MB storage cap per episode (a statement past it shows error 1114 and is rolled back);
``ast.literal_eval`` for upstream's ``eval`` of the answer (no code runs); each episode's
account sees only its own database.

Gold replay (tests/envs/test_db.py): MariaDB 297/300 — ``UPDATE/225``: ``answer_md5`` is
reached by no table the gold SQL produces; ``UPDATE/278`` and ``UPDATE/295``: the gold SQL
compares TEXT with a number, error 1292 under MySQL 8's strict mode (quoting the number
solves them). SQLite 299/300 — ``INSERT/180``: the gold SQL's unquoted table name starting
with digits is not SQLite syntax (quoted, it reaches ``answer_md5``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import (ANSWERED, INVALID_ACTION, INVALID_ACTION_END, RUNNING, TASK_LIMIT_REACHED, Begin,
                            Outcome, TextEnv)
from agent_gym.envs.db import data, engine as engines, prompt

#: Upstream's ``max_round`` (configs/tasks/dbbench/std.yaml): SQL executions per episode.
MAX_ROUNDS = 15


class DBEnv(TextEnv):
    task_name = "db"
    splits = ("test", "dev")
    split_aliases: ClassVar[dict[str, str]] = {"std": "test"}
    max_turns = MAX_ROUNDS + 1  # 15 operations, then one last reply read for the answer
    # AgentBench.old's harness: no system message (FastChat llama-2 template, empty system), greedy, 128 tokens
    system_prompt = ""
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 128, "temperature": 0.0}
    paper_options: ClassVar[dict[str, Any]] = {"engine": "mariadb"}  # upstream ran MySQL

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, engine: str | None = None,
                 statement_timeout: float = engines.STATEMENT_TIMEOUT):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self.engine = engines.open_engine(engine, statement_timeout=statement_timeout)
        self._db: engines.Database | None = None
        self._rounds = 0

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Question]:
        """Questions in AgentBench's DBBench JSON-lines format (see :func:`data.load_file`)."""
        return data.load_file(path)

    def engine_info(self) -> dict[str, str]:
        """``{"mariadb": "10.11.6-MariaDB-..."}`` or ``{"sqlite": "3.40.1"}``."""
        return {self.engine.name: self.engine.version()}

    def options(self) -> dict[str, Any]:
        return {"engine": self.engine.name}

    @classmethod
    def engine_status(cls) -> str:
        missing = engines.mariadb_available()
        return "mariadb (default), sqlite" if missing is None else f"sqlite only ({missing})"

    def _begin(self, task: data.Question) -> Begin:
        self._drop()
        self._db = self.engine.create(task.table)
        self._rounds = 0
        return Begin(
            observation=prompt.question_text(task.description, task.add_description),
            prompt=prompt.messages(data.instruction()),
            extra={"type": task.type, "engine": self.engine.name, "setup_error": self._db.setup_error, "rounds": 0},
        )

    def _act(self, action: str) -> Outcome:
        reply = prompt.parse_reply(action)
        if reply.is_operation and self._rounds < MAX_ROUNDS:
            if reply.sql is None:
                return self._finish(None, reason="an Operation needs a ```sql block")
            self._rounds += 1
            # an empty block: upstream's connector sends nothing and fetchall() gives []
            observation = self._db.execute(reply.sql) if reply.sql else "[]"
            return Outcome(observation=observation, extra={"rounds": self._rounds})
        if reply.answer is None:
            return self._finish(None, reason="no Final Answer line")
        return self._finish(reply.answer)

    def _finish(self, answer: str | None, reason: str = "") -> Outcome:
        """Score the episode as ``DBBench.metrics`` does and drop its database."""
        task: data.Question = self.task
        if task.is_write:
            got = self._db.table_hash()
            correct = got == self.engine.expected_hash(task)
        else:
            got = answer or ""
            correct = prompt.answer_matches(got, task.label)
        self._drop()
        status = RUNNING if answer is not None else INVALID_ACTION
        if answer is None and self._rounds >= MAX_ROUNDS:
            status = TASK_LIMIT_REACHED
        verdict = "correct" if correct else "wrong"
        observation = f"Episode over ({reason}): the result is {verdict}." if reason else f"The result is {verdict}."
        # out of rounds: not done, so the base class ends it as truncated (round_limit)
        end_reason = {RUNNING: ANSWERED, INVALID_ACTION: INVALID_ACTION_END}.get(status)
        return Outcome(observation=observation, score=float(correct), success=correct,
                       done=status != TASK_LIMIT_REACHED, status=status, action_valid=answer is not None,
                       end_reason=end_reason, extra={"answer": got, "rounds": self._rounds})

    def expert_replies(self, task: data.Question) -> list[str]:
        """Write questions: the gold SQL, then any answer. Query questions: the label."""
        if task.is_write:
            return [prompt.operation(sql) for sql in task.label] + [prompt.answer_reply([])]
        return [prompt.answer_reply(task.label)]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """Upstream's metrics: accuracy per type, SELECT/INSERT/UPDATE, and their mean
        (``overall_cat_accuracy``, the paper's DB number)."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        kind = lambda t: t.task_id.split("/", 1)[0]  # noqa: E731
        per_type = group_means(trajectories, key=kind)
        buckets = group_means(trajectories, key=lambda t: kind(t) if kind(t) in ("INSERT", "UPDATE") else "SELECT")
        out.update({f"type/{k}": v for k, v in sorted(per_type.items())})
        out.update({f"category/{k}": v for k, v in sorted(buckets.items())})
        present = [buckets[k] for k in ("SELECT", "INSERT", "UPDATE") if k in buckets]
        out["overall_cat_accuracy"] = sum(present) / 3 if present else 0.0
        return out

    def _drop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.drop()

    def close(self) -> None:
        self._drop()
        self.engine.close()
        super().close()
