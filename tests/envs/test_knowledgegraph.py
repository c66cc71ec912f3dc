"""AgentTuning/KnowledgeGraph-v0: AgentBench's KG task, its tools as SPARQL on a real store.

The reply parsing and F1 are checked as pure functions; the seven tools against answers computed
by hand on our Freebase-shaped graph (tests/fixtures/knowledgegraph/rockets.ttl), on the embedded
pyoxigraph store and through a real SPARQL HTTP server over the same file; the episode with gold
action sequences, partial answers and AgentBench's invalid-action messages; and a hung, killed or
dribbling endpoint, which must end the episode with ``error`` within the configured timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.envs.knowledgegraph import data, engine, prompt
from agent_gym.envs.knowledgegraph.env import MAX_ROUNDS, KnowledgeGraphEnv, f1
from agent_gym.testing import need_data
from agent_gym.trajectory import Step, Trajectory

gym.register_envs(agent_gym)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "knowledgegraph"
GRAPH = FIXTURES / "rockets.ttl"
QUESTIONS = FIXTURES / "questions.json"
ONTOLOGY = FIXTURES / "ontology"
SERVER = FIXTURES / "sparql_server.py"

# Hand-computed from rockets.ttl: engines by fuel / cycle / designer.
KEROSENE_ENGINES = {"m.0e_f1", "m.0e_h1", "m.0e_merlin", "m.0e_rd180"}
GAS_GENERATOR_ENGINES = {"m.0e_f1", "m.0e_h1", "m.0e_merlin", "m.0e_j2"}
ROCKETDYNE_ENGINES = {"m.0e_f1", "m.0e_h1", "m.0e_rs25", "m.0e_j2"}
ENGINE_RELATIONS = ("spaceflight.bipropellant_rocket_engine.engine_cycle, spaceflight.bipropellant_rocket_engine.fuel, "
                    "spaceflight.rocket_engine.designed_by, spaceflight.rocket_engine.used_in_rocket_stages")
ENGINE_ATTRIBUTES = "spaceflight.rocket_engine.dry_mass, spaceflight.rocket_engine.thrust_sea_level"


@pytest.fixture(scope="module")
def ontology():
    return data.load_ontology(ONTOLOGY)


@pytest.fixture
def tools(ontology):
    return engine.Tools(engine.LocalStore(GRAPH), ontology)


def make_env(**kw) -> KnowledgeGraphEnv:
    need_data("agentbench_kg")  # the prompt strings
    kw.setdefault("rdf_file", GRAPH)
    return KnowledgeGraphEnv(tasks_file=QUESTIONS, ontology=ONTOLOGY, **kw)


def play(env, task_id, replies):
    env.reset(options={"task": task_id})
    out = []
    for reply in replies:
        obs, reward, terminated, truncated, info = env.step(reply)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


# --------------------------------------------------------------------------- pure functions
def test_replies_are_cut_at_observation_and_read_as_upstream():
    reply = "Thought: t\nAction: get\\_relations(Kerosene)\nObservation: [made up]\nFinal Answer: #0"
    cut = prompt.clean_reply(reply)
    assert cut == "Thought: t\nAction: get_relations(Kerosene)\n"
    assert prompt.final_answer(cut) is None  # the answer after the invented observation is cut off
    assert prompt.final_answer("Find Answer: #12 and Final Answer: #3") == 12
    assert prompt.final_answer("Final Answer: 3") is None
    assert prompt.action_line("Thought: Action: x\n Action: y()\nAction 2: get_relations(#0)\nAction: z()") == \
        "Action 2: get_relations(#0)"  # a line must start with Action; the first such line is used
    assert prompt.action_line("Thought: no action") is None
    calls = prompt.calls("Action: frob(a) then get_neighbors( Kerosene ,  r.s.t) and get_relations(")
    assert [(c.name, c.arguments) for c in calls] == [
        ("frob", ("a",)), ("get_neighbors", (" Kerosene", "r.s.t")), ("get_relations", None)]


def test_failure_messages_are_upstreams():
    assert prompt.cannot_execute("get_relations", ("Kerosene",)) == \
        "get_relations(Kerosene) cannot be executed. You may make a mistake and need to fix it."
    assert prompt.cannot_execute("intersection", ("#0", "#1")) == (
        "intersection(#0, #1) cannot be executed. The two variables are not of the same type. "
        "You may further explore them by call get_relations")
    assert prompt.cannot_execute("get_relations", None).startswith(
        "I may make a syntax error when calling get_relations")


@pytest.mark.parametrize("predicted, gold, expected", [
    (["a", "b"], {"a", "b"}, 1.0),
    (["a", "b"], {"a", "c"}, 0.5),
    (["a"], {"a", "b", "c"}, 0.5),                   # P 1, R 1/3
    (["a", "b", "c", "d"], {"a", "b", "c"}, 6 / 7),  # P 3/4, R 1
    (["a", "a", "x"], {"a"}, 2 / 3),                 # a set: duplicates count once
    ([], {"a"}, 0.0),
    (["x"], {"a"}, 0.0),
])
def test_f1_is_agentbenchs_set_f1(predicted, gold, expected):
    assert f1(predicted, frozenset(gold)) == pytest.approx(expected)


def test_question_files_load_and_bad_ones_are_named(tmp_path):
    qs = data.load_file(QUESTIONS)
    assert [q.id for q in qs][:2] == ["rockets_intersection", "rockets_count"]
    assert qs[0].entities == (("Gas-generator cycle", "m.0gasg"), ("Kerosene", "m.0kero"))
    assert qs[1].answers == frozenset({"4"})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q", "qid": "1", "entities": {}}]))
    with pytest.raises(ValueError, match="item 0 is not a KG question"):
        data.load_file(bad)
    bad.write_text(json.dumps({"question": "q"}))
    with pytest.raises(ValueError, match="one JSON list"):
        data.load_file(bad)
    bad.write_text("[{not json")
    with pytest.raises(ValueError, match="bad.json: not JSON"):
        data.load_file(bad)


# --------------------------------------------------------------------------- the tools on our graph
def test_every_tool_matches_hand_computed_answers(tools):
    assert tools.get_relations("m.0kero") == (
        None, "Observation: [spaceflight.rocket_engine_fuel.rocket_engines, spaceflight.rocket_fuel.rocket_stages]")
    fuel, msg = tools.get_neighbors("m.0kero", "spaceflight.rocket_engine_fuel.rocket_engines")
    assert msg == "Observation: variable ##, which are instances of spaceflight.bipropellant_rocket_engine"
    assert fuel.program == "(JOIN spaceflight.rocket_engine_fuel.rocket_engines_inv m.0kero)"
    assert set(tools.answer(fuel)) == KEROSENE_ENGINES
    tools.get_relations("m.0gasg")
    cycle, _ = tools.get_neighbors("m.0gasg", "spaceflight.rocket_engine_cycle.rocket_engines")
    both, msg = tools.intersection(cycle, fuel)
    assert msg.endswith("instances of spaceflight.bipropellant_rocket_engine")
    assert set(tools.answer(both)) == KEROSENE_ENGINES & GAS_GENERATOR_ENGINES == {"m.0e_f1", "m.0e_h1", "m.0e_merlin"}
    # get_relations / get_attributes on a variable: out-edges of its members, cut to the vocabulary
    assert tools.get_relations(both) == (None, f"Observation: [{ENGINE_RELATIONS}]")
    assert tools.get_attributes(both) == (None, f"Observation: [{ENGINE_ATTRIBUTES}]")
    heaviest_thrust, msg = tools.argmax(both, "spaceflight.rocket_engine.thrust_sea_level")
    assert msg.endswith("instances of spaceflight.bipropellant_rocket_engine")
    assert tools.answer(heaviest_thrust) == ["m.0e_f1"]  # 6.77 MN
    lightest, _ = tools.argmin(both, "spaceflight.rocket_engine.dry_mass")
    assert tools.answer(lightest) == ["m.0e_merlin"]  # 470 kg
    number, msg = tools.count(both)
    assert msg == "Observation: variable ##, which is a number"
    assert (number.type, tools.answer(number)) == ("type.int", ["3"])
    designers, msg = tools.get_neighbors(both, "spaceflight.rocket_engine.designed_by")
    assert msg.endswith("instances of spaceflight.rocket_engine_designer")
    assert set(tools.answer(designers)) == {"m.0rdyne", "m.0spacex"}
    # the entities of a program are never among its answers (upstream's FILTER (?x != ns:e))
    tools.get_relations("m.0e_f1")
    f1_designer, _ = tools.get_neighbors("m.0e_f1", "spaceflight.rocket_engine.designed_by")
    tools.get_relations(f1_designer)
    siblings, _ = tools.get_neighbors(f1_designer, "spaceflight.rocket_engine_designer.rocket_engines")
    assert set(tools.answer(siblings)) == ROCKETDYNE_ENGINES - {"m.0e_f1"}
    # upstream's unadvertised union makes a variable its translator cannot run: no answer
    either, msg = tools.union(cycle, fuel)
    assert "instances of" in msg and tools.answer(either) == []


def test_tool_preconditions_are_upstreams(tools):
    with pytest.raises(engine.ToolError):  # not a mid nor a variable
        tools.get_relations("Kerosene")
    with pytest.raises(engine.ToolError):  # get_neighbors before get_relations
        tools.get_neighbors("m.0kero", "spaceflight.rocket_engine_fuel.rocket_engines")
    tools.get_relations("m.0kero")
    with pytest.raises(engine.ToolError):  # a relation that get_relations did not list
        tools.get_neighbors("m.0kero", "spaceflight.rocket_engine_designer.rocket_engines")
    fuel, _ = tools.get_neighbors("m.0kero", "spaceflight.rocket_engine_fuel.rocket_engines")
    stages, _ = tools.get_neighbors("m.0kero", "spaceflight.rocket_fuel.rocket_stages")
    with pytest.raises(engine.ToolError):  # intersection of two types
        tools.intersection(fuel, stages)
    with pytest.raises(engine.ToolError):  # argmax before get_attributes
        tools.argmax(fuel, "spaceflight.rocket_engine.dry_mass")
    with pytest.raises(engine.ToolError):  # a wrong number of arguments
        tools.call("count", [fuel, fuel])
    with pytest.raises(engine.ToolError):
        tools.call("final_execute", [fuel])


def test_final_answers_keep_english_literals_and_strip_freebase_zone(tools):
    aliases = engine.Variable("type.text", "(JOIN common.topic.alias_inv m.0e_f1)")
    assert sorted(tools.answer(aliases)) == ["Effe uno", "F1 engine"]  # not the @de alias
    maiden = engine.Variable("type.datetime", "(JOIN spaceflight.rocket.maiden_flight_inv m.0saturn5)")
    assert tools.answer(maiden) == ["1967-11-09"]  # stored "1967-11-09-08:00"


def test_queries_have_upstreams_shape():
    q = engine.to_sparql("(COUNT (AND (JOIN a.b.c_inv m.01) (JOIN d.e.f_inv m.02)))")
    lines = q.split("\n")
    assert lines[1] == "SELECT (COUNT(DISTINCT ?x) AS ?count)"
    assert "<http://rdf.freebase.com/ns/m.01> <http://rdf.freebase.com/ns/a.b.c> ?x ." in lines
    assert "<http://rdf.freebase.com/ns/m.02> <http://rdf.freebase.com/ns/d.e.f> ?x ." in lines  # AND merged both
    assert "FILTER (?x != <http://rdf.freebase.com/ns/m.01>)" in lines
    chain = engine.to_sparql("(JOIN r.s.t_inv (JOIN a.b.c_inv m.01))")
    assert "<http://rdf.freebase.com/ns/m.01> <http://rdf.freebase.com/ns/a.b.c> ?x0 ." in chain
    assert "?x0 <http://rdf.freebase.com/ns/r.s.t> ?x ." in chain
    sup = engine.to_sparql("(ARGMIN (JOIN a.b.c_inv m.01) k.l.m)")
    assert "{SELECT ?sk0" in sup and "ORDER BY ?sk0\nLIMIT 1" in sup
    with pytest.raises(engine.QueryError):
        engine.to_sparql("(OR (JOIN a.b.c_inv m.01) (JOIN a.b.c_inv m.02))")


# --------------------------------------------------------------------------- episodes
def test_gold_action_sequences_reach_f1_one_and_summarize_is_mean_f1():
    env = make_env()
    trajs = []
    for task in env.tasks():
        replies = env.expert_replies(task)
        steps = play(env, task.id, replies)
        obs, reward, terminated, truncated, info = steps[-1]
        assert len(steps) == len(replies) and terminated and not truncated, task.id
        assert (info["score"], info["success"], info["status"], info["end_reason"]) == (1.0, True, "completed",
                                                                                        "answered"), task.id
        assert set(info["answer"]) == task.answers
        assert info["actions"] == [a.replace(",", ", ") for a in task.actions]
        trajs.append(Trajectory(env_id="AgentTuning/KnowledgeGraph-v0", task_id=task.id, episode_id=task.id,
                                prompt=[], first_observation="", score=info["score"], success=info["success"],
                                status=info["status"], steps=[Step("", obs, reward, True, False, info)]))
    trajs.append(Trajectory(env_id="x", task_id="e", episode_id="e", prompt=[], first_observation="", status="error"))
    summary = KnowledgeGraphEnv.summarize(trajs)
    assert summary["main"] == summary["F1"] == summary["EM"] == summary["executability"] == 1.0  # error left out
    assert summary["score"] == pytest.approx(5 / 6)


def test_entity_names_become_mids_and_partial_answers_score_their_f1():
    env = make_env()
    opening = ["Action: get_relations(F-1)",
               "Action: get_neighbors(variable F-1, spaceflight.rocket_engine.designed_by)",
               "Action: get_relations(Variable #0)",
               "Action: get_neighbors(#0, spaceflight.rocket_engine_designer.rocket_engines)"]
    steps = play(env, "rockets_others", opening)
    assert [s[0] for s in steps] == [
        "Observation: [" + ENGINE_RELATIONS + "]",
        "Observation: variable #0, which are instances of spaceflight.rocket_engine_designer",
        "Observation: [spaceflight.rocket_engine_designer.rocket_engines]",
        "Observation: variable #1, which are instances of spaceflight.rocket_engine"]
    # gold {H-1, RS-25, J-2}; Kerosene's engines {F-1, H-1, Merlin, RD-180} share one: P 1/4, R 1/3
    steps = play(env, "rockets_others", opening + [
        "Action: get_relations(m.0kero)",
        "Action: get_neighbors(m.0kero, spaceflight.rocket_engine_fuel.rocket_engines)",
        "Final Answer: #2"])
    info = steps[-1][4]
    assert info["score"] == pytest.approx(2 / 7) and steps[-1][1] == pytest.approx(2 / 7)
    assert info["success"] is False and info["status"] == "completed"
    # all of Rocketdyne's engines (the F-1 filter only applies with F-1 in the program): P 3/4, R 1
    designed = "spaceflight.rocket_engine_designer.rocket_engines"
    steps = play(env, "rockets_others", ["Action: get_relations(m.0rdyne)",
                                         f"Action: get_neighbors(m.0rdyne, {designed})", "Final Answer: #0"])
    assert steps[-1][4]["score"] == pytest.approx(6 / 7)
    # a wrong variable: F1 0, still an answer (executability counts it)
    steps = play(env, "rockets_count", ["Action: get_relations(Rocketdyne)",
                                        f"Action: get_neighbors(Rocketdyne, {designed})", "Final Answer: #0"])
    assert (steps[-1][4]["score"], steps[-1][4]["answer"]) == (0.0, sorted(ROCKETDYNE_ENGINES))


def test_malformed_replies_get_agentbenchs_messages_and_the_episode_goes_on():
    env = make_env()
    env.reset(options={"task": "rockets_intersection"})

    def say(reply):
        obs, reward, terminated, truncated, info = env.step(reply)
        assert not (terminated or truncated) and info["status"] == "running" and reward == 0.0
        return obs, info["action_valid"]

    syntax = ("I may make a syntax error when calling {} (e.g., unmatched parenthesis). "
              "I need to fix it and reuse the tool")
    assert say("The answer is obviously Rocketdyne.") == (prompt.NO_ACTION, False)
    assert say("Action: think harder") == (prompt.NOT_EXECUTED, False)
    assert say("Action: get_relations(Kerosene") == (syntax.format("get_relations"), False)
    assert say("Action: teleport(#0)") == (syntax.format("teleport"), False)  # no call read yet
    assert say("Final Answer: #0") == (prompt.INVALID_VARIABLE, False)
    assert say("Action: get_relations(Barack Obama)") == (
        "get_relations(Barack Obama) cannot be executed. You may make a mistake and need to fix it.", False)
    # as upstream, a name it had no attribute for reuses the last call's arguments in its message
    assert say("Action: teleport(#0)") == (
        "teleport(Barack Obama) cannot be executed. You may make a mistake and need to fix it.", False)
    assert say("Action: get_neighbors(Kerosene, spaceflight.rocket_engine_fuel.rocket_engines)")[1] is False
    obs, _, _, _, info = env.step(
        "Thought: x\nAction: get\\_relations(Kerosene)\nObservation: [invented]\nFinal Answer: #5")
    assert obs == "Observation: [spaceflight.rocket_engine_fuel.rocket_engines, spaceflight.rocket_fuel.rocket_stages]"
    assert info["kept_reply"] == "Thought: x\nAction: get_relations(Kerosene)\n"  # as upstream's history kept it
    assert say("Action: teleport(x), then get_neighbors(Kerosene, spaceflight.rocket_engine_fuel.rocket_engines)") \
        == ("Observation: variable #0, which are instances of spaceflight.bipropellant_rocket_engine", True)
    assert say("Action: get_neighbors(Kerosene, spaceflight.rocket_fuel.rocket_stages)")[0].startswith(
        "Observation: variable #1")
    assert say("Action: intersection(#0, #1)") == (
        "intersection(#0, #1) cannot be executed. The two variables are not of the same type. "
        "You may further explore them by call get_relations", False)
    assert say("Action: get_relations(#7)")[1] is False
    assert say("Final Answer: #2") == (prompt.INVALID_VARIABLE, False)
    # 14 replies so far: the 15th without an answer ends the episode, scored 0
    obs, reward, terminated, truncated, info = env.step("\x00\udcff" + "x" * 5000)
    assert info["turn"] == MAX_ROUNDS and truncated and not terminated
    assert (info["status"], info["end_reason"], info["score"]) == ("task_limit_reached", "round_limit", 0.0)


@pytest.mark.parametrize("line", [
    "x(" * 32000,                                        # upstream's regex is quadratic on this: minutes
    "".join(f"a{i}(" for i in range(9000)),              # thousands of distinct names
    "get_relations(#5) " * 3600,                         # one failing call, repeated
])
def test_adversarial_action_lines_end_in_bounded_time(line):
    env = make_env()
    env.reset(options={"task": 0})
    start = time.monotonic()
    obs, _, _, _, info = env.step("Action: " + line[:65000])
    assert info["action_valid"] is False and ("cannot be executed" in obs or "syntax error" in obs)
    assert time.monotonic() - start < 10


def test_a_final_answer_with_a_huge_variable_number_is_an_unknown_variable():
    # 5,000 digits are past Python's int-parsing limit: the reply is a bad id, not an env error
    env = make_env()
    env.reset(options={"task": 0})
    for digits in ("9" * 5000, "0" * 5000 + "1"):
        obs, _, terminated, truncated, info = env.step("Final Answer: #" + digits)
        assert (obs, info["action_valid"], info["status"]) == (prompt.INVALID_VARIABLE, False, "running")
        assert not (terminated or truncated)


def test_argument_search_equals_upstreams_regex():
    import re

    for line in ["Action: get_neighbors(#0, r.s)", "Action: f() g)", "Action: xget_relations(a) get_relations(b)",
                 "Action: f(a) f(b)", "Action: f()", "Action: f(())", "Action: f( a , b ,c)", "Action: g(f(x), y)"]:
        for call in prompt.calls(line):
            found = re.findall(r"{}\((.+?)\)".format(call.name), line)
            assert call.arguments == (tuple(re.split(r"\s*,\s*", found[0])) if found else None), (line, call)


def test_a_reply_over_the_size_limit_is_refused_not_parsed():
    env = make_env()
    env.reset(options={"task": 0})
    obs, _, terminated, truncated, info = env.step("Action: get_relations(Kerosene)" + " " * (70 * 1024))
    assert info["action_valid"] is False and not (terminated or truncated)


def test_check_env_passes_on_the_local_store():
    env = make_env()
    check_env(env, skip_render_check=True)
    env.close()


def test_without_a_knowledge_base_the_env_says_what_to_set(monkeypatch):
    monkeypatch.delenv(engine.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(engine.RDF_FILE_ENV, raising=False)
    env = make_env(rdf_file=None)
    with pytest.raises(LookupError, match=f"{engine.ENDPOINT_ENV}=http://HOST:PORT/sparql"):
        env.preflight()
    env.reset(options={"task": 0})
    obs, _, terminated, truncated, info = env.step("Action: get_relations(Kerosene)")
    assert truncated and info["status"] == "error" and engine.RDF_FILE_ENV in obs
    assert "set AGENT_GYM_KG_ENDPOINT" in KnowledgeGraphEnv.engine_status()
    monkeypatch.setenv(engine.RDF_FILE_ENV, str(GRAPH))
    env = make_env(rdf_file=None)
    env.preflight()
    assert play(env, "rockets_count", env.expert_replies(env.tasks()[1]))[-1][4]["score"] == 1.0


# --------------------------------------------------------------------------- over HTTP
class Server:
    """tests/fixtures/knowledgegraph/sparql_server.py as a child process."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, str(SERVER), str(GRAPH), *args], stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/sparql"

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server():
    s = Server()
    yield s
    try:
        s.signal(signal.SIGCONT)
    except ProcessLookupError:
        pass
    s.stop()


