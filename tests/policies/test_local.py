"""The local backend on the embedded SmolLM2: decoding controls, batching, threads, the model cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent_gym.policies import models
from agent_gym.policies.backend import PromptTooLong, get_backend
from agent_gym.policies.local import Request

COUNT = "Count: one, two,"
ASK = [{"role": "user", "content": "What is the capital of France?"}]


def test_embedded_model_converts_once_and_declares_its_tokens(local_backend):
    folder = models.resolve(None)
    assert models.cache_dir() in Path(folder).parents
    assert models.resolve(None) == folder  # cached: no second conversion
    tok = local_backend.model.tokenizer
    assert tok.eos_token == "<|im_end|>" and tok("hi").input_ids[0] != tok.bos_token_id  # as the GGUF says
    assert local_backend.model_name == "SmolLM2-135M-Instruct" and local_backend.context_length == 8192


def test_greedy_is_deterministic_and_stops_at_eos(local_backend):
    a = local_backend.generate(ASK, max_new_tokens=24)
    b = local_backend.generate(ASK, max_new_tokens=24)
    assert a == b and "Paris" in a.text
    assert a.finish_reason == "eos_token" and a.completion_tokens < 24 and a.prompt_tokens > 10


def test_stop_sequence_ends_the_reply_and_is_left_out(local_backend):
    full = local_backend.generate(COUNT, max_new_tokens=8)
    assert "four" in full.text
    cut = local_backend.generate(COUNT, max_new_tokens=8, stop=["four"])
    assert cut.finish_reason == "stop_sequence" and "four" not in cut.text
    assert full.text.startswith(cut.text) and cut.completion_tokens < full.completion_tokens


def test_max_new_tokens_is_exact(local_backend):
    for n in (1, 5):
        out = local_backend.generate(COUNT, max_new_tokens=n)
        assert out.completion_tokens == n and out.finish_reason == "length"


def test_sampling_follows_the_seed(local_backend):
    runs = [local_backend.generate(COUNT, max_new_tokens=6, temperature=1.5, seed=s).text for s in (7, 7, 8, 9)]
    assert runs[0] == runs[1]
    assert len(set(runs[1:])) > 1


def test_prompt_beyond_the_context_is_refused_before_decoding():
    small = get_backend("local", context_length=64)
    with pytest.raises(PromptTooLong, match="must be <= 64"):
        small.generate("word " * 80, max_new_tokens=4)


def test_batched_decoding_matches_one_at_a_time(local_backend):
    model = local_backend.model
    prompts = [model.render([{"role": "user", "content": q}]) for q in
               ("What is 2+2?", "Name a color.", "Write one short sentence about the sea and the wind.")]
    alone = []
    for p in prompts:
        r = Request(model.encode(p), 10)
        model.run_batch([r])
        alone.append((r.text, r.tokens))
    together = [Request(model.encode(p), 10) for p in prompts]
    model.run_batch(together)
    assert [(r.text, r.tokens) for r in together] == alone


def test_threads_share_one_model_and_get_their_own_replies(local_backend):
    questions = [f"What is {i}+{i}?" for i in range(6)]
    expected = [local_backend.generate([{"role": "user", "content": q}], max_new_tokens=8).text for q in questions]
    batches_before = local_backend.batcher.batches
    got: dict[int, str] = {}

    def ask(i: int) -> None:
        got[i] = local_backend.generate([{"role": "user", "content": questions[i]}], max_new_tokens=8).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(questions))] == expected
    assert local_backend.batcher.batches - batches_before < len(questions)  # some requests shared a batch
    assert get_backend("local") is local_backend  # the per-process cache


# --------------------------------------------------------------------------- BOS, once
def test_rendered_prompt_gets_the_ids_of_the_templates_own_tokenization(local_backend):
    """SmolLM2's template opens with <|im_start|>, its BOS: the prompt has it once, as transformers tokenizes it."""
    model = local_backend.model
    ids = model.encode(model.render(ASK))
    assert ids == list(model.tokenizer.apply_chat_template(ASK, tokenize=True, add_generation_prompt=True,
                                                            return_dict=False))
    assert ids[0] == model.tokenizer.bos_token_id and ids[1] != ids[0]


