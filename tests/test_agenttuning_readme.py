"""README.md's "From the AgentTuning README" table: every agent-gym command of its right-hand column runs here.

The table is parsed from README.md, so a command changed there is the command tested (issue 18). Each runs
as a subprocess with small settings (``-n 1``, a few new tokens, two steps per episode); the TGI server of
the table (``agent-gym serve --port 30070``) runs the embedded SmolLM2 on a free port, a second one stands in
for the second instance (30071), and the OpenAI judge is the first server's OpenAI route. The compose files
are parsed and must publish AgentTuning's own ports (upstream ``docker/agentlm-*.yml`` at ``e33a45d``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "policies"))
from policy_servers import free_port, stop, wait_healthy  # noqa: E402

yaml = pytest.importorskip("yaml")
pytest.importorskip("text_generation")
pytest.importorskip("torch")

SECTION = "## From the AgentTuning README"
#: AgentTuning's compose files: service port per size (upstream docker/agentlm-{7b,13b,70b}.yml)
UPSTREAM_PORTS = {"7b": 30007, "13b": 30013, "70b": 30070}
#: the README's request, byte for byte (AgentTuning README, "Run AgentLM")
README_BODY = ('{"inputs": "[INST] <<SYS>>\\nYou are a helpful, respectful and honest assistant.\\n<</SYS>>\\n\\n'
               'Hello! [/INST]", "parameters": {"temperature": 1.0}}')
SMALL = ["-n", "1", "--max-new-tokens", "8", "--env-arg", "max_episode_steps=2"]
#: per env, what else keeps an episode short (MT-Bench's judge writes 2048 tokens by default)
SMALL_ENV = {"mtbench": ["--env-arg", "judge_max_new_tokens=8"]}
#: what takes minutes with an engine to start (Java, Chromium, MariaDB, several tasks): run by CI, marked slow
SLOW = ("eval --suite held-in", "run sciworld", "run miniwob", "run rewoo")


def readme_rows() -> list[tuple[str, list[str]]]:
    """The table's rows: (the AgentTuning step, the commands in the agent-gym column)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    lines = [ln for ln in text[start:end if end > 0 else None].splitlines() if ln.startswith("| ")]
    rows = []
    for line in lines[1:]:  # the header
        if line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"README table row with {len(cells)} cells: {line[:120]}"
        commands = [c for c in re.findall(r"`([^`]+)`", cells[2])
                    if c.startswith(("agent-gym ", "curl ", "docker compose "))]
        rows.append((cells[0], commands))
    return rows


ROWS = readme_rows()
COMMANDS = [(step, cmd) for step, cmds in ROWS for cmd in cmds]


def test_the_table_maps_every_step_of_the_agenttuning_readme():
    steps = " / ".join(step for step, _ in ROWS)
    for needed in ("Start AgentLM", "request", "instances", "Held-in", "Card Game", "SciWorld", "MiniWoB",
                   "HotpotQA", "ReWOO", "WebArena", "MMLU", "GSM8K", "MT-Bench: the answers", "judges"):
        assert needed in steps, f"the README table has no row for {needed}"
    assert all(cmds for _, cmds in ROWS), "a row without an agent-gym command"
    commands = [c for _, c in COMMANDS]
    assert any("--url http://127.0.0.1:30070 --url http://127.0.0.1:30071" in c for c in commands)
    assert any(c.startswith("agent-gym run mmlu --model ") and "--backend" not in c for c in commands)  # local
    assert any(c.startswith("agent-gym run gsm8k ") and "127.0.0.1:30070" in c for c in commands)


# ---------------------------------------------------------------------------------------------- compose files
@pytest.mark.parametrize("size", sorted(UPSTREAM_PORTS))
def test_compose_files_publish_agenttunings_ports(size):
    compose = yaml.safe_load((ROOT / "docker" / f"agentlm-{size}.yml").read_text())
    first, second = compose["services"].values()
    assert first["ports"] == [f"{UPSTREAM_PORTS[size]}:80"]
    assert second["ports"] == [f"{UPSTREAM_PORTS[size] + 1}:80"] and second["profiles"] == ["multi"]
    docs = (ROOT / "docker" / "README.md").read_text()
    assert f"127.0.0.1:{UPSTREAM_PORTS[size]}`" in docs


@pytest.mark.parametrize("command", [c for _, c in COMMANDS if c.startswith("docker compose ")])
def test_the_tables_compose_commands_name_files_that_parse(command):
    argv = shlex.split(command)
    compose = yaml.safe_load((ROOT / argv[argv.index("-f") + 1]).read_text())
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    if "--profile" in argv:
        assert argv[argv.index("--profile") + 1] in profiles
    size = re.search(r"agentlm-(\d+b)\.yml", argv[argv.index("-f") + 1]).group(1)
    first = next(iter(compose["services"].values()))
    assert first["ports"] == [f"{UPSTREAM_PORTS[size]}:80"]


