"""Chat templates: how a conversation becomes the prompt string a model continues.

AgentLM is Llama-2-chat fine-tuned and was evaluated with FastChat 0.2.31's ``llama-2`` template,
which renders exactly what Meta's reference ``chat_completion`` tokenizes: the system prompt in a
``<<SYS>>`` block folded into the first user turn, each exchange ``[INST] user [/INST] reply </s>``,
a new ``<s>`` per exchange, every message ``strip()``-ed. The string leaves out the first ``<s>``:
the tokenizer adds it, as TGI does. Other models use their tokenizer's own template.
"""

from __future__ import annotations

from collections.abc import Sequence

Message = dict[str, str]

#: The system prompt AgentLM was prompted with (Llama-2-chat's short default).
AGENTLM_SYSTEM = "You are a helpful, respectful and honest assistant."

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
TEMPLATES = ("llama2", "auto", "server")


def llama2_prompt(messages: Sequence[Message], system: str | None = AGENTLM_SYSTEM, *, strip: bool = True) -> str:
    """Render user/assistant ``messages`` (alternating, starting and ending with user) for Llama-2-chat.

    A leading ``system`` message in ``messages`` wins over ``system``; ``None`` or ``""`` means no
    ``<<SYS>>`` block (AgentBench's held-in harness set none). ``strip``: each message is
    ``strip()``-ed first, as AgentBench's harness (``TGIAgent.inference``) and Meta's reference did;
    ``False`` keeps the text as AgentTuning's general / held-out scripts passed it to FastChat
    (GSM8K's question starts with a newline, its instruction ends with a space).
    """
    turns = list(messages)
    if turns and turns[0]["role"] == "system":
        system, turns = turns[0]["content"], turns[1:]
    check_alternating(turns)
    contents = [m["content"].strip() if strip else m["content"] for m in turns]
    if system and system.strip():
        contents[0] = B_SYS + (system.strip() if strip else system) + E_SYS + contents[0]
    parts = []
    for i in range(0, len(contents) - 1, 2):
        parts.append(f"{B_INST} {contents[i]} {E_INST} {contents[i + 1]} </s><s>")
    parts.append(f"{B_INST} {contents[-1]} {E_INST}")
    return "".join(parts)


def check_alternating(turns: Sequence[Message]) -> None:
    """Llama-2-chat (and AgentBench) need user, assistant, user, ... ending with user."""
    if not turns or len(turns) % 2 == 0:
        raise ValueError(f"a chat prompt needs an odd number of user/assistant turns ending with user, got {len(turns)}")
    for i, m in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise ValueError(f"turn {i} must be {want!r}, got {m['role']!r}: roles must alternate, starting with user")


def default_template(model_name: str | None) -> str:
    """``llama2`` for AgentLM and Llama-2-chat models (the paper's setting), else the model's own."""
    name = (model_name or "").lower().replace("_", "-")
    return "llama2" if ("agentlm" in name or "llama-2" in name or "llama2" in name) else "auto"
