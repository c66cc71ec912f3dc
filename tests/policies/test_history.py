"""History truncation as AgentBench's ``Session.filter_messages`` did it."""

from __future__ import annotations

from agent_gym.policies.history import filter_messages, segments


def test_segments_count_letter_runs_by_seven_and_other_characters_one_each():
    assert segments("") == 0
    assert segments("abc") == 1
    assert segments("abcdefg") == 1
    assert segments("abcdefgh") == 2
    assert segments("ab cd\nef") == 3  # spaces and newlines are free
    assert segments("a, b") == 3
    assert segments("x=42") == 4


def conversation(n_exchanges: int, size: int) -> list[dict[str, str]]:
    msgs = [{"role": "user", "content": "Instruction."}]
    for i in range(n_exchanges):
        msgs.append({"role": "assistant", "content": f"reply{i} " + "word " * size})
        msgs.append({"role": "user", "content": f"obs{i} " + "word " * size})
    return msgs


def test_short_history_is_sent_whole():
    msgs = conversation(3, 5)
    kept, omitted = filter_messages(msgs)
    assert kept == msgs and omitted == 0


def test_long_history_keeps_instruction_and_newest_turns_with_a_notice():
    msgs = conversation(20, 100)  # each message about 101 segments
    kept, omitted = filter_messages(msgs, limit=1000)
    assert omitted > 0 and len(kept) + omitted == len(msgs)
    assert kept[0]["content"] == f"Instruction.\n\n[NOTICE] {omitted} messages are omitted."
    assert kept[1]["role"] == "assistant"  # roles still alternate after the instruction
    assert kept[-1] is msgs[-1]
    assert [m["role"] for m in kept[1:]] == ["assistant", "user"] * ((len(kept) - 1) // 2)
    assert sum(segments(m["content"]) for m in msgs[:1] + kept[1:]) < 1000


def test_max_kept_drops_further():
    msgs = conversation(5, 1)
    kept, omitted = filter_messages(msgs, max_kept=2)
    assert [m["content"] for m in kept[1:]] == [msgs[-2]["content"], msgs[-1]["content"]]
    assert omitted == len(msgs) - 3


def test_an_observation_larger_than_the_limit_leaves_only_the_instruction():
    msgs = conversation(1, 10) + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "x " * 5000}]
    kept, omitted = filter_messages(msgs)
    assert len(kept) == 1 and omitted == len(msgs) - 1