# ---------------------------------------------------------------------------------------------- servers
def _serve_command() -> list[str]:
    serve = [c for _, c in COMMANDS if c.startswith("agent-gym serve ")]  # not the bare name in the prose
    assert serve == ["agent-gym serve --port 30070"], serve
    return shlex.split(serve[0])


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """The table's ``agent-gym serve --port 30070`` (and a second instance for 30071), each on a free port."""
    procs, urls = [], {}
    try:
        for upstream in ("30070", "30071"):
            port = free_port()
            argv = [str(port) if a == "30070" else a for a in _serve_command()]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, "HF_HUB_OFFLINE": "1"})
            procs.append(proc)
            urls[f"http://127.0.0.1:{upstream}"] = f"http://127.0.0.1:{port}"
        for proc, url in zip(procs, urls.values()):
            wait_healthy(proc, url, 300)
        yield urls
    finally:
        for proc in procs:
            stop(proc)


def test_the_readme_request_gets_generated_text(servers):
    """The AgentTuning README's curl, its body byte for byte, to ``agent-gym serve``: ``{"generated_text": str}``."""
    import requests

    curl, = [c for _, c in COMMANDS if c.startswith("curl ")]
    argv = shlex.split(curl)
    body = argv[argv.index("-d") + 1]
    assert body == README_BODY  # the table shows the upstream request unchanged
    assert argv[1] == "127.0.0.1:30070/generate" and "Content-Type: application/json" in argv
    url = servers["http://127.0.0.1:30070"] + "/generate"
    response = requests.post(url, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=300)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer, dict) and isinstance(answer["generated_text"], str) and answer["generated_text"]


# ---------------------------------------------------------------------------------------------- the commands
def _small(argv: list[str]) -> list[str]:
    if argv[1] not in ("run", "eval"):
        return argv
    env = argv[2] if argv[1] == "run" else None
    return argv + SMALL + SMALL_ENV.get(env, [])


def _ours(command: str, servers: dict[str, str]) -> list[str]:
    from agent_gym.policies import models

    for upstream, real in servers.items():
        command = command.replace(upstream, real)
    command = command.replace("https://api.openai.com/v1", servers["http://127.0.0.1:30070"] + "/v1")
    command = command.replace("./checkpoints/agentlm-70b", str(models.resolve(None)))  # a local checkpoint folder
    return _small(shlex.split(command))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One working folder for the table's commands, in order: the MT-Bench report reads the run before it."""
    return tmp_path_factory.mktemp("agenttuning-readme")


RUNS = [c for _, c in COMMANDS if c.startswith("agent-gym ") and not c.startswith("agent-gym serve")]


@pytest.mark.parametrize("command", [pytest.param(c, marks=[pytest.mark.slow] if any(s in c for s in SLOW) else [],
                                                  id=f"{i}-{'-'.join(shlex.split(c)[1:3])}")
                                     for i, c in enumerate(RUNS)])
def test_the_tables_command_runs(command, servers, workdir):
    argv = _ours(command, servers)
    if argv[1:3] == ["data", "fetch"]:  # the network is not here: the dataset it fetches is the one present
        argv = ["agent-gym", "data", "list"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test"}
    sites_missing = "webarena" in argv and not os.environ.get("SHOPPING")
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    if sites_missing:  # stops before any episode, naming what to set
        assert done.returncode == 2 and "SHOPPING" in out, out[-3000:]
        return
    assert done.returncode == 0, f"{' '.join(argv)}\n{out[-4000:]}"
    if argv[1] == "data":
        assert re.search(r"^mmlu\s", done.stdout, re.M), out[-2000:]
    elif argv[1] == "report":
        assert "MTBench" in out
    elif argv[1] == "eval":
        report = json.loads((workdir / argv[argv.index("-o") + 1] / "report.json").read_text())
        assert report, "eval wrote an empty report"
    else:
        records = [json.loads(line) for line in (workdir / argv[argv.index("-o") + 1]).read_text().splitlines()]
        assert len(records) == 1 and records[0]["status"] != "error", records[-1].get("error")
        provenance = records[0]["provenance"]
        if "--url" in argv:  # the server(s) named in the table, every instance
            urls = ",".join(argv[i + 1] for i, a in enumerate(argv) if a == "--url")
            assert provenance["policy"]["backend"] == "tgi" and provenance["policy"]["url"] == urls, provenance
        else:  # MMLU's -c CHECKPOINT: the local backend on that folder, in the paper's likelihood scoring
            assert provenance["policy"]["backend"] == "local", provenance["policy"]
            assert provenance["env"]["options"]["scoring"] == "logprobs"
            assert re.fullmatch(r"Answer: [ABCD]", records[0]["steps"][0]["action"])  # the most likely letter
