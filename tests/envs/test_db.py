"""AgentTuning/DB-v0: AgentBench's DBBench on a private MariaDB server and on SQLite.

The protocol (parsing, rendering, scoring) is checked as pure functions first, then on both
real engines: gold replay of all 300 questions, wrong answers and states, AgentBench's
invalid-action handling, SQL errors as observations, limits and isolation. One MariaDB
server serves the whole module (a lease held by the ``mariadb`` fixture).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.core import INVALID_ACTION, TASK_LIMIT_REACHED
from agent_gym.data import DataMissingError, dataset
from agent_gym.envs.db import data, engine as engines, mariadb, prompt, sqlite
from agent_gym.envs.db.env import MAX_ROUNDS, DBEnv
from agent_gym.testing import need_data

gym.register_envs(agent_gym)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "db"
#: Four questions of our own in AgentBench's DBBench format (2 query, 1 INSERT, 1 UPDATE; the
#: write questions' answer_md5 computed with upstream's md5 query on MariaDB).
TASKS_FIXTURE = FIXTURES / "dbbench_tasks.jsonl"
JIU_JITSU = "`Jiu-Jitsu Championships Results`"  # other/0's table, 18 rows

# Questions whose gold solution does not reach AgentBench's expected result, and why (docs/db.md).
GOLD_EXCEPTIONS = {
    "mariadb": {
        "UPDATE/225": "answer_md5 is reached by no table the gold UPDATE (or any one-cell edit) produces",
        "UPDATE/278": "gold `WHERE No = 16` compares TEXT with a number: error 1292 in MySQL 8's strict mode",
        "UPDATE/295": "gold `WHERE `Tie no`=1` compares TEXT with a number: error 1292 in strict mode",
    },
    "sqlite": {
        "INSERT/180": "gold `INSERT INTO 1952_British_Grand_Prix_0` is not SQL for SQLite (unquoted name "
                      "starting with digits); the target stays answer_md5",
    },
}
# Write questions whose expected hash on SQLite is recomputed (not MySQL's answer_md5), and why.
SQLITE_RECOMPUTED = {
    "INSERT/164": "'\\n' in a MySQL string literal is a newline, in SQLite two characters",
    "UPDATE/242": "same: '\\n' escape in the gold string",
    "UPDATE/225": "answer_md5 unreachable (see above); SQLite scores the gold UPDATE's table",
}


def mariadb_or_skip() -> None:
    missing = engines.mariadb_available()
    if missing:
        if os.environ.get("AGENT_GYM_REQUIRE_DATA") == "1":
            pytest.fail(f"MariaDB engine unavailable in CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def mariadb_server():
    """One server for the module: a lease keeps it up while envs come and go."""
    mariadb_or_skip()
    server = mariadb.MariaDBServer.shared()
    server.acquire()
    yield server
    server.release()


@pytest.fixture(params=["mariadb", "sqlite"])
def engine_name(request):
    if request.param == "mariadb":
        request.getfixturevalue("mariadb_server")
    return request.param


@pytest.fixture
def make_env(engine_name):
    need_data("dbbench")
    envs = []

    def make(**kw) -> DBEnv:
        env = DBEnv(engine=engine_name, **kw)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture(scope="module")
def questions():
    need_data("dbbench")
    return {q.id: q for q in data.load()}


def play(env: DBEnv, task: str, replies: list[str]):
    """Reset on ``task`` and send ``replies`` until the episode ends; the last step's result."""
    obs, info = env.reset(options={"task": task})
    result = (obs, 0.0, False, False, info)
    for reply in replies:
        result = env.step(reply)
        if result[2] or result[3]:
            break
    return result


def first(questions, kind: str):
    return next(q for q in questions.values() if q.type == kind and q.table.rows)


# --------------------------------------------------------------------------- pure protocol
def test_parse_reply_uses_upstreams_patterns():
    r = prompt.parse_reply("I will look.\nAction: Operation\n```sql\nSELECT *\nFROM t;\n```\n```sql\nDROP t\n```")
    assert r.is_operation and r.sql == "SELECT * FROM t;"  # first block only, one line
    assert prompt.parse_reply("Action: Operation").action is None  # the action line needs its newline
    assert prompt.parse_reply("Action: Operation\n```sql\nSELECT 1").sql is None  # unterminated block
    r = prompt.parse_reply("Action: Answer\nFinal Answer: [\"a\"] \nmore")
    assert r.answer == ' ["a"] ' and not r.is_operation  # rest of the line, not stripped
    assert prompt.parse_reply("Final Answer: [1]").answer is None  # needs a preceding newline


@pytest.mark.parametrize("answer, label, correct", [
    (' ["x", "y"]', ["y", "x"], True),
    (" 5", ["5"], True),  # not a list: one string, compared as floats
    (' ["1"]', ["1.0"], True),
    (" abc", ["abc"], False),  # the leading space stays
    (' "abc"', ["abc"], False),  # a string is a list of its characters
    (" [2, 3]", ["2", "3"], False),  # sets of ints and strings differ
    (' ["a", "a", "b"]', ["b", "a"], True),
    (" [[1], [2]]", ["1", "2"], False),  # unhashable
    (" [1 2", ["1 2"], False),
    (" __import__('os').system('touch /tmp/pwned-by-db-test')", ["0"], False),
])
def test_answer_matches_like_dbbench_metrics(answer, label, correct):
    assert prompt.answer_matches(answer, label) is correct
    assert not Path("/tmp/pwned-by-db-test").exists()  # answers are read as literals, never run


def test_an_answer_the_checker_cannot_compare_is_wrong_not_an_error(make_env, questions):
    """Issue 15: ``Final Answer: [<a 400-digit integer>]`` made ``float()`` raise OverflowError in
    the check, which ended the episode as ``error``; such an answer is simply wrong."""
    huge = "9" * 400
    assert prompt.answer_matches(f" [{huge}]", ["5"]) is False
    assert prompt.answer_matches(f" [{huge}]", [huge]) is False  # cannot be compared as numbers
    env = make_env()
    q = first(questions, "counting")
    obs, reward, term, trunc, info = play(env, q.id, [f"Action: Answer\nFinal Answer: [{huge}]"])
    assert term and not trunc and info["status"] == "completed" and info["end_reason"] == "answered"
    assert info["score"] == 0.0 and obs == "The result is wrong."


def test_render_rows_is_str_of_fetchall_truncated_and_lazy():
    assert prompt.render_rows([]) == "[]"
    assert prompt.render_rows([("a", 1), (None, 2.5)]) == str([("a", 1), (None, 2.5)])
    rows = [(f"row {i}",) for i in range(200)]
    text = prompt.render_rows(rows)
    assert text == str(rows)[:800] + "[TRUNCATED]"
    assert prompt.render_rows(itertools.repeat(("x",))) == str([("x",)] * 200)[:800] + "[TRUNCATED]"