def test_an_http_endpoint_gives_the_same_episodes(server, ontology):
    http_tools = engine.Tools(engine.HttpEndpoint(server.url, timeout=10), ontology)
    assert http_tools.get_relations("m.0kero")[1].endswith("rocket_stages]")
    env = make_env(rdf_file=None, endpoint=server.url, timeout=10)
    env.preflight()
    assert env.options() == {"kb": "sparql-http"}
    for task in env.tasks():
        info = play(env, task.id, env.expert_replies(task))[-1][4]
        assert (info["score"], set(info["answer"])) == (1.0, task.answers), task.id
    with pytest.raises(engine.QueryError):  # the server's 400: a tool call that cannot be executed
        http_tools.kb.select("SELECT WHERE {")


def _timed_step(env, reply):
    start = time.monotonic()
    out = env.step(reply)
    return out, time.monotonic() - start


@pytest.mark.exclusive
def test_a_hung_endpoint_ends_the_episode_with_error_within_the_timeout(server):
    env = make_env(rdf_file=None, endpoint=server.url, timeout=1.5)
    env.reset(options={"task": "rockets_intersection"})
    assert env.step("Action: get_relations(Kerosene)")[4]["action_valid"]
    server.signal(signal.SIGSTOP)
    (obs, _, terminated, truncated, info), took = _timed_step(env, "Action: get_relations(Gas-generator cycle)")
    assert truncated and not terminated
    assert (info["status"], info["end_reason"]) == ("error", "env_error")
    assert "did not answer within 1.5 s" in obs
    assert 1.4 < took < 1.5 + 4.0  # the deadline, plus scheduling on a busy machine
    server.signal(signal.SIGCONT)  # the next episode plays again
    env.reset(options={"task": "rockets_count"})
    assert env.step("Action: get_relations(Rocketdyne)")[4]["action_valid"]


