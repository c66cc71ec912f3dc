"""Llama-2-chat rendering, checked token by token against Meta's reference ``chat_completion`` rule.

No Llama-2 tokenizer can be downloaded here, so the test trains a small SentencePiece BPE model with
Llama's special ids (unk 0, <s> 1, </s> 2, byte fallback) and loads it the two ways a server does:
the slow ``LlamaTokenizer`` and a fast tokenizer with Llama-2's ``tokenizer.json`` normaliser
(prepend "▁", spaces to "▁"). Meta's rule encodes each exchange separately and joins ids with
BOS/EOS; our prompt is one string that the tokenizer must split into exactly those ids.
"""

from __future__ import annotations

import io

import pytest

from agent_gym.policies.templates import AGENTLM_SYSTEM, default_template, llama2_prompt

sentencepiece = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
BOS, EOS = 1, 2

CORPUS = [
    "The quick brown fox jumps over the lazy dog.", AGENTLM_SYSTEM, "Think: I should list the files.\nAct: bash",
    "[INST] hello [/INST] world", "<<SYS>> system <</SYS>>", "What is 2+2? The answer is 4.",
    "Observation: 12 files, 3 folders.", "Action: Operation\n```sql\nSELECT * FROM t;\n```",
]
USER = ["What is 2+2?", "  Think: list the files.\nAct: bash  ", "The output of the OS:\n\n220", "Observation: []",
        "Now, I will start a new problem."]
AGENT = [" The answer is 4. ", "Act: answer(220)", "Action: Operation\n```sql\nSELECT 1;\n```", "Final Answer: #3"]


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 40), model_writer=buf, vocab_size=400, model_type="bpe", unk_id=0,
        bos_id=BOS, eos_id=EOS, pad_id=-1, byte_fallback=True, character_coverage=1.0, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="module")
def tokenizers(sp_model):
    slow = transformers.LlamaTokenizer(vocab_file=str(sp_model), legacy=True)
    fast = transformers.LlamaTokenizerFast(vocab_file=str(sp_model), legacy=True, from_slow=True,
                                           add_prefix_space=True)
    return {"slow": slow, "fast": fast}


def meta_chat_completion_tokens(dialog, sp) -> list[int]:
    """Meta's ``Llama.chat_completion`` token rule (llama/generation.py), the reference."""
    if dialog[0]["role"] == "system":
        dialog = [{"role": dialog[1]["role"], "content": B_SYS + dialog[0]["content"] + E_SYS + dialog[1]["content"]},
                  *dialog[2:]]
    tokens: list[int] = []
    for prompt, answer in zip(dialog[::2], dialog[1::2]):
        tokens += [BOS, *sp.encode(f"{B_INST} {prompt['content'].strip()} {E_INST} {answer['content'].strip()} "), EOS]
    return tokens + [BOS, *sp.encode(f"{B_INST} {dialog[-1]['content'].strip()} {E_INST}")]


def dialog(user_turns: int, system: bool) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = [{"role": "system", "content": AGENTLM_SYSTEM}] if system else []
    for i in range(user_turns):
        turns.append({"role": "user", "content": USER[i % len(USER)]})
        if i < user_turns - 1:
            turns.append({"role": "assistant", "content": AGENT[i % len(AGENT)]})
    return turns


@pytest.mark.parametrize("kind", ["slow", "fast"])
@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("user_turns", [1, 2, 5])
def test_llama2_prompt_tokenizes_to_meta_reference(tokenizers, sp_model, kind, system, user_turns):
    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
    messages = dialog(user_turns, system)
    ours = tokenizers[kind](llama2_prompt(messages, system=None)).input_ids
    assert ours == meta_chat_completion_tokens(messages, sp)


def test_llama2_prompt_text_for_two_exchanges():
    messages = [{"role": "user", "content": " Hi "}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Solve it."}]
    assert llama2_prompt(messages) == (
        f"[INST] <<SYS>>\n{AGENTLM_SYSTEM}\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Solve it. [/INST]")
    # AgentBench's held-in harness set no system message: FastChat then starts with a bare "[INST] "
    assert llama2_prompt(messages, system=None) == "[INST] Hi [/INST] Hello! </s><s>[INST] Solve it. [/INST]"
    # a system turn in the conversation wins over the default
    assert llama2_prompt([{"role": "system", "content": "Be brief."}, *messages]).startswith(
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]")


@pytest.mark.parametrize("roles", [[], ["user", "assistant"], ["assistant"], ["user", "user", "user"]])
def test_llama2_prompt_refuses_non_alternating_turns(roles):
    with pytest.raises(ValueError, match="turn|odd"):
        llama2_prompt([{"role": r, "content": "x"} for r in roles])


@pytest.mark.parametrize("name, template", [("THUDM/agentlm-7b", "llama2"), ("meta-llama/Llama-2-7b-chat-hf", "llama2"),
                                            ("SmolLM2-135M-Instruct", "auto"), (None, "auto")])
def test_default_template_follows_the_model(name, template):
    assert default_template(name) == template