def test_table_hash_matches_upstream_format():
    assert prompt.table_hash([]) == "[(None,)]"
    h = prompt.table_hash([("a", None, "b")])
    assert h.startswith("[('") and h.endswith("',)]") and len(h) == 32 + 7
    assert prompt.table_hash([("1", "2"), ("3", "4")]) == prompt.table_hash([("3", "4"), ("1", "2")])


def test_messages_are_agentbench_prompt(questions):
    q = questions["other/0"]
    env_prompt = prompt.messages(data.instruction())
    assert env_prompt[0]["content"].startswith("\nI will ask you a question, then you should help me operate a MySQL")
    assert env_prompt[1] == {"role": "assistant", "content": "Ok."}
    assert prompt.question_text(q.description, q.add_description).endswith("the headers of this table are "
                                                                            "Result,Opponent,Method,Event,Notes.")


# --------------------------------------------------------------------------- both engines
def test_gold_replay(make_env, engine_name, questions):
    """Every question's gold solution: write questions run the gold SQL, query questions
    answer the label. All pass except the listed, explained exceptions."""
    env = make_env()
    failures = {}
    for q in questions.values():
        *_, info = play(env, q.id, env.expert_replies(q))
        if not info["success"]:
            failures[q.id] = info.get("answer")
    assert set(failures) == set(GOLD_EXCEPTIONS[engine_name]), failures
    passed = len(questions) - len(failures)
    print(f"\n{engine_name}: gold replay {passed}/{len(questions)}; exceptions: {sorted(failures)}")


def test_gold_exceptions_are_solvable_or_documented(make_env, engine_name, questions):
    env = make_env()
    if engine_name == "mariadb":
        # the numeric comparisons fail as on MySQL 8; quoting the number solves them
        obs, *_ = play(env, "UPDATE/278", [prompt.operation(questions["UPDATE/278"].label[0])])
        assert obs.startswith("1292 (22007): Truncated incorrect")
        fixed = questions["UPDATE/295"].label[0].replace("`Tie no`=1", "`Tie no`='1'")
        *_, info = play(env, "UPDATE/295", [prompt.operation(fixed), prompt.answer_reply([])])
        assert info["success"]
    else:
        fixed = questions["INSERT/180"].label[0].replace("INTO 1952_British_Grand_Prix_0", "INTO `1952_British_Grand_Prix_0`")
        *_, info = play(env, "INSERT/180", [prompt.operation(fixed), prompt.answer_reply([])])
        assert info["success"]  # MySQL's answer_md5 is reached on SQLite too


def test_sqlite_reaches_mysql_answer_md5_except_listed(questions):
    need_data("dbbench")
    lite = sqlite.SQLiteEngine()
    recomputed = {q.id for q in questions.values() if q.is_write and lite.expected_hash(q) != q.answer_md5}
    assert recomputed == set(SQLITE_RECOMPUTED)


def test_python_table_hash_equals_mariadb_md5_query(mariadb_server, questions):
    """The hash SQLite is scored with is upstream's md5 query, bit for bit (all 300 tables,
    and a table long enough for MySQL's 1024-byte GROUP_CONCAT cut)."""
    eng = mariadb.MariaDBEngine()
    lite_engine = sqlite.SQLiteEngine()
    long_table = data.Table("long", ("a", "b"), tuple((str(i), f"v{i}") for i in range(400)))
    try:
        for table in [q.table for q in questions.values()] + [long_table]:
            db, lite = eng.create(table), lite_engine.create(table)
            try:
                assert bool(db.setup_error) == bool(lite.setup_error), table.name
                if not db.setup_error or "Column count" in db.setup_error:  # missing tables have no hash
                    assert db.table_hash() == lite.table_hash(), table.name
            finally:
                db.drop()
                lite.drop()
    finally:
        eng.close()


def test_wrong_answers_and_wrong_states_fail(make_env, questions):
    env = make_env()
    for q in questions.values():
        if q.is_write:  # doing nothing, or something else, leaves the wrong table
            *_, info = play(env, q.id, [prompt.answer_reply([])])
            assert not info["success"] and info["score"] == 0.0, q.id
        else:
            *_, info = play(env, q.id, [prompt.answer_reply(["no such answer"])])
            assert not info["success"], q.id
    q = first(questions, "INSERT")
    wrong = q.label[0].replace("VALUES (", "VALUES ('x',", 1)
    *_, info = play(env, q.id, [prompt.operation(f"DELETE FROM `{q.table.name}`"), prompt.answer_reply([])])
    assert not info["success"]
    *_, info = play(env, q.id, [prompt.operation(wrong), prompt.answer_reply([])])
    assert not info["success"]


def test_select_episode_runs_sql_and_scores_answer(make_env, engine_name):
    env = make_env()
    obs, info = env.reset(options={"task": "other/0"})
    assert obs.startswith("What are the Notes when the Method is decision?")
    assert info["prompt"][1]["content"] == "Ok." and info["engine"] == engine_name
    obs, reward, term, trunc, info = env.step(
        "Let me query.\nAction: Operation\n```sql\nSELECT Notes FROM `Jiu-Jitsu Championships Results` "
        "WHERE Method = 'decision';\n```")
    assert obs == "[('Women +60kg Bronze',)]"  # case-insensitive match on both engines, as on MySQL
    assert (reward, term, trunc, info["turn"]) == (0.0, False, False, 1)
    obs, reward, term, trunc, info = env.step("It is this.\nAction: Answer\nFinal Answer: [\"Women +60kg Bronze\"]")
    assert (reward, term, info["success"], info["status"]) == (1.0, True, True, "completed")
    assert info["end_reason"] == "answered"


def test_result_rendering_and_truncation(make_env, engine_name):
    env = make_env()
    env.reset(options={"task": "other/0"})
    obs, *_ = env.step(prompt.operation("SELECT COUNT(*), MAX(Result) FROM `Jiu-Jitsu Championships Results`"))
    assert obs == "[(18, 'Win')]"
    obs, *_ = env.step(prompt.operation("SELECT * FROM `Jiu-Jitsu Championships Results`"))
    assert len(obs) == 800 + len("[TRUNCATED]") and obs.endswith("[TRUNCATED]") and obs.startswith("[('Win', 'Venla")
    t0 = time.perf_counter()  # a 34-million-row result is cut without being read
    obs, *_ = env.step(prompt.operation("SELECT a.Result, b.Result FROM `Jiu-Jitsu Championships Results` a, "
                                        "`Jiu-Jitsu Championships Results` b, `Jiu-Jitsu Championships Results` c, "
                                        "`Jiu-Jitsu Championships Results` d, `Jiu-Jitsu Championships Results` e, "
                                        "`Jiu-Jitsu Championships Results` f"))
    assert obs.endswith("[TRUNCATED]") and time.perf_counter() - t0 < 5
    obs, *_ = env.step(prompt.operation("INSERT INTO `Jiu-Jitsu Championships Results` (Result) VALUES ('Draw')"))
    assert obs == "[]"  # a statement without result set, as upstream's connector returns it
    obs, *_ = env.step(prompt.operation("SELECT COUNT(*) FROM `Jiu-Jitsu Championships Results`"))
    assert obs == "[(19,)]"  # committed


