"""Cutting long episode histories the way AgentBench's evaluation did (``Session.filter_messages``).

The instruction (message 0) is always kept; then messages are kept newest first while a running
"segment" count stays under 3500 (a run of letters counts one segment per 7 letters, every other
character except space and newline counts one); the oldest kept message must be the agent's, so
roles still alternate; if anything was dropped, the instruction ends with
``[NOTICE] N messages are omitted.``. ``max_kept`` drops further when the model's context is smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

Message = dict[str, str]
SEGMENT_LIMIT = 3500


def segments(text: str) -> int:
    """AgentBench's cheap length measure (roughly tokens, without a tokenizer)."""
    count, run = 0, 0
    for char in text:
        if char.isalpha():
            run += 1
            if run >= 7:
                count, run = count + 1, 0
        else:
            if run:
                count, run = count + 1, 0
            if char not in (" ", "\n"):
                count += 1
    return count + (1 if run else 0)


def filter_messages(messages: Sequence[Message], limit: int = SEGMENT_LIMIT,
                    max_kept: int | None = None) -> tuple[list[Message], int]:
    """The messages to send (instruction first) and how many were omitted.

    ``messages`` alternate user / assistant, starting and ending with user. ``max_kept`` caps the
    messages kept after the instruction. The result may end without the newest user message only
    when that message alone exceeds the limit; callers treat that as not fitting.
    """
    total = segments(messages[0]["content"])
    kept: list[Message] = []
    for message in reversed(messages[1:]):
        total += segments(message["content"])
        if total >= limit or (max_kept is not None and len(kept) >= max_kept):
            break
        kept.append(message)
    if kept and kept[-1]["role"] == "user":
        kept.pop()
    omitted = len(messages) - len(kept) - 1
    instruction = messages[0]["content"]
    if omitted > 0:
        instruction += f"\n\n[NOTICE] {omitted} messages are omitted."
    return [{"role": messages[0]["role"], "content": instruction}, *reversed(kept)], omitted
