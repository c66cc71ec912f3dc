"""The AgentInstruct pipeline: filter (thresholds, duplicates, test tasks), counts, formats, mix, and
generate -> filter -> export on real episodes, read back by `datasets` and TRL's SFT collator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent_gym.instruct import (
    counts_table,
    filter_trajectories,
    mix,
    normalize_text,
    read_records,
    records_of,
    write_records,
)
from agent_gym.testing import need_data
from agent_gym.trajectory import Step, Trajectory

OS = "AgentTuning/OS-v0"
GSM8K = "AgentTuning/GSM8K-v0"


def _traj(env_id, task_id, score, split="train", reply="ok", status="completed", first="Do the task."):
    return Trajectory(env_id=env_id, task_id=task_id, episode_id=f"{env_id}/{split}/{task_id}/{reply}",
                      prompt=[{"role": "user", "content": "instructions"}, {"role": "assistant", "content": "Ok."}],
                      first_observation=first, steps=[Step(reply, "done", score, True, False)], score=score,
                      success=score == 1.0, status=status, policy="teacher", split=split)


def test_thresholds_duplicates_and_test_ids_are_dropped_and_counted():
    need_data("agentbench_os")
    from agent_gym.rollout import env_class

    test_id = env_class(OS).load_tasks("test")[0].id
    trajs = [
        _traj(OS, "train-1", 1.0),
        _traj(OS, "train-1", 1.0),                    # the same conversation again: a duplicate
        _traj(OS, "train-1", 1.0, reply="other"),     # the same task solved another way: kept
        _traj(OS, "train-2", 0.5),                    # below the paper's threshold (1)
        _traj(OS, "train-3", 1.0, status="error"),    # an engine error never counts
        _traj(OS, test_id, 1.0, split="dev"),         # a test task id played under another split
        _traj(OS, test_id, 1.0, split="test"),        # the test split itself
        _traj("AgentTuning/Mind2Web-v0", "t1", 2 / 3),  # Mind2Web keeps r >= 2/3
        _traj("AgentTuning/Mind2Web-v0", "t2", 0.5),
    ]
    res = filter_trajectories(trajs)
    kept = [(t.env_id, t.task_id, t.steps[0].action) for t in res.kept]
    assert kept == [(OS, "train-1", "ok"), (OS, "train-1", "other"), ("AgentTuning/Mind2Web-v0", "t1", "ok")]
    assert res.duplicates[OS] == 1 and res.below_threshold[OS] == 2 and res.contaminated[OS] == 2
    assert res.instructions[OS] == 4 and res.played[OS] == 7
    table = counts_table(res)
    assert table.splitlines()[0].split()[:3] == ["task", "instructions", "trajectories"]
    os_row = next(line for line in table.splitlines() if line.startswith("OS "))
    assert os_row.split()[:5] == ["OS", "4", "2", "50.0%", "1.00"]
    # a threshold of one's own
    assert len(filter_trajectories(trajs, min_score=0.5, decontaminate=False).kept) == 6


def test_a_train_task_whose_text_is_a_test_question_is_dropped_by_text_and_by_ngram():
    need_data("gsm8k")
    from agent_gym.instruct import TestIndex, contamination, test_index
    from agent_gym.rollout import env_class

    question = env_class(GSM8K).load_tasks("test")[5].question
    index = test_index(ngram=13)
    assert normalize_text(question) in index.texts
    # a task of another env, in a train split, whose text (here its first observation) copies a test question
    t = _traj("AgentTuning/OS-v0", "custom-x", 1.0, split="custom", first="Please solve: " + question.upper())
    assert contamination(t, index) == "it shares a 13-gram with a test task"
    assert contamination(t, TestIndex(index.ids, index.texts, set(), None, [])) is None
    fresh = _traj("AgentTuning/OS-v0", "custom-y", 1.0, split="custom", first="Count the files in /etc and answer.")
    assert contamination(fresh, index) is None


def test_formats_and_the_mix(tmp_path):
    trajs = [_traj(OS, f"train-{i}", 1.0) for i in range(4)]
    ai = records_of(trajs, "agentinstruct")
    assert ai[0]["conversations"][1] == {"from": "gpt", "value": "Ok.", "loss": False}  # a prompt turn: no loss
    assert ai[0]["conversations"][-1] == {"from": "gpt", "value": "ok", "loss": True}
    msgs = records_of(trajs + trajs[:1], "messages")
    assert [m["id"] for m in msgs][-1] == "os_train-0_1"  # the same task twice: distinct ids
    assert msgs[0]["messages"][-1] == {"role": "assistant", "content": "ok"}
    write_records(ai, tmp_path / "a.parquet", "parquet")
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "a.parquet"), split="train")
    assert ds.num_rows == 4 and ds[0]["conversations"][-1]["loss"] is True
    general = [{"id": f"g{i}", "conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": "hello"}]}
               for i in range(100)]
    mixed, used = mix(msgs[:4], general, eta=0.2, fmt="messages", seed=1)
    assert used == 16 and len(mixed) == 20  # 4 agent records are 20% of 20
    assert sum(1 for r in mixed if r["id"].startswith("g")) == 16
    assert {"role": "user", "content": "hi 0"} in [m for r in mixed for m in r["messages"]] or used < 100
    again, _ = mix(msgs[:4], general, eta=0.2, fmt="messages", seed=1)
    assert again == mixed  # seeded
    with pytest.raises(ValueError, match="eta"):
        mix(msgs, general, eta=0, fmt="messages")


def test_generate_filter_export_then_datasets_and_trl_read_it(tmp_path):
    """The issue's chain on the training pool that ships here (AgentBench's OS train tasks; ALFWorld's
    train games are not in this machine's data) with the expert as the teacher."""
    need_data("agentbench_os")
    from agent_gym.envs.os_interaction import bwrap

    if bwrap.default_rootfs() is None:
        pytest.skip("the OS sandbox image is not built (docker/os/build.sh)")

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "agent_gym.cli", *args], capture_output=True, text=True,
                              timeout=600, env=os.environ.copy(), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done

    cli("generate", "os", "--policy", "expert", "-n", "4", "-c", "2", "-o", "cand.jsonl", "--no-progress")
    table = cli("data", "filter", "cand.jsonl", "-o", "kept.jsonl", "--ngram", "13").stdout
    assert table.splitlines()[1].split()[:3] == ["OS", "4", "4"]
    cli("export", "kept.jsonl", "--format", "messages", "-o", "train.jsonl")
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train")
    assert ds.num_rows == 4 and ds[0]["messages"][-1]["role"] == "assistant"
    trl = pytest.importorskip("trl.trainer.sft_trainer")
    from agent_gym.policies.models import embedded_gguf, gguf_tokenizer

    tok = gguf_tokenizer(embedded_gguf())
    examples = [{"input_ids": tok.apply_chat_template(row["messages"], tokenize=True)} for row in ds]
    batch = trl.DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id or 0)(examples)
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].shape == batch["input_ids"].shape
    # generate refuses an env with no training split
    done = subprocess.run([sys.executable, "-m", "agent_gym.cli", "generate", "mmlu", "-o", "x.jsonl"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "no train split in AgentTuning/MMLU-v0" in done.stderr


def test_read_records_names_a_bad_line(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(p)
    assert json.loads('{"a": 1}') == {"a": 1}


def test_a_fresh_context_episode_exports_one_record_per_call():
    """Mind2Web: every multiple-choice call was its own session; AgentInstruct kept one-turn records."""
    t = _traj("AgentTuning/Mind2Web-v0", "t9", 1.0)
    t.steps = [Step("Answer: B", "next question", 0.5, False, False, info={"fresh_context": True}),
               Step("Answer: A", "done", 0.5, True, False, info={"fresh_context": True})]
    ai = records_of([t], "agentinstruct")
    assert [r["id"] for r in ai] == ["mind2web_t9_call0", "mind2web_t9_call1"]
    assert ai[1]["conversations"][-2:] == [{"from": "human", "value": "next question", "loss": False},
                                           {"from": "gpt", "value": "Answer: A", "loss": True}]
    msgs = records_of([t], "messages")
    assert len(msgs) == 2 and msgs[0]["messages"][-1] == {"role": "assistant", "content": "Answer: B"}


# ------------------------------------------------------------------------- bad input, in one line
def _cli(*argv):
    from agent_gym.cli import main

    return main(list(map(str, argv)))


def _run_file(path, trajs):
    from agent_gym.trajectory import dumps

    path.write_text("".join(dumps(t) for t in trajs))
    return path


def test_outputs_and_inputs_that_are_folders_and_scores_out_of_range_exit_2(tmp_path, capsys):
    runs = _run_file(tmp_path / "runs.jsonl", [_traj(OS, "train-1", 1.0)])
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [  # each was a traceback (IsADirectoryError / FileExistsError) or, for the scores, silently accepted
        ["data", "filter", runs, "-o", folder],
        ["data", "filter", folder, "-o", tmp_path / "k.jsonl"],
        ["export", runs, "-o", folder],
        ["data", "mix", runs, runs, "-o", folder],
        ["data", "filter", runs, "-o", tmp_path / "k.jsonl", "--min-score", "2"],
        ["data", "filter", runs, "-o", tmp_path / "k.jsonl", "--threshold", "os=-0.5"],
        ["export", runs, "-o", tmp_path / "e.jsonl", "--min-score", "1.5"],
    ]
    for argv in cases:
        assert _cli(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("agent-gym: error:") and "Traceback" not in err, (argv, err)
    assert not list(tmp_path.glob("*.tmp")) and list(folder.iterdir()) == []


def test_export_agentinstruct_makes_its_folder_like_the_other_formats(tmp_path, capsys):
    runs = _run_file(tmp_path / "runs.jsonl", [_traj(OS, "train-1", 1.0)])
    out = tmp_path / "new" / "dir" / "ai.jsonl"  # was: FileNotFoundError for agentinstruct only
    assert _cli("export", runs, "-o", out, "--format", "agentinstruct") == 0
    assert json.loads(out.read_text())["id"] == "os_train-1"


@pytest.mark.parametrize("general, says", [
    ('{"conversations": ["hello"]}', "turn 0 of 'conversations'"),          # was: TypeError traceback
    ("3", "a JSON object, got int"),                                       # was: AttributeError traceback
    ('{"conversations": [{"from": "human"}]}', "'from' and 'value'"),      # was: "error: value"
    ('{"messages": [{"role": "user"}]}', "'role' and 'content'"),          # was: "error: content"
    ('{"conversations": [{"from": "human", "value": null}]}', "'value'"),  # was: written as null
    ("", "the general file is empty"),                                     # was: a mix of agent records only, exit 0
    ("\udcff", "not UTF-8"),                                               # was: a bare codec message
])
def test_mix_names_what_is_wrong_with_a_general_record(tmp_path, capsys, general, says):
    agent = tmp_path / "agent.jsonl"
    write_records(records_of([_traj(OS, "train-1", 1.0)], "messages"), agent, "messages")
    path = tmp_path / "general.jsonl"
    path.write_bytes(general.encode("utf-8", "surrogateescape") + b"\n")
    assert _cli("data", "mix", agent, path, "-o", tmp_path / "mix.jsonl") == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "mix.jsonl").exists()


def test_a_parquet_mix_keeps_every_column_and_parquet_agent_files_are_read(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    agent = tmp_path / "agent.parquet"
    assert _cli("export", _run_file(tmp_path / "runs.jsonl", [_traj(OS, f"train-{i}", 1.0) for i in range(3)]),
                "--format", "parquet", "-o", agent) == 0
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"id": f"g{i}", "conversations": [{"from": "human", "value": "hi"},
                                                                          {"from": "gpt", "value": "yo"}]}) + "\n"
                               for i in range(20)))
    for seed in range(6):  # was: the agent file read as UTF-8 text; the columns were the first record's only,
        out = tmp_path / f"mix{seed}.parquet"  # so a mix starting with a general record lost env_id and task_id
        assert _cli("data", "mix", agent, general, "--eta", "0.2", "--seed", seed, "-o", out) == 0
        table = pq.read_table(out)
        assert {"env_id", "task_id", "messages"} <= set(table.column_names)
        assert sorted(r for r in table.column("task_id").to_pylist() if r) == ["train-0", "train-1", "train-2"]