def test_sql_errors_are_observations(make_env, engine_name):
    env = make_env()
    env.reset(options={"task": "other/0"})
    cases = {
        "SELEC * FROM x": ("1064 (42000): You have an error in your SQL syntax; check the manual that corresponds "
                           "to your MySQL server version for the right syntax to use near 'SELEC * FROM x' at line 1",
                           'near "SELEC": syntax error'),
        "SELECT * FROM missing": ("1146 (42S02): Table 'Jiu-Jitsu Championships Results.missing' doesn't exist",
                                  "no such table: missing"),
        "SELECT nope FROM `Jiu-Jitsu Championships Results`": ("1054 (42S22): Unknown column 'nope'",
                                                                "no such column: nope"),
    }
    for sql, (maria, lite) in cases.items():
        obs, reward, term, trunc, info = env.step(prompt.operation(sql))
        assert obs.startswith(maria if engine_name == "mariadb" else lite), obs
        assert not (term or trunc) and info["action_valid"] and info["status"] == "running"


@pytest.mark.parametrize("reply, why", [
    ("I think the answer is 5.", "no action, no final answer"),
    ("Action: Operation\nSELECT 1", "an Operation without a sql block"),
    ("Action: Operation\n```sql\nSELECT 1;", "an unterminated sql block"),
    ("Action: Answer\nthe answer is 5", "an Answer without Final Answer"),
    ("Action: Answer Final Answer: [\"x\"]", "Final Answer not on its own line"),
    ("", "an empty reply"),
])
def test_malformed_replies_end_the_episode_as_agentbench_does(make_env, reply, why):
    env = make_env()
    env.reset(options={"task": "other/0"})
    obs, reward, term, trunc, info = env.step(reply)
    assert term and not trunc, why
    assert info["status"] == INVALID_ACTION and not info["action_valid"] and not info["success"]
    assert info["end_reason"] == "invalid_action"


def test_two_actions_run_the_first_and_write_state_counts_even_after_invalid_reply(make_env, questions):
    env = make_env()
    q = first(questions, "INSERT")
    two = prompt.operation(q.label[0]) + "\nAction: Answer\nFinal Answer: [\"done\"]"
    *_, info = play(env, q.id, [two])
    assert info["status"] == "running" and info["rounds"] == 1  # the Operation ran; the episode goes on
    obs, reward, term, trunc, info = env.step("Action: Operation\nno block")  # invalid: ends the episode...
    assert term and info["status"] == INVALID_ACTION
    assert info["success"] and reward == 1.0  # ...but AgentBench scores a write question by its table


def test_round_limit_is_fifteen_sql_rounds_then_one_answer(make_env):
    env = make_env()
    env.reset(options={"task": "counting/17"})
    for i in range(MAX_ROUNDS):
        obs, reward, term, trunc, info = env.step(prompt.operation("SELECT 1"))
        assert not (term or trunc) and info["rounds"] == i + 1
    obs, reward, term, trunc, info = env.step(prompt.operation("SELECT 2") + "\nFinal Answer: [\"1.0\"]")
    assert term and info["success"] and info["rounds"] == MAX_ROUNDS  # the 16th reply is only read for its answer
    assert info["end_reason"] == "answered"
    env.reset(options={"task": "counting/17"})
    for _ in range(MAX_ROUNDS + 1):
        obs, reward, term, trunc, info = env.step(prompt.operation("SELECT 1"))
    assert trunc and not term and info["status"] == TASK_LIMIT_REACHED and not info["success"]
    assert info["end_reason"] == "round_limit"


def test_setup_failures_are_kept_as_upstream(make_env, engine_name):
    """Upstream's CREATE fails on duplicate column names and its INSERT on a short row:
    the table is then missing or empty, and the episode goes on."""
    env = make_env()
    _, info = env.reset(options={"task": "other/13"})
    assert info["setup_error"]
    obs, *_ = env.step(prompt.operation("SELECT * FROM `AFL Cairns Grand Final Results`"))
    assert "doesn't exist" in obs or "no such table" in obs
    _, info = env.reset(options={"task": "counting/17"})
    assert info["setup_error"]
    obs, *_ = env.step(prompt.operation("SELECT COUNT(*) FROM `Schools Information`"))
    assert obs == "[(0,)]"


def test_episodes_are_isolated(make_env, questions):
    env, other = make_env(), make_env()
    q = first(questions, "UPDATE")
    env.reset(options={"task": q.id})
    other.reset(options={"task": q.id})  # the same question at once: two databases
    env.step(prompt.operation(f"DELETE FROM `{q.table.name}`"))
    obs, *_ = other.step(prompt.operation(f"SELECT COUNT(*) FROM `{q.table.name}`"))
    assert obs == f"[({len(q.table.rows)},)]"
    env.reset(options={"task": q.id})  # the next episode starts from the question's table again
    obs, *_ = env.step(prompt.operation(f"SELECT COUNT(*) FROM `{q.table.name}`"))
    assert obs == f"[({len(q.table.rows)},)]"


def test_envs_on_threads_share_one_server(make_env, questions):
    """Rollouts run one env per thread: their episodes must not meet in the server."""
    from concurrent.futures import ThreadPoolExecutor

    envs = [make_env() for _ in range(4)]
    writes = [q for q in questions.values() if q.is_write][:40]

    def replay(env: DBEnv, shard: int) -> list[bool]:
        return [play(env, q.id, env.expert_replies(q))[4]["success"] for q in writes[shard::4]]

    with ThreadPoolExecutor(4) as pool:
        results = [ok for oks in pool.map(replay, envs, range(4)) for ok in oks]
    assert len(results) == 40 and all(results)


