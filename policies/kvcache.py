"""KV storage for the local engine: one buffer per running sequence, and a prefix cache shared by all.

Agent episodes re-send their whole conversation at every turn, and every episode of a task starts
with the same instruction and examples. :class:`PrefixCache` keeps the keys and values (KV) of
token sequences already computed in a radix tree (SGLang's RadixAttention idea: each node holds a
run of token ids and their KV, children branch where sequences diverge), so a new prompt copies the
KV of its longest cached prefix and the model computes only the tokens after it. The tree is bounded
in bytes; the least recently used leaves go first.

:class:`SequenceKV` is the KV of one running sequence, a preallocated ``[layers, 2, kv_heads,
capacity, head_dim]`` tensor written in place (transformers' ``DynamicCache`` concatenates, copying the
whole cache at every token). :func:`ragged_attention` is registered with transformers as an attention
implementation: each row of a batch attends over its own buffer at its own length, so sequences of
any lengths decode in one forward pass with no padding, and join or leave the batch between tokens
without touching the others. The matrix products outside attention are shared by the whole batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch

ATTENTION = "agent_gym_ragged"  # the name under which transformers dispatches to ragged_attention


class SequenceKV:
    """The KV of one sequence: ``buf[layer, 0 | 1, kv_head, position, dim]``; positions ``< length`` are valid.

    ``ids`` are the token ids whose KV is stored (``len(ids) == length``). The capacity grows by
    doubling when a write would pass it.
    """

    def __init__(self, shape: tuple[int, int, int], capacity: int, dtype: torch.dtype, device: Any):
        self.layers, self.heads, self.dim = shape
        self.buf = torch.empty((self.layers, 2, self.heads, max(1, capacity), self.dim), dtype=dtype, device=device)
        self.length = 0
        self.ids: list[int] = []

    @property
    def capacity(self) -> int:
        return self.buf.shape[3]

    def reserve(self, n: int) -> None:
        """Room for ``n`` more positions (called before a forward pass writes them)."""
        need = self.length + n
        if need > self.capacity:
            grown = torch.empty((*self.buf.shape[:3], max(need, 2 * self.capacity), self.dim), dtype=self.buf.dtype,
                                device=self.buf.device)
            grown[:, :, :, :self.length] = self.buf[:, :, :, :self.length]
            self.buf = grown

    def advance(self, ids: Sequence[int]) -> None:
        """Record that the forward pass just wrote the KV of ``ids`` after the valid positions."""
        self.ids.extend(ids)
        self.length += len(ids)

    @property
    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()


class PlainKV:
    """One sequence's KV in transformers' own cache, for models :func:`ragged_attention` cannot run.

    The same bookkeeping as :class:`SequenceKV` (``length``, ``ids``); ``past`` is the model's
    ``past_key_values``. Such a sequence is decoded alone (batch 1) and never enters the prefix cache.
    """

    def __init__(self) -> None:
        self.length = 0
        self.ids: list[int] = []
        self.past: Any = None

    def reserve(self, n: int) -> None:
        """Nothing to reserve: transformers' cache grows itself."""

    def advance(self, ids: Sequence[int]) -> None:
        self.ids.extend(ids)
        self.length += len(ids)


class _Node:
    __slots__ = ("tokens", "kv", "children", "parent", "used")

    def __init__(self, tokens: tuple[int, ...], kv: torch.Tensor | None, parent: _Node | None, used: int):
        self.tokens, self.kv, self.parent, self.used = tokens, kv, parent, used
        self.children: dict[int, _Node] = {}

    @property
    def nbytes(self) -> int:
        return 0 if self.kv is None else self.kv.numel() * self.kv.element_size()