@pytest.mark.exclusive
def test_a_killed_endpoint_ends_the_episode_with_error_at_once(server):
    env = make_env(rdf_file=None, endpoint=server.url, timeout=5)
    env.reset(options={"task": "rockets_count"})
    server.stop()
    (obs, _, _, truncated, info), took = _timed_step(env, "Action: get_relations(Rocketdyne)")
    assert truncated and info["status"] == "error" and "unreachable" in obs and took < 2.0


def test_a_final_answer_on_a_dead_endpoint_is_an_error_not_a_zero(server):
    env = make_env(rdf_file=None, endpoint=server.url, timeout=5)
    env.reset(options={"task": "rockets_count"})
    env.step("Action: get_relations(Rocketdyne)")
    env.step("Action: get_neighbors(Rocketdyne, spaceflight.rocket_engine_designer.rocket_engines)")
    server.stop()
    obs, reward, terminated, truncated, info = env.step("Final Answer: #0")
    assert truncated and info["status"] == "error" and reward == 0.0


@pytest.mark.exclusive
def test_an_endpoint_that_dribbles_its_answer_is_cut_at_the_deadline():
    slow = Server("--fake-slow-drip", "0.2")
    try:
        kb = engine.HttpEndpoint(slow.url, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(engine.EndpointError, match="did not answer within 1 s"):
            kb.select(engine.entity_relations_query("m.0kero"))
        assert time.monotonic() - start < 3.0
    finally:
        slow.stop()


@pytest.mark.exclusive
def test_a_slow_query_on_the_local_store_ends_at_the_deadline(tmp_path):
    graph = tmp_path / "many.nt"  # 1200 edges: the self-join below has 1.44M pairs, seconds of work
    graph.write_text("".join(f"<http://x/{i}> <http://p> <http://x/{i % 300}> .\n" for i in range(1200)))
    kb = engine.LocalStore(graph, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(engine.EndpointError, match="did not answer within 0.3 s"):
        kb.select("SELECT (COUNT(*) AS ?n) WHERE { ?a <http://p> ?b . ?c <http://p> ?d . FILTER(STR(?a) < STR(?c)) }")
    assert time.monotonic() - start < 2.0
    with pytest.raises(engine.QueryError):
        kb.select("SELECT WHERE {")


def test_endpoint_settings_are_checked_when_the_env_is_made():
    with pytest.raises(ValueError, match="http"):
        KnowledgeGraphEnv(tasks_file=QUESTIONS, endpoint="localhost:8890")
    with pytest.raises(FileNotFoundError, match="rdf_file"):
        KnowledgeGraphEnv(tasks_file=QUESTIONS, rdf_file="/nonexistent.ttl")
    with pytest.raises(ValueError, match="timeout"):
        KnowledgeGraphEnv(tasks_file=QUESTIONS, endpoint="http://localhost:1/sparql", timeout=0)


# --------------------------------------------------------------------------- AgentBench's own data
def test_the_paper_split_prompt_and_ontology():
    need_data("agentbench_kg")
    qs = data.load("test")
    assert len(qs) == 150 and len({q.id for q in qs}) == 150
    assert Counter(q.source for q in qs) == {"grailqa": 91, "cwq": 41, "graphquestions": 17, "webqsp": 1}
    assert KnowledgeGraphEnv.resolve_split("std") == "test"
    env = KnowledgeGraphEnv(split="std", rdf_file=GRAPH)
    obs, info = env.reset(options={"task": 0})
    assert obs == ("A new question: what is the attitude of the first dog and the german shepherds?\n"
                   "Entities: [first dog, german shepherds]")
    turns = info["prompt"]
    assert len(turns) == 18 and [t["role"] for t in turns] == ["user", "assistant"] * 9
    assert turns[0]["content"].lstrip().startswith("You are an agent that answers questions based on the knowledge")
    assert turns[1]["content"] == "I've understood your instruction, start please."
    assert turns[2]["content"].startswith("Question: the bipropellant rocket engine")
    assert turns[-1]["content"].endswith("Final Answer: #3")
    assert (info["system_prompt"], info["max_new_tokens"], info["temperature"]) == ("", 128, 0.0)
    real = data.load_ontology()
    assert len(real.relations) == 13100 and len(real.attributes) == 3384
    ours = data.load_ontology(ONTOLOGY)  # the fixture ontology is a part of AgentBench's
    assert ours.relations <= real.relations and ours.attributes <= real.attributes
    assert all(real.range_info[r] == t for r, t in ours.range_info.items())


class FakeFreebaseSchemaOnly:
    """A fake knowledge base (no Freebase here): every query is parsed and run by pyoxigraph on an
    empty store, and every predicate query answers ``names`` (the relations and attributes the
    current question's gold actions use), so that the gold action sequences of all 150 questions run
    through the tools and their queries are checked as SPARQL."""

    name = "fake"

    def __init__(self):
        import pyoxigraph

        self.store, self.names = pyoxigraph.Store(), []
        self.queries = 0

    def version(self):
        return "fake"

    def close(self):
        pass

    def select(self, query):
        list(self.store.query(query))  # raises SyntaxError on a query pyoxigraph refuses
        self.queries += 1
        return self.names if "?rel" in query or "?x0" in query else []


# Gold action sequences of std.json that upstream's own tools refuse (docs/knowledgegraph.md), with
# the first refused action: a "g." mid (get_relations accepts only ^(m|f)\.), a class name where an
# entity belongs, an attribute that vocab.json lacks, an intersection of two fb_roles types.
GOLD_REFUSED = {
    "WebQTrn-1234_7051979c1a99a094b204a20afe3b82ec_cwq": "intersection(#1,#2)",
    "WebQTrn-923_c0b877813c04f2a410d526fdd6acbaed_cwq": "intersection(#0,#1)",
    "WebQTrn-3037_602d3e74c7063895f149a8f44b9e406f_cwq": "argmax(#1,topic_server.population_number)",
    "WebQTrn-2393_562282f8faca4648a9c8ec98e3e4415d_cwq": "intersection(#0,#2)",
    "WebQTrn-825_20030c80de39b4c9d510ac6a48eaf840_cwq": "get_relations(common.topic)",
    "WebQTrn-3037_8b3815ec57389b13892dd5abb108cc4e_cwq": "argmax(#1,topic_server.population_number)",
    "WebQTrn-1677_4c971bef32fb5777fb8b18ead5a702fe_cwq": "get_relations(g.11b5lzm6b0)",
    "WebQTrn-3037_6ca8cba7511811830a04cd64a8a4cf77_cwq": "argmax(#1,topic_server.population_number)",
    "WebQTrn-825_498677b7af0b61e338f886059e90f2d7_cwq": "get_relations(common.topic)",
    "WebQTrn-1542_89e002ff7250ffeee9ef6f385a7a0658_cwq": "get_relations(g.122wbmv4)",
    "4302372007000_grailqa": "get_relations(g.1jdmgz_rm)",
    "WebQTrn-3364_e5faa8b095f56c4563da9331fe2661c2_cwq": "intersection(#1,#2)",
    "WebQTrn-1071_6ee3bfab441c52883f7bde45cbcb4612_cwq": "intersection(#0,#2)",
}


def test_all_150_gold_action_sequences_run_as_valid_sparql():
    need_data("agentbench_kg")
    env = KnowledgeGraphEnv(rdf_file=GRAPH)
    fake = FakeFreebaseSchemaOnly()
    env._kb = fake
    kinds, refused = Counter(), {}
    for task in env.tasks():
        fake.names = [a.split(",")[1].rstrip(")") for a in task.actions if a.startswith(("get_neighbors", "arg"))]
        steps = play(env, task.id, env.expert_replies(task))
        bad = [a for a, s in zip(task.actions, steps) if not s[4]["action_valid"]]
        if bad:
            refused[task.id] = bad[0]
        else:
            assert steps[-1][4]["status"] == "completed", task.id
        kinds.update(a.split("(")[0] for a in task.actions)
    assert refused == GOLD_REFUSED
    assert kinds == {"get_relations": 406, "get_neighbors": 406, "intersection": 129, "count": 31,
                     "get_attributes": 26, "argmax": 22, "argmin": 4}
    assert fake.queries > 500  # every get_relations / get_attributes / answer query parsed by pyoxigraph
    # upstream's own gold programs translate too, but for the two that use a class as an entity
    untranslated = []
    for task in env.tasks():
        try:
            list(fake.store.query(engine.to_sparql(task.s_expression)))
        except engine.QueryError:
            untranslated.append(task.id)
    assert untranslated == [i for i, a in GOLD_REFUSED.items() if a == "get_relations(common.topic)"]