def test_a_template_that_emits_bos_with_a_tokenizer_that_adds_it_gives_one_bos(bos_model):
    from agent_gym.policies.local import LocalModel

    model = LocalModel(str(bos_model))
    bos = model.tokenizer.bos_token_id
    assert model.tokenizer("x").input_ids[0] == bos  # the tokenizer adds BOS: tokenizing naively doubles it
    rendered = model.render(ASK)
    assert rendered.startswith("<|endoftext|><|im_start|>user")
    assert model.tokenizer(rendered).input_ids[:2] == [bos, bos]  # the bug: [bos, bos, ...]
    ids = model.encode(rendered)
    assert ids[0] == bos and ids[1] != bos
    assert ids == list(model.tokenizer.apply_chat_template(ASK, tokenize=True, add_generation_prompt=True,
                                                            return_dict=False))
    # a prompt without BOS text (our llama2 rendering leaves <s> out) still gets the tokenizer's one
    plain = model.encode("[INST] What is 2+2? [/INST]")
    assert plain[0] == bos and plain[1] != bos


# ------------------------------------------------------------- models the ragged engine cannot run
@pytest.fixture(scope="module")
def softcapping_model(tmp_path_factory) -> Path:
    """A tiny random Gemma-2 (attention and final logit soft-capping, sliding layers) with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(models.resolve(None))
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=8,
                          max_position_embeddings=512, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "gemma2-tiny"
    model = Gemma2ForCausalLM(config).eval()
    with torch.no_grad():  # large attention scores, so that capping them at 5 changes which token wins
        for layer in model.model.layers:
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(layer.self_attn, proj).weight.mul_(40)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_model_with_logit_softcapping_decodes_as_transformers_generate_does(softcapping_model):
    """Soft-capping changes the scores, which the ragged attention does not compute: such a model runs on its
    own attention and cache, one request at a time, and its greedy tokens are ``generate``'s (it was refused)."""
    import torch
    from transformers import AutoModelForCausalLM

    from agent_gym.policies.local import LocalBackend

    backend = LocalBackend(str(softcapping_model), prefix_cache_mb=64)
    assert backend.provenance["engine"] == "plain (attn_logit_softcapping is set)"
    assert backend.batcher.prefix_cache is None and backend.batcher.engine.max_batch == backend.batcher.max_batch == 1
    prompt = "The quick brown fox jumps over the lazy dog and runs into the forest"  # past the sliding window
    ids = backend.model.encode(prompt)
    reference = AutoModelForCausalLM.from_pretrained(softcapping_model, dtype=torch.float32,
                                                     attn_implementation="eager").eval()  # SDPA drops the capping
    with torch.inference_mode():
        want = reference.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                  pad_token_id=backend.model.pad_id)[0, len(ids):].tolist()
    done = backend.batcher.submit(Request(ids, 12)).wait()
    assert done.error is None and done.tokens == want and len(want) == 12

    results: dict[int, list[int]] = {}

    def ask(i: int) -> None:  # several threads at once: queued one at a time, each gets its own reply
        results[i] = backend.batcher.submit(Request(ids, 12)).wait().tokens

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [results[i] for i in range(3)] == [done.tokens] * 3
    assert backend.generate(prompt, max_new_tokens=4, stop=["\n"]).completion_tokens <= 4
    chunked = backend.variant(prefill_chunk=4)  # the prompt in chunks of 4 through transformers' cache
    assert chunked.batcher.submit(Request(ids, 12)).wait().tokens == want


def test_models_neither_attention_can_run_are_refused_and_soft_capping_goes_plain():
    """Recurrent or convolutional layers (by ``layer_types`` or ``layers_block_type``) carry a state that
    transformers continues one token at a time: such a model is refused, naming the servers that run it."""
    from types import SimpleNamespace

    from transformers import Gemma2Config, LlamaConfig

    from agent_gym.policies import kvcache

    llama, gemma2 = LlamaConfig(), Gemma2Config()
    assert kvcache.unsupported_reason(llama) is None and kvcache.refused_reason(llama) is None
    assert kvcache.unsupported_reason(gemma2) == "attn_logit_softcapping is set" and kvcache.refused_reason(gemma2) is None
    hybrid = SimpleNamespace(model_type="qwen3_next", layer_types=["linear_attention", "full_attention"])
    assert kvcache.refused_reason(hybrid) == "it has linear_attention layers"
    jamba = SimpleNamespace(model_type="jamba", layers_block_type=["mamba", "attention"])
    assert kvcache.refused_reason(jamba) == "it has mamba layers"