class PrefixCache:
    """A radix tree of token sequences and their KV, at most ``max_bytes`` of KV (LRU eviction of leaves).

    Only the engine thread uses it. ``lookup`` copies the KV of the longest cached prefix of a prompt
    into a :class:`SequenceKV`; ``insert`` stores what a sequence computed. KV depends only on the
    token ids before it (same model, same positions), so a cached prefix is exact for any request,
    whatever its decoding settings.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._clock = itertools.count(1)
        self.root = _Node((), None, None, 0)
        self.bytes = 0
        self.evicted_bytes = 0

    def lookup(self, ids: Sequence[int], into: SequenceKV) -> int:
        """Copy the KV of the longest cached prefix of ``ids`` into ``into`` (empty); return its length."""
        node, at = self.root, 0
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                break
            k = _common(child.tokens, ids, at)
            into.reserve(k)
            into.buf[:, :, :, at:at + k] = child.kv[:, :, :, :k]
            child.used = next(self._clock)
            into.advance(child.tokens[:k])
            at += k
            if k < len(child.tokens):
                break
            node = child
        return at

    def insert(self, seq: SequenceKV) -> None:
        """Store the KV of ``seq.ids`` (the parts not cached yet), then evict down to the bound."""
        ids, node, at = seq.ids, self.root, 0
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                size = (len(ids) - at) * seq.buf[:, :, :, :1].numel() * seq.buf.element_size()
                if size > self.max_bytes:  # would flush every other entry for one that cannot stay
                    break
                child = _Node(tuple(ids[at:]), seq.buf[:, :, :, at:len(ids)].clone(), node, next(self._clock))
                node.children[ids[at]] = child
                self.bytes += child.nbytes
                break
            k = _common(child.tokens, ids, at)
            if k < len(child.tokens):
                if at + k == len(ids):  # ``ids`` ends inside this node: nothing new
                    child.used = next(self._clock)
                    break
                child = self._split(child, k)
            child.used = next(self._clock)
            at += k
            node = child
        self._evict()

    def clear(self) -> None:
        self.root.children.clear()
        self.bytes = 0

    def _split(self, node: _Node, k: int) -> _Node:
        """Cut ``node`` after its ``k`` first tokens; return the new upper part (copies: no shared storage)."""
        upper = _Node(node.tokens[:k], node.kv[:, :, :, :k].clone(), node.parent, node.used)
        node.tokens, node.kv = node.tokens[k:], node.kv[:, :, :, k:].clone()
        node.parent.children[upper.tokens[0]] = upper
        upper.children[node.tokens[0]] = node
        node.parent = upper
        return upper

    def _evict(self) -> None:
        while self.bytes > self.max_bytes:
            leaves = [n for n in self._nodes() if not n.children]
            if not leaves:
                return
            leaf = min(leaves, key=lambda n: n.used)
            del leaf.parent.children[leaf.tokens[0]]
            self.bytes -= leaf.nbytes
            self.evicted_bytes += leaf.nbytes

    def _nodes(self) -> list[_Node]:
        out, todo = [], list(self.root.children.values())
        while todo:
            n = todo.pop()
            out.append(n)
            todo.extend(n.children.values())
        return out

    @property
    def tokens(self) -> int:
        """How many token positions the tree holds."""
        return sum(len(n.tokens) for n in self._nodes())


def _common(tokens: tuple[int, ...], ids: Sequence[int], at: int) -> int:
    """Length of the common prefix of ``tokens`` and ``ids[at:]``."""
    n = min(len(tokens), len(ids) - at)
    if tuple(ids[at:at + n]) == tokens[:n]:
        return n
    for i in range(n):
        if tokens[i] != ids[at + i]:
            return i
    return n


# --------------------------------------------------------------------------- attention
def kv_shape(config: Any) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of a transformers decoder config."""
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, dim


def unsupported_reason(config: Any) -> str | None:
    """Why :func:`ragged_attention` cannot run this attention-only model (None when it can).

    It computes plain softmax attention, causal, with an optional sliding window; models that
    change the scores themselves (logit soft-capping, attention sinks) run on the model's own
    attention and cache instead (:class:`PlainKV`), one request at a time. Models that neither can
    run are named by :func:`refused_reason`.
    """
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(config, name, None):
            return f"{name} is set"
    if config.model_type in ("gpt_oss",):
        return "its attention has sinks"
    return None


def refused_reason(config: Any) -> str | None:
    """Why the local engine cannot run this model at all (None when it can), ragged or plain.

    Recurrent or convolutional layers (Mamba, linear attention, LFM2's convolutions: ``layer_types``
    or ``layers_block_type`` beyond attention) carry a state that transformers' own layers continue
    only one token at a time, so chunked prompts would be decoded wrongly; encoder-decoders are not
    causal LMs.
    """
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    if getattr(config, "is_encoder_decoder", False):
        return "it is an encoder-decoder model"
    attention = {"full_attention", "sliding_attention", "attention"}
    types = set(getattr(config, "layer_types", None) or ()) | set(getattr(config, "layers_block_type", None) or ())
    if types - attention:
        return f"it has {', '.join(sorted(map(str, types - attention)))} layers"
    return None


def install() -> None:
    """Register :func:`ragged_attention` with transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, ragged_attention)


def ragged_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                     scaling: float | None = None, dropout: float = 0.0, agent_gym_rows: Sequence[SequenceKV] = (),
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of each batch row over its own :class:`SequenceKV` (transformers' attention interface).

    ``query``: ``[rows, heads, n, dim]``; ``key``, ``value``: ``[rows, kv_heads, n, dim]``, the ``n`` new
    positions (RoPE applied), written into each row's buffer after its ``length`` valid positions
    (the engine calls ``advance`` after the forward pass). Returns ``[rows, n, heads, dim]``.
    Decoding (``n == 1``) needs no mask; a prompt chunk after cached positions gets the causal mask
    shifted by them. ``sliding_window`` (from the layer or the call) limits the keys a query sees.
    """
    if not agent_gym_rows:  # a plain forward of the model (a user's, or a scoring check): transformers' own SDPA
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    layer, n = module.layer_idx, key.shape[2]
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    outs = []
    for b, row in enumerate(agent_gym_rows):
        start, end = row.length, row.length + n
        row.buf[layer, 0, :, start:end] = key[b]
        row.buf[layer, 1, :, start:end] = value[b]
        first = max(0, end - window) if window and n == 1 else 0
        k = row.buf[layer, 0, :, first:end].unsqueeze(0)
        v = row.buf[layer, 1, :, first:end].unsqueeze(0)
        q = query[b:b + 1]
        if n == 1:
            out = sdpa(q, k, v, scale=scaling, enable_gqa=True)
        elif start == 0 and not window:
            out = sdpa(q, k, v, scale=scaling, is_causal=True, enable_gqa=True)
        else:
            pos = torch.arange(start, end, device=k.device)[:, None]
            keys = torch.arange(end, device=k.device)[None, :]
            mask = keys <= pos
            if window:
                mask &= keys > pos - window
            out = sdpa(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=True)
        outs.append(out)
    return torch.cat(outs).transpose(1, 2).contiguous(), None