def test_statement_time_limit(make_env, engine_name):
    env = make_env(statement_timeout=1.0)
    env.reset(options={"task": "other/0"})
    sql = ("SET STATEMENT max_statement_time=0 FOR SELECT BENCHMARK(10000000000, MD5('x'))" if engine_name == "mariadb"
           else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
    t0 = time.perf_counter()
    obs, reward, term, trunc, info = env.step(prompt.operation(sql))
    assert time.perf_counter() - t0 < 5 and not (term or trunc)
    assert "interrupted" in obs.lower() or obs == "[(0,)]", obs  # a killed BENCHMARK() returns 0
    obs, *_ = env.step(prompt.operation("SELECT 1"))
    assert obs == "[(1,)]"


def test_agent_sql_cannot_reach_outside_its_database(make_env, engine_name, tmp_path):
    env = make_env()
    env.reset(options={"task": "other/0"})
    target = tmp_path / "escape.db"
    if engine_name == "sqlite":
        for sql in (f"ATTACH DATABASE '{target}' AS x", f"VACUUM INTO '{target}'"):
            obs, *_ = env.step(prompt.operation(sql))
            assert "attached" in obs
    else:
        obs, *_ = env.step(prompt.operation("SHOW DATABASES"))
        assert sorted(eval(obs)) == [("Jiu-Jitsu Championships Results",), ("information_schema",)]
        for sql in (f"SELECT 1 INTO OUTFILE '{target}'", "SELECT LOAD_FILE('/etc/passwd')", "SHUTDOWN",
                    "DROP DATABASE mysql", "CREATE DATABASE other", "SET GLOBAL max_statement_time = 0"):
            obs, *_ = env.step(prompt.operation(sql))
            assert "denied" in obs or obs == "[(None,)]", (sql, obs)
    assert not target.exists()
    obs, *_ = env.step(prompt.operation("SELECT COUNT(*) FROM `Jiu-Jitsu Championships Results`"))
    assert obs == "[(18,)]"


def test_check_env_passes(make_env):
    check_env(make_env(), skip_render_check=True)


def test_huge_and_binary_replies(make_env):
    env = make_env()
    env.reset(options={"task": "other/0"})
    obs, *_, info = env.step(prompt.operation("SELECT '" + "x" * 60_000 + "'"))
    assert obs.endswith("[TRUNCATED]") and info["status"] == "running"
    obs, *_, info = env.step(b"Action: Operation\n```sql\nSELECT '\xff\x00'\n```")
    assert obs in ("[('\ufffd',)]",) and info["status"] == "running"
    obs, reward, term, trunc, info = env.step("x" * 100_000)  # refused before parsing: the base class's limit
    assert not info["action_valid"]


def test_several_statements_keep_nothing_as_upstreams_connector(make_env, engine_name, questions):
    """Upstream sends the text with ``execute(sql, multi=True)``, reads the first result and
    commits: with results left unread, mysql-connector says "Commands out of sync" and nothing
    is committed. Both engines show that and keep nothing; a first statement that fails shows
    its own error, as upstream."""
    env = make_env()
    env.reset(options={"task": "other/0"})
    obs, reward, term, trunc, info = env.step(prompt.operation(f"UPDATE {JIU_JITSU} SET Result = 'Draw'; SELECT 1;"))
    assert obs == engines.OUT_OF_SYNC == "2014 (HY000): Commands out of sync; you can't run this command now"
    assert not (term or trunc) and info["status"] == "running" and info["rounds"] == 1
    obs, *_ = env.step(prompt.operation(f"SELECT COUNT(*) FROM {JIU_JITSU} WHERE Result = 'Draw'"))
    assert obs == "[(0,)]"  # the UPDATE was not kept
    assert env.step(prompt.operation("SELECT 1; SELECT 2"))[0] == engines.OUT_OF_SYNC
    assert env.step(prompt.operation(f"SELECT * FROM {JIU_JITSU}; SELECT 1"))[0] == engines.OUT_OF_SYNC  # >800 chars
    obs, *_ = env.step(prompt.operation(f"INSERT INTO {JIU_JITSU} (Result) VALUES ('Draw'); SELEC 1"))
    assert obs == engines.OUT_OF_SYNC  # a later statement's error is never read
    obs, *_ = env.step(prompt.operation("SELEC 1; SELECT 2"))
    assert obs.startswith("1064 (42000): You have an error" if engine_name == "mariadb" else 'near "SELEC"'), obs
    assert env.step(prompt.operation(f"SELECT COUNT(*) FROM {JIU_JITSU}"))[0] == "[(18,)]"
    for one in ("SELECT 1;", "SELECT 1; ;", "SELECT 1 -- ; SELECT 2"):  # one statement, however it ends
        assert env.step(prompt.operation(one))[0] == "[(1,)]", one
    assert env.step(prompt.operation("SELECT 'a;b'"))[0] == "[('a;b',)]"
    q = first(questions, "UPDATE")  # the gold SQL in a batch changes nothing, so the write question fails
    *_, info = play(env, q.id, [prompt.operation(q.label[0] + "; SELECT 1"), prompt.answer_reply([])])
    assert info["status"] == "completed" and not info["success"]


def test_empty_sql_block_shows_empty_result_as_upstream(make_env):
    """Upstream's connector sends nothing for an empty statement and ``fetchall()`` gives ``[]``;
    the round still counts."""
    env = make_env()
    env.reset(options={"task": "other/0"})
    for i, reply in enumerate(["Action: Operation\n```sql\n\n```", "Action: Operation\n```sql\n   \n```"], 1):
        obs, reward, term, trunc, info = env.step(reply)
        assert obs == "[]" and not (term or trunc) and info["action_valid"] and info["rounds"] == i


def test_held_in_prompt_hints_are_agentbenchs(make_env):
    """AgentBench.old's harness sent no system message and decoded greedily with 128 new tokens."""
    assert DBEnv.system_prompt == "" and DBEnv.decoding == {"max_new_tokens": 128, "temperature": 0.0}
    env = make_env()
    obs, info = env.reset(options={"task": "other/0"})
    assert info["system_prompt"] == "" and info["max_new_tokens"] == 128 and info["temperature"] == 0.0
    assert info["end_reason"] is None
    obs, reward, term, trunc, info = env.step(prompt.operation("SELECT 1"))
    assert info["end_reason"] is None  # still running


def test_provenance_names_engine_version_and_options(make_env, engine_name):
    env = make_env()
    _, info = env.reset(options={"task": "other/0"})
    version = env.engine_info()[engine_name]
    if engine_name == "mariadb":
        assert version == env.engine.server.version and "MariaDB" in version
        assert mariadb._installed_version() == version  # what `mariadbd --version` says, before any start
    else:
        import sqlite3

        assert version == sqlite3.sqlite_version
    assert env.engine_info() == {engine_name: version} and env.options() == {"engine": engine_name}
    assert DBEnv.paper_options == {"engine": "mariadb"}
    assert info["provenance"]["engine"] == {engine_name: version}
    assert info["provenance"]["options"] == {"engine": engine_name}
    assert info["provenance"]["paper_options"] == {"engine": "mariadb"}


# --------------------------------------------------------------------------- splits and own tasks
def test_std_is_an_alias_of_test_and_dev_is_declared(questions):
    env = DBEnv(split="std", engine="sqlite")
    assert env.split == "test" and DBEnv.splits == ("test", "dev") and len(env.tasks()) == 300
    env.close()
    dev = next(f for f in dataset("dbbench").files if f.path == "data/dbbench/dev.jsonl")
    assert dev.optional and dev.url.endswith("/AgentBench.old/data/dbbench/dev.jsonl")
    assert dev.sha256 == "eb941c58a7a5651357b19e46aa05070f6cd5a7d83ce70cefd24aa3581e1e1130"
    assert dataset("dbbench").is_present()  # the std split does not need the dev file
    with pytest.raises(ValueError, match="splits"):
        DBEnv(split="train", engine="sqlite")


@pytest.fixture
def data_dir_with_dev(tmp_path, monkeypatch):
    """A data directory whose dbbench dev file is our fixture (same format as upstream's)."""
    need_data("dbbench")
    real = dataset("dbbench").path()
    root = tmp_path / "agentbench"
    (root / "data" / "dbbench").mkdir(parents=True)
    shutil.copy(real / "agentbench_old_prompts.json", root / "agentbench_old_prompts.json")
    shutil.copy(real / "data" / "dbbench" / "standard.jsonl", root / "data" / "dbbench" / "standard.jsonl")
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    return root / "data" / "dbbench" / "dev.jsonl"


def test_dev_split_reads_upstreams_dev_file(data_dir_with_dev, engine_name):
    with pytest.raises(DataMissingError, match="agent-gym data fetch dbbench"):
        DBEnv(split="dev", engine=engine_name).tasks()  # optional: fetched on demand, named when absent
    shutil.copy(TASKS_FIXTURE, data_dir_with_dev)
    env = DBEnv(split="dev", engine=engine_name)
    try:
        assert [q.id for q in env.tasks()] == ["counting/0", "other/1", "INSERT/2", "UPDATE/3"]
        obs, info = env.reset(options={"task": "counting/0"})
        assert obs == ("How many loans were made at the South branch?\nThe name of this table is Library Loans, "
                       "and the headers of this table are Member,Book,Branch,Days.")
        assert info["provenance"]["split"] == "dev"
        obs, *_ = env.step(prompt.operation("SELECT COUNT(*) FROM `Library Loans` WHERE Branch = 'south'"))
        assert obs == "[(2,)]"
        *_, info = env.step(prompt.answer_reply(["2"]))
        assert info["success"]
    finally:
        env.close()


def test_real_dev_file_when_present():
    need_data("dbbench")
    path = dataset("dbbench").path() / "data" / "dbbench" / "dev.jsonl"
    if not path.exists():
        pytest.skip("dev.jsonl not in the data directory: `agent-gym data fetch dbbench` gets it")
    questions = data.load("dev")
    kinds = [q.type for q in questions]
    assert len(questions) == 60 and kinds.count("INSERT") == 20 and kinds.count("UPDATE") == 20


def test_tasks_file_plays_a_users_questions(engine_name):
    """A user's file in DBBench's format: every question solvable by its gold answer, and the
    trajectory says which file (path and sha256)."""
    need_data("dbbench")
    env = gym.make("AgentTuning/DB-v0", engine=engine_name, tasks_file=str(TASKS_FIXTURE)).unwrapped
    try:
        assert env.split == "custom" and len(env.tasks()) == 4
        for q in env.tasks():
            *_, info = play(env, q.id, env.expert_replies(q))
            assert info["success"], q.id
            *_, info = play(env, q.id, [prompt.answer_reply(["wrong"])])
            assert not info["success"], q.id
        assert info["provenance"]["tasks_file"] == {"path": str(TASKS_FIXTURE),
                                                    "sha256": hashlib.sha256(TASKS_FIXTURE.read_bytes()).hexdigest()}
    finally:
        env.close()


def test_tasks_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    row = json.loads(TASKS_FIXTURE.read_text().splitlines()[0])
    del row["table"]
    bad.write_text(TASKS_FIXTURE.read_text().splitlines()[1] + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:3: not a DBBench question"):
        DBEnv.load_tasks_file(bad)


def test_tasks_file_may_be_one_json_list_as_upstream_reads_it(tmp_path):
    """``DBBench.get_data``: a file whose name ends in ``json`` is one JSON list."""
    as_list = tmp_path / "tasks.json"
    as_list.write_text(json.dumps([json.loads(line) for line in TASKS_FIXTURE.read_text().splitlines()]))
    assert DBEnv.load_tasks_file(as_list) == DBEnv.load_tasks_file(TASKS_FIXTURE)


# --------------------------------------------------------------------------- concurrent episodes (MariaDB)
def _root_query(server, sql: str, *args):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


@pytest.mark.exclusive
def test_concurrent_episodes_cannot_touch_each_other(mariadb_server, questions):
    """Issue 9, section 9: each episode has its own account with rights on its own database
    only. While episode B runs a query in another thread, episode A cannot list B's database,
    drop it or kill B's query; B's score equals a clean run's."""
    q = first(questions, "UPDATE")
    # long enough that the attacker's 5 steps all fall inside it on a loaded machine
    victim_replies = [prompt.operation("SELECT SLEEP(6)")] + DBEnv(engine="sqlite").expert_replies(q)
    clean = DBEnv(engine="mariadb")
    try:
        *_, clean_info = play(clean, q.id, victim_replies)
    finally:
        clean.close()
    assert clean_info["success"]

    a, b = DBEnv(engine="mariadb"), DBEnv(engine="mariadb")
    try:
        a.reset(options={"task": "other/0"})
        b.reset(options={"task": q.id})
        victim = b._db
        assert a._db.user != victim.user
        seen = {}

        def run_victim():
            seen["sleep"] = b.step(victim_replies[0])[0]
            for reply in victim_replies[1:]:
                *_, term, trunc, seen["info"] = b.step(reply)

        thread = threading.Thread(target=run_victim)
        thread.start()
        deadline = time.monotonic() + 10
        while not (rows := _root_query(mariadb_server, "SELECT ID FROM information_schema.PROCESSLIST "
                                       "WHERE USER = %s AND INFO LIKE 'SELECT SLEEP%%'", victim.user)):
            assert time.monotonic() < deadline, "the victim's query never started"
            time.sleep(0.02)
        thread_id = rows[0][0]

        obs, *_ = a.step(prompt.operation("SHOW DATABASES"))
        assert sorted(eval(obs)) == [("Jiu-Jitsu Championships Results",), ("information_schema",)]
        obs, *_ = a.step(prompt.operation("SHOW PROCESSLIST"))
        assert thread_id not in [row[0] for row in eval(obs)]
        obs, *_ = a.step(prompt.operation(f"DROP DATABASE `{victim.name}`"))
        assert obs.startswith(f"1044 (42000): Access denied for user '{a._db.user}'@'localhost' to database"), obs
        for kill in (f"KILL {thread_id}", f"KILL QUERY {thread_id}"):
            obs, *_ = a.step(prompt.operation(kill))
            assert obs == f"1095 (HY000): You are not owner of thread {thread_id}", obs
        assert thread.is_alive()  # every attack happened while the victim's query ran
        thread.join(30)
        assert seen["sleep"] == "[(0,)]"  # SLEEP() returns 1 when killed
        assert seen["info"]["score"] == clean_info["score"] == 1.0 and seen["info"]["success"]
    finally:
        a.close()
        b.close()


def test_nothing_done_through_an_episodes_account_outlives_it(mariadb_server, tmp_path):
    """The agent's account is its own and is dropped with its database: changing its password
    locks out only itself, for the rest of its episode; other accounts, files outside the
    server, routines and events are out of reach or go with the database."""
    need_data("dbbench")
    env, other = DBEnv(engine="mariadb"), DBEnv(engine="mariadb")
    outside = tmp_path / "outside"
    try:
        env.reset(options={"task": "other/0"})
        other.reset(options={"task": "other/1"})
        account, database = env._db.user, env._db.name
        for sql in (f"CREATE TABLE t1 (a INT) DATA DIRECTORY='{outside}'",  # placed in the datadir instead
                    f"CREATE TABLE t2 (a INT) ENGINE=MyISAM DATA DIRECTORY='{outside}' INDEX DIRECTORY='{outside}'",
                    "CREATE PROCEDURE p() SELECT 1", "CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO SELECT 1"):
            assert env.step(prompt.operation(sql))[0] == "[]", sql
        for sql in ("SET PASSWORD FOR 'root'@'localhost' = PASSWORD('x')", "CREATE USER 'spare'@'localhost'",
                    "GRANT ALL PRIVILEGES ON *.* TO CURRENT_USER()", "ALTER USER CURRENT_USER() IDENTIFIED BY 'x'",
                    "CREATE DEFINER='root'@'localhost' PROCEDURE q() SELECT 1", "SET GLOBAL max_connections = 1",
                    "INSTALL SONAME 'ha_connect'"):
            obs, *_ = env.step(prompt.operation(sql))
            assert "denied" in obs.lower(), (sql, obs)
        assert env.step(prompt.operation("SET PASSWORD = PASSWORD('mine')"))[0] == "[]"
        obs, *_ = env.step(prompt.operation("SELECT 1"))
        assert obs.startswith(f"1045: Access denied for user '{account}'@'localhost'")  # only itself locked out
        assert other.step(prompt.operation("SELECT 1"))[0] == "[(1,)]"
        assert not outside.exists()

        env.reset(options={"task": "other/0"})  # the next episode: a fresh account, the same database name
        assert env._db.user != account and env._db.name == database
        assert env.step(prompt.operation(f"SELECT COUNT(*) FROM {JIU_JITSU}"))[0] == "[(18,)]"
        assert _root_query(mariadb_server, "SELECT COUNT(*) FROM mysql.user WHERE User = %s", account) == ((0,),)
        assert _root_query(mariadb_server, "SELECT COUNT(*) FROM information_schema.ROUTINES "
                           "WHERE ROUTINE_SCHEMA = %s", database) == ((0,),)
        assert _root_query(mariadb_server, "SELECT COUNT(*) FROM information_schema.EVENTS "
                           "WHERE EVENT_SCHEMA = %s", database) == ((0,),)
    finally:
        env.close()
        other.close()
    leftover = _root_query(mariadb_server, "SELECT User FROM mysql.user WHERE User LIKE 'agent%%'")
    assert account not in {u for (u,) in leftover}


HOSTILE_SQL = [
    # a prepared XA transaction outlives its connection, holding locks that made the next reset's DROP wait
    "XA START 'x'; UPDATE `Jiu-Jitsu Championships Results` SET Notes = 'z'; XA END 'x'; XA PREPARE 'x'",
    "SET GLOBAL max_connections = 1", "SET GLOBAL sql_mode = ''", "SET GLOBAL max_statement_time = 0",
    "SET @@GLOBAL.group_concat_max_len = 4", "SET GLOBAL read_only = 1", "SET GLOBAL event_scheduler = ON",
    "CREATE DATABASE other_db", "DROP DATABASE mysql", "DROP TABLE mysql.user", "USE mysql",
    "UPDATE mysql.global_priv SET Priv = '{}'", "SELECT * FROM mysql.user", "CREATE TABLE test.t (a INT)",
    "CREATE USER 'spare'@'localhost'", "GRANT ALL ON *.* TO CURRENT_USER()", "FLUSH PRIVILEGES",
    "RENAME USER CURRENT_USER() TO 'root'@'%'", "SET GLOBAL max_heap_table_size = 1",
    "PRAGMA max_page_count = 2147483647", "ATTACH DATABASE '/tmp/agent-gym-db-hostile.sqlite' AS x",
    "DROP DATABASE `Jiu-Jitsu Championships Results`",  # its own: gone for this episode only
    "SET PASSWORD = PASSWORD('x')",  # issue 15: this locked every later episode out of the shared account
    "SELECT 1",  # now locked out itself: 1045 for the rest of its episode
]


def _server_state(server) -> tuple:
    """What outlives an episode on the server: global variables, accounts, databases."""
    return (_root_query(server, "SHOW GLOBAL VARIABLES"),
            _root_query(server, "SELECT User, Host FROM mysql.user ORDER BY User, Host"),
            _root_query(server, "SHOW DATABASES"))


@pytest.mark.exclusive
def test_after_a_hostile_episode_the_next_episodes_gold_replay_scores(make_env, engine_name, questions):
    """Issue 15: one reply (``SET PASSWORD = PASSWORD('x')``) broke every later episode of the
    process. Whatever an episode tries (accounts, server variables, other databases), nothing
    outlives it: the server's variables, accounts and databases are as before, and the next
    episodes' gold replays score 1."""
    gold = [first(questions, kind) for kind in ("INSERT", "UPDATE", "counting", "other")]
    env = make_env()
    server = env.engine.server if engine_name == "mariadb" else None
    before = _server_state(server) if server else None
    env.reset(options={"task": "other/0"})
    for sql in HOSTILE_SQL:
        obs, reward, term, trunc, info = env.step(prompt.operation(sql))
        assert not (term or trunc) and info["status"] == "running", (sql, obs)
        if env._rounds == MAX_ROUNDS:
            t0 = time.monotonic()
            env.reset(options={"task": "other/0"})  # a second hostile episode for the rest
            assert time.monotonic() - t0 < 5
            obs, *_ = env.step(prompt.operation(f"SELECT COUNT(*) FROM {JIU_JITSU} WHERE Notes = 'z'"))
            assert obs == "[(0,)]"
    assert not Path("/tmp/agent-gym-db-hostile.sqlite").exists()
    for q in gold:
        assert _gold_scores(env, q) == ("completed", 1.0), q.id
    if server:
        after = _server_state(server)
        users = lambda state: {u for u, _ in state[1] if not u.startswith(mariadb.AGENT_USER_PREFIX)}  # noqa: E731
        assert after[0] == before[0] and users(after) == users(before)
        assert set(after[2]) - set(before[2]) <= {(q.table.name,) for q in gold}  # other envs' episodes
        assert _root_query(server, "XA RECOVER") == ()


GROW_SQL = {  # issue 15: one statement wrote about 200 MB/s (MariaDB), grew the process by 517 MB in 2.6 s (SQLite)
    "mariadb": "INSERT INTO big SELECT REPEAT('x', 1000000) FROM seq_1_to_1000",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
              "INSERT INTO big SELECT replace(hex(zeroblob(500000)), '0', 'x') FROM c",
}


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_storage_cap_stops_a_growing_statement_with_a_clear_error(make_env, engine_name, questions):
    """Issue 15: no storage cap. An episode's database holds at most ``STORAGE_CAP`` (256 MB);
    a statement that grows it past the cap is stopped and rolled back with a clear error, the
    engine's storage (MariaDB's folder in /dev/shm, SQLite's process memory) does not run away,
    the episode goes on, and the next episode's gold replay scores 1."""
    cap = engines.STORAGE_CAP
    env = make_env()
    env.reset(options={"task": "other/0"})
    server_dir = Path(env.engine.server.socket).parent if engine_name == "mariadb" else None
    before = _folder_bytes(server_dir) if server_dir else _rss()
    assert env.step(prompt.operation("CREATE TABLE big (a LONGTEXT)"))[0] == "[]"
    obs, reward, term, trunc, info = env.step(prompt.operation(GROW_SQL[engine_name]))
    assert obs == engines.storage_full(cap) and "256 MB" in obs, obs
    assert not (term or trunc) and info["status"] == "running"
    grown = (_folder_bytes(server_dir) if server_dir else _rss()) - before
    assert grown < cap + (64 << 20), grown / 2**20
    assert env.step(prompt.operation("SELECT COUNT(*) FROM big"))[0] == "[(0,)]"  # rolled back
    small = "INSERT INTO big VALUES ('x')"  # below the cap, writing goes on
    assert env.step(prompt.operation(small))[0] == "[]"
    if engine_name == "mariadb":  # temporary tables and MEMORY tables count too
        for sql in ("CREATE TEMPORARY TABLE t (a LONGTEXT); " + GROW_SQL["mariadb"].replace("big", "t"),
                    "CREATE TEMPORARY TABLE t (a LONGTEXT) ENGINE=InnoDB; " + GROW_SQL["mariadb"].replace("big", "t")):
            assert env.step(prompt.operation(sql))[0] == engines.storage_full(cap), sql
        assert env.step(prompt.operation("SET STATEMENT max_heap_table_size = 1000000000 FOR "
                                         "SELECT @@max_heap_table_size"))[0] == "[(16777216,)]"
    else:
        assert env.step(prompt.operation("PRAGMA max_page_count = 2147483647"))[0] == "not authorized"
    assert _gold_scores(env, first(questions, "INSERT")) == ("completed", 1.0)


def _record(env: DBEnv, q) -> list:
    """Everything a victim's episode shows: each observation, then its status and score."""
    obs, _ = env.reset(options={"task": q.id})
    seen = [obs]
    for reply in env.expert_replies(q) + [prompt.operation(f"SELECT COUNT(*) FROM `{q.table.name}`")]:
        obs, reward, term, trunc, info = env.step(reply)
        seen.append(obs)
        if term or trunc:
            return seen + [info["status"], info["score"]]
    return seen


def test_four_episodes_in_threads_with_one_attacker_equal_a_clean_run(make_env, engine_name, questions):
    """Issue 15, must show: 4 DB episodes in threads, one of them an attacker (server variables,
    accounts, other databases, a statement that grows past the storage cap): the three victims'
    episodes show and score exactly what they do in a clean run."""
    victims = [first(questions, kind) for kind in ("INSERT", "UPDATE", "counting")]
    clean_env = make_env()
    clean = [_record(clean_env, q) for q in victims]
    assert all(run[-2:] == ["completed", 1.0] for run in clean)

    envs = [make_env() for _ in range(4)]
    results: dict[int, list] = {i: [] for i in range(3)}
    attack_obs: list[str] = []
    attacking = threading.Event()
    attacking.set()

    def victim(i: int) -> None:  # episodes, one after another, for as long as the attack goes on
        while attacking.is_set() or not results[i]:
            results[i].append(_record(envs[i], victims[i]))

    def attacker() -> None:
        env = envs[3]
        try:
            env.reset(options={"task": "other/0"})
            env.step(prompt.operation("CREATE TABLE big (a LONGTEXT)"))
            for sql in [GROW_SQL[engine_name], *HOSTILE_SQL]:
                if env._rounds == MAX_ROUNDS:
                    env.reset(options={"task": "other/0"})
                attack_obs.append(env.step(prompt.operation(sql))[0])
        finally:
            attacking.clear()

    threads = [threading.Thread(target=victim, args=(i,)) for i in range(3)] + [threading.Thread(target=attacker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert attack_obs[0] == engines.storage_full()
    for i in range(3):
        assert results[i] and all(run == clean[i] for run in results[i]), (victims[i].id, results[i])


# --------------------------------------------------------------------------- env plumbing
def test_gym_make_engine_option_and_default(mariadb_server):
    need_data("dbbench")
    env = gym.make("AgentTuning/DB-v0", engine="sqlite")
    assert env.unwrapped.engine.name == "sqlite" and env.unwrapped.max_turns == MAX_ROUNDS + 1
    env.close()
    env = gym.make("AgentTuning/DB-v0")
    assert env.unwrapped.engine.name == "mariadb"  # installed here: the faithful default
    env.close()
    with pytest.raises(ValueError, match="unknown DB engine"):
        DBEnv(engine="oracle")


def test_server_starts_lazily_and_stops_with_its_last_env():
    mariadb_or_skip()
    need_data("dbbench")
    server = mariadb.MariaDBServer()  # a private one, not the module's shared server
    eng = mariadb.MariaDBEngine(server=server)
    assert not server.running
    db = eng.create(data.load()[0].table)
    assert server.running and Path(server.socket).exists()
    folder = Path(server.socket).parent
    db.drop()
    eng.close()
    assert not server.running and not folder.exists()


@pytest.mark.exclusive
def test_server_dies_with_its_process(tmp_path):
    mariadb_or_skip()
    code = textwrap.dedent("""
        import sys, time
        from agent_gym.envs.db import mariadb
        server = mariadb.MariaDBServer.shared(); server.acquire()
        print(server._proc.pid, server.socket, flush=True); time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, socket = child.stdout.readline().split()
    pid = int(pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("mariadbd outlived the process that started it")
    folder = Path(socket).parent  # left behind by the killed process: the next start sweeps it at once
    assert folder.exists()
    mariadb._remove_stale_folders(str(folder.parent))
    assert not folder.exists()


def test_start_sweeps_folders_of_dead_processes_only(mariadb_server, tmp_path):
    """Issue 15: the folder of a SIGKILLed process's server was removed only after 60 s; now
    whatever belongs to a dead process goes at the next start, whatever its age, and the
    folders of live processes (this one's server) stay."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"agent-gym-mariadb-{dead.pid}-{mariadb._process_start(os.getpid())}-x1"
    reused = tmp_path / f"agent-gym-mariadb-{os.getpid()}-1-x2"  # this pid, another process's start time
    live = tmp_path / f"agent-gym-mariadb-{os.getpid()}-{mariadb._process_start(os.getpid())}-x3"
    for folder in (stale, reused, live):
        (folder / "data").mkdir(parents=True)
    mariadb._remove_stale_folders(str(tmp_path))
    assert not stale.exists() and not reused.exists() and live.exists()
    mariadb._remove_stale_folders(str(Path(mariadb_server.socket).parent.parent))
    assert Path(mariadb_server.socket).exists()


def test_server_outlives_the_thread_that_started_it(questions):
    """Issue 15: ``setpriv --pdeathsig`` fires when the *thread* that started mariadbd exits, so
    an env first used from a short-lived thread (one thread per request) broke every later
    episode. The server is tied to the process instead."""
    mariadb_or_skip()
    q = first(questions, "UPDATE")
    server = mariadb.MariaDBServer()  # a private one, started from a thread below
    env = DBEnv(engine="mariadb")
    env.engine.server = server
    results = []

    def episode():
        *_, info = play(env, q.id, env.expert_replies(q))
        results.append((info["status"], info["score"]))

    try:
        for _ in range(3):
            thread = threading.Thread(target=episode)
            thread.start()
            thread.join(60)
            time.sleep(0.5)  # time for a death signal to arrive
            assert server.running
        assert results == [("completed", 1.0)] * 3
    finally:
        env.close()
        server.stop()


def test_engine_failure_is_an_error_status_not_a_crash():
    mariadb_or_skip()
    need_data("dbbench")
    env = DBEnv(engine="mariadb")
    env.engine.server = server = mariadb.MariaDBServer()  # private server, killed below
    try:
        env.reset(options={"task": "other/0"})
        server._proc.kill()
        server._proc.wait()
        obs, reward, term, trunc, info = env.step(prompt.operation("SELECT 1"))
        assert trunc and info["status"] == "error" and "MariaDB" in obs
        obs, info = env.reset(options={"task": "other/0"})  # the next episode gets a new server
        obs, *_ = env.step(prompt.operation("SELECT COUNT(*) FROM `Jiu-Jitsu Championships Results`"))
        assert obs == "[(18,)]"
    finally:
        env.close()
        server.stop()


def _private_server_env(**server_kw) -> tuple[DBEnv, mariadb.MariaDBServer]:
    env = DBEnv(engine="mariadb", statement_timeout=server_kw.get("statement_timeout", engines.STATEMENT_TIMEOUT))
    env.engine.server = server = mariadb.MariaDBServer(**server_kw)
    return env, server


def _gold_scores(env: DBEnv, q) -> tuple[str, float]:
    *_, info = play(env, q.id, env.expert_replies(q))
    return info["status"], info["score"]


def test_reset_right_after_the_server_was_killed(questions):
    """Issue 15: a reset right after the server was killed (SIGTERM: it is shutting down, its
    socket gone, its process not yet exited) raised a raw pymysql 2003, and so did the next.
    Now the reset raises the env's own EngineError at worst, and the server is restarted
    so that the rollout goes on: the next episode's gold replay scores 1."""
    mariadb_or_skip()
    q = first(questions, "UPDATE")
    env, server = _private_server_env()
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            env.reset(options={"task": "other/0"})
            old = server._proc.pid
            os.kill(old, sig)
            try:
                env.reset(options={"task": q.id})
            except engines.EngineError as exc:  # allowed; a raw client error is not
                assert "MariaDB" in str(exc) and "next reset" in str(exc)
            assert _gold_scores(env, q) == ("completed", 1.0), sig
            assert server._proc.pid != old
    finally:
        env.close()
        server.stop()


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("when", ["between statements", "during a statement"])
@pytest.mark.exclusive
def test_a_stalled_server_ends_the_step_within_its_deadline(questions, when):
    """Issue 15: a SIGSTOPped mariadbd held a step 45 s (the statement limit never applied: the
    connection did not get that far). Every call into the server has a deadline: the step ends
    with status ``error`` naming the engine within it, the next reset restarts the server (the
    stopped one is killed) and the next episode scores."""
    mariadb_or_skip()
    q = first(questions, "UPDATE")
    env, server = _private_server_env(statement_timeout=2.0, deadline=2.0)
    try:
        env.reset(options={"task": "other/0"})
        assert env.step(prompt.operation("SELECT 1"))[0] == "[(1,)]"
        stalled = server._proc.pid
        # a statement outlasting its 2 s limit, so the stop (0.3 s in) lands during it however late the timer fires
        sql = "SELECT 1" if when == "between statements" else "SELECT SLEEP(30)"
        if when == "between statements":
            os.kill(stalled, signal.SIGSTOP)
        else:
            threading.Timer(0.3, os.kill, (stalled, signal.SIGSTOP)).start()
        t0 = time.monotonic()
        obs, reward, term, trunc, info = env.step(prompt.operation(sql))
        took = time.monotonic() - t0
        assert _stopped(stalled)
        # connecting: the deadline (2 s); a statement: its limit (2 s) + the deadline; a margin for a loaded machine
        assert took < (2.0 if when == "between statements" else 4.0) + 2.5, took
        assert trunc and info["status"] == "error" and info["end_reason"] == "env_error", info
        assert "MariaDB" in obs and "next reset restarts it" in obs, obs
        assert _gold_scores(env, q) == ("completed", 1.0)
        assert server._proc.pid != stalled
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # the stalled server was killed, not left stopped
                os.kill(stalled, 0)
                time.sleep(0.1)
    finally:
        env.close()
        server.stop()


def test_summarize_gives_overall_cat_accuracy():
    from agent_gym.trajectory import Trajectory

    def traj(task_id, score):
        return Trajectory(env_id="AgentTuning/DB-v0", task_id=task_id, episode_id=task_id, prompt=[],
                          first_observation="", policy="test", score=score, success=bool(score))

    trajs = [traj("INSERT/1", 1.0), traj("INSERT/2", 0.0), traj("UPDATE/3", 1.0), traj("counting/4", 0.0),
             traj("other/5", 1.0)]
    out = DBEnv.summarize(trajs)
    assert out["category/SELECT"] == 0.5 and out["category/INSERT"] == 0.5 and out["category/UPDATE"] == 1.0
    assert out["overall_cat_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert out["type/counting"] == 0.0


def test_sqlite_printf_of_a_huge_width_is_refused_at_once(questions):
    """Found by a hostile review: SQLite's printf builds a 1e9-wide string in full, deaf to the progress
    handler (one step took 72 s), then gives NULL; such widths give NULL at once, ordinary printf stays SQLite's."""
    import time

    env = DBEnv(engine="sqlite")
    try:
        q = first(questions, "counting")
        env.reset(options={"task": q.id})
        started = time.monotonic()
        obs, *_, info = env.step(prompt.operation(
            "SELECT printf('%.*c', 1000000000, 'x') IS NULL, printf('%.*c', 1000000000, 'x') IS NULL, "
            "format('%1000000000d', 1) IS NULL"))
        assert time.monotonic() - started < 5 and obs == "[(1, 1, 1)]" and info["status"] == "running"
        obs, *_ = env.step(prompt.operation("SELECT printf('%05.1f|%-3s|%%|%d', 3.14159, 'a', 99999999999)"))
        assert obs == "[('003.1|a  |%|99999999999',)]"
    finally:
        env.close()
