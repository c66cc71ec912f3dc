"""``AgentTuning/WebArena-v0``: WebArena's 812 tasks in headless Chromium against the user's own deployment.

One episode is one config. The first observation and every later one are the prompt's template
filled in: the viewport's accessibility tree with element ids (cut to 1920 cl100k tokens), the URL
as the agent knew the site (``http://onestopmarket.com/...``), the objective and the previous
action. A reply's action is the first text between a pair of ```` ``` ```` (``click [id]``,
``type [id] [text] [0|1]``, ``hover [id]``, ``press [keys]``, ``scroll [up|down]``, ``new_tab``,
``tab_focus [i]``, ``close_tab``, ``goto [url]``, ``go_back``, ``go_forward``, ``stop [answer]``).
``stop`` ends the episode and the task's evaluators score it (the product of string / URL /
HTML checks, :mod:`.evaluators`); so do ``run.py``'s early stops, with the answer "Early stop: ...":
30 actions, 3 unparsable replies in a row, the same action 3 times (a ``type`` 3 times in all).
Decoding (``run.py`` defaults, TGI): sampling, temperature 1.0, top_p 0.9, 384 new tokens; system
message Llama-2's short default (FastChat's llama-2 conversation). The paper's agent saw only the
prompt and the current observation, no history: ``info["history"] == "none"`` says so to policies.

Sites: the deployment's URLs come from env kwargs (``shopping=``, ``shopping_admin=``, ``reddit=``,
``gitlab=``, ``map=``, ``wikipedia=``, ``homepage=``) or the environment variables WebArena reads
(``SHOPPING``, ...). Login state: upstream's ``auto_login.py`` writes ``.auth/<site>_state.json``;
point ``auth_dir=`` (or ``WEBARENA_AUTH_DIR``) at that folder. ``fuzzy_match`` answers need a judge:
``judge_backend=`` (local / tgi / openai) with ``judge_model=`` and ``judge_url=``, or ``judge=`` a
backend object. Without a site URL a task needs, ``reset`` returns a message naming the setting and
the first step ends the episode with status ``error``; ``preflight`` stops a run before it starts.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_gym.core import (ERROR, INVALID_ACTION, LLAMA2_SYSTEM, REPEATED_ACTION, ROUND_LIMIT, RUNNING,
                            TASK_LIMIT_REACHED, ANSWERED, COMPLETED, ENV_ERROR, INVALID_ACTION_END, Begin, Outcome,
                            TextEnv)
from agent_gym.envs.webarena import data, engine, evaluators, prompt

AUTH_DIR_VAR = "WEBARENA_AUTH_DIR"


class WebArenaEnv(TextEnv):
    task_name = "webarena"
    splits = ("test", "latest")
    max_turns = prompt.MAX_STEPS
    decoding = {"max_new_tokens": 384, "temperature": 1.0, "top_p": 0.9}  # run.py defaults, do_sample on TGI
    system_prompt = LLAMA2_SYSTEM  # prompt_constructor.py, llama provider: FastChat llama-2 with this system message
    strip_messages = True  # the llama provider strip()-ed the intro, the examples and the current observation
    paper_options = {"max_steps": 30, "max_obs_tokens": 1920, "tokenizer": "cl100k_base", "viewport": [1280, 720],
                     "current_viewport_only": True, "sleep_after_execution": 2.5,
                     "eval_sleep": 3.0, "judge": {"backend": "openai", "model": "gpt-3.5-turbo", "url": None}}
    invalid_action_message = "Invalid action: {reason}"

    def __init__(self, split: str | None = None, render_mode: str | None = None, tasks_file: str | Path | None = None,
                 shopping: str | None = None, shopping_admin: str | None = None, reddit: str | None = None,
                 gitlab: str | None = None, map: str | None = None, wikipedia: str | None = None,  # noqa: A002
                 homepage: str | None = None, auth_dir: str | Path | None = None, judge: Any = None,
                 judge_backend: str | None = None, judge_model: str | None = None, judge_url: str | None = None,
                 sleep_after_execution: float = 2.5, eval_sleep: float = 3.0,
                 max_obs_tokens: int = prompt.MAX_OBS_TOKENS):
        """Site URLs default to the environment variables of the same name in upper case (WebArena's
        ``env_config.py``). ``sleep_after_execution``: seconds waited after each action before the page
        is read (run.py: 2.5), then until the document has loaded; ``eval_sleep``: the same after each
        navigation of the ``program_html`` checks (upstream: 3). ``max_obs_tokens``: the observation's cap."""
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        given = {"SHOPPING": shopping, "SHOPPING_ADMIN": shopping_admin, "REDDIT": reddit, "GITLAB": gitlab,
                 "MAP": map, "WIKIPEDIA": wikipedia, "HOMEPAGE": homepage}
        #: setting -> URL (no trailing slash) for the settings given
        self.sites = {k: str(v).rstrip("/") for k, v in ((k, v or os.environ.get(k)) for k, v in given.items()) if v}
        auth = auth_dir or os.environ.get(AUTH_DIR_VAR)
        self.auth_dir = Path(auth).expanduser() if auth else None
        if judge is None and judge_backend:
            from agent_gym.policies.backend import get_backend

            config = {"model": judge_model, "url": judge_url}
            judge = get_backend(judge_backend, **{k: v for k, v in config.items() if v})
        self.judge = evaluators.Judge(judge) if judge is not None else None
        if sleep_after_execution < 0 or eval_sleep < 0 or max_obs_tokens < 1:
            raise ValueError("sleep_after_execution and eval_sleep must be >= 0 seconds, max_obs_tokens >= 1")
        self.sleep_after_execution = float(sleep_after_execution)
        self.eval_sleep = float(eval_sleep)
        self.max_obs_tokens = int(max_obs_tokens)
        self._browser: engine.Browser | None = None
        self._setup_error: str | None = None

    # ------------------------------------------------------------------ data and setup
    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.WebTask]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.WebTask]:
        return data.load_file(path)

    def options(self) -> dict[str, Any]:
        return {"max_steps": self.max_turns, "max_obs_tokens": self.max_obs_tokens, "tokenizer": "cl100k_base",
                "viewport": list(engine.VIEWPORT), "current_viewport_only": True,
                "sleep_after_execution": self.sleep_after_execution, "eval_sleep": self.eval_sleep,
                "judge": self.judge.name if self.judge else None}

    def engine_info(self) -> dict[str, str]:
        return dict(_versions())

    @classmethod
    def engine_status(cls) -> str:
        versions = dict(_versions())
        if "chromium" not in versions:
            return "missing: apt-get install chromium chromium-driver"
        if "selenium" not in versions:
            return 'missing: pip install -e ".[web]" (Selenium)'
        return f"chromium {versions['chromium']} + selenium {versions['selenium']}"

    def missing_sites(self, task: data.WebTask) -> list[str]:
        """The settings ``task`` needs that are not given (its placeholders, its homepage link)."""
        used = set(re.findall(r"__([A-Z_]+?)__", json.dumps([task.start_url, task.eval])))
        return [s for s in data.SITES if s in used and s not in self.sites]

    def preflight(self) -> None:
        """No site URL at all, ``fuzzy_match`` tasks without a judge, or no tokenizer to cut observations:
        the run cannot play as the paper did."""
        prompt.tokenizer()  # RuntimeError naming the packages when tiktoken / its BPE file are missing
        if not self.sites:
            raise RuntimeError(
                "WebArena plays against your own deployment of its sites: set their URLs as environment variables "
                f"{', '.join(data.SITES)} (or env args shopping=, shopping_admin=, reddit=, gitlab=, map=, "
                "wikipedia=, homepage=); see docs/webarena.md")
        if self.judge is None and any("fuzzy_match" in (t.eval.get("reference_answers") or {})
                                      for t in self.tasks() if "string_match" in t.eval_types):
            raise RuntimeError("WebArena scores some answers with an LLM judge (fuzzy_match): pass --env-arg "
                               "judge_backend=openai|tgi|local with judge_model= and judge_url= (the paper's judge: "
                               "gpt-3.5-turbo)")

    def _fill(self, text: str) -> str:
        for name, url in self.sites.items():
            text = text.replace(f"__{name}__", url)
        return text

    def _storage_state(self, task: data.WebTask) -> dict[str, Any] | None:
        if not task.storage_state:
            return None
        name = Path(task.storage_state).name
        if self.auth_dir is None or not (self.auth_dir / name).is_file():
            where = f"{self.auth_dir / name} is missing" if self.auth_dir else f"{AUTH_DIR_VAR} is not set"
            raise FileNotFoundError(
                f"task {task.id} starts logged in ({task.storage_state}) but {where}: run WebArena's "
                f"browser_env/auto_login.py against your deployment and set {AUTH_DIR_VAR} (or auth_dir=) to its "
                f".auth folder")
        return engine.load_storage_state(self.auth_dir / name)

    # ------------------------------------------------------------------ episode
    def _begin(self, task: data.WebTask) -> Begin:
        instruction = data.instruction()
        self._actions: list[prompt.Action] = []
        self._setup_error = None
        missing = self.missing_sites(task)
        extra: dict[str, Any] = {"history": "none", "intent": task.intent, "sites": list(task.sites)}
        if missing:
            names = ", ".join(missing)
            self._setup_error = (
                f"WebArena task {task.id} needs the URL of your deployment's {names} site: set the environment "
                f"variable {missing[0]} (or pass {missing[0].lower()}=URL to the env); see docs/webarena.md")
            return Begin(observation=self._setup_error, prompt=prompt.messages(instruction),
                         extra={**extra, "setup_error": self._setup_error})
        self._eval = json.loads(self._fill(json.dumps(task.eval)))
        state = self._storage_state(task)
        if self._browser is None or not self._browser.alive:
            self.close_browser()
            self._browser = engine.Browser()
        try:
            self._browser.start(self._fill(task.start_url).split(" |AND| "), state, task.geolocation)
        except ConnectionError as exc:
            sites = [f"{name}={url}" for name, url in self.sites.items() if url in str(exc)] or ["the site URLs"]
            raise ConnectionError(f"{exc}: is your WebArena deployment up at {', '.join(sites)}?") from None
        self._browser.settle(0)
        return Begin(observation=self._observation("None"), prompt=prompt.messages(instruction),
                     extra={**extra, "url": self._browser.url})

    def _observation(self, previous_action: str) -> str:
        text = prompt.truncate(self._browser.observe(), self.max_obs_tokens)
        return prompt.current(data.instruction(), text, prompt.to_real(self._browser.url, self.sites),
                              self.task.intent, previous_action)

    def _act(self, reply: str) -> Outcome:
        if self._setup_error:
            # Ended as terminated with status "error" (so runs play it again once the URL is set), not
            # truncated: gymnasium's check_env refuses an episode truncated after one step.
            return Outcome(observation=self._setup_error, done=True, action_valid=False, end_reason=ENV_ERROR,
                           extra={"error": self._setup_error, "status": ERROR})
        instruction = data.instruction()
        splitter = instruction["meta_data"]["action_splitter"]
        try:
            action = prompt.parse_action(prompt.to_local(prompt.extract_action(reply, splitter), self.sites))
        except prompt.ActionParsingError:
            action = prompt.Action("none")
        action = prompt.Action(**{**action.__dict__, "raw": reply})
        self._actions.append(action)
        described = prompt.describe(action, {k: v["text"] for k, v in self._browser.nodes.items()}, splitter)
        extra: dict[str, Any] = {"action": described if action.kind != "none" else None}
        if action.kind == "stop":
            return self._finish(action.answer, COMPLETED, ANSWERED, extra)
        fail = self._execute(action)
        extra["fail_error"] = fail
        self._browser.settle(self.sleep_after_execution)
        stop = prompt.early_stop(self._actions, self.max_turns or prompt.MAX_STEPS)
        if stop is not None:  # run.py: the stop action "Early stop: ..." is evaluated like any answer
            status, reason = {"Reach": (TASK_LIMIT_REACHED, ROUND_LIMIT), "Faile": (INVALID_ACTION, INVALID_ACTION_END)
                              }.get(stop[:5], (TASK_LIMIT_REACHED, REPEATED_ACTION))
            return self._finish(f"Early stop: {stop}", status, reason, extra, valid=action.kind != "none")
        extra["url"] = self._browser.url
        return Outcome(observation=self._observation(described), action_valid=action.kind != "none", extra=extra)

    def _execute(self, action: prompt.Action) -> str:
        """Do ``action`` in the browser; upstream's ``fail_error``: "" or why it failed (the episode goes on)."""
        browser = self._browser
        try:
            if action.kind in ("click", "hover", "type"):
                x, y = browser.element_center(action.element_id)
                browser.mouse(x, y, click=action.kind != "hover")
                if action.kind == "type":
                    browser.type_text(action.text)
            elif action.kind == "press":
                browser.press(action.key_comb)
            elif action.kind == "scroll":
                browser.scroll(action.direction)
            elif action.kind == "goto":
                browser.goto(action.url)
            elif action.kind == "go_back":
                browser.back()
            elif action.kind == "go_forward":
                browser.forward()
            elif action.kind == "new_tab":
                browser.new_tab()
            elif action.kind == "tab_focus":
                browser.focus(action.page_number)
            elif action.kind == "close_tab":
                browser.close_tab()
        except Exception as exc:  # noqa: BLE001 - upstream kept going with the error noted
            if not browser.alive:
                raise engine.BrowserError(f"Chromium stopped answering ({type(exc).__name__}: {exc})") from exc
            return f"{type(exc).__name__}: {exc}".strip()
        return ""

    def _finish(self, answer: str, status: str, reason: str, extra: dict[str, Any], valid: bool = True) -> Outcome:
        score, details = evaluators.evaluate(self._eval, answer, self._browser, self.sites, self.judge,
                                             settle=self.eval_sleep)
        extra.update({"answer": answer, "evaluation": details, "url": self._browser.url})
        return Outcome(observation=f"Episode ended ({answer if answer.startswith('Early stop') else 'stop'}); "
                                   f"score {score:g}.",
                       score=score, done=True, status=status if status != RUNNING else COMPLETED, success=score >= 1.0,
                       progress=score, action_valid=valid, end_reason=reason, extra=extra)

    def close_browser(self) -> None:
        if self._browser is not None:
            self._browser.close()
        self._browser = None

    def close(self) -> None:
        self.close_browser()
        super().close()


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """Chromium's and Selenium's versions (what is installed; ``chromium --version`` once per process)."""
    import shutil
    import subprocess

    out: dict[str, str] = {}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        try:
            text = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=20).stdout
            found = re.search(r"(\d+\.[\d.]+)", text)
            out["chromium"] = found.group(1) if found else text.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import selenium

        out["selenium"] = selenium.__version__
    except ImportError:
        pass
    return out
