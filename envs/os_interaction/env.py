"""``AgentTuning/OS-v0``: AgentBench's OS-interaction task in a fresh sandbox per episode.

One episode = one problem: its init scripts run in a new sandbox, the agent replies with
``Act: bash`` (a bash block, typed into one persistent shell), ``Act: answer(...)`` or
``Act: finish``; at most 8 replies. Then the problem's checker decides, as AgentBench does: a
string match, or check scripts run in the same sandbox (the answer is ``$1``/``argv[1]``, a
``null`` entry runs the example solution and passes its output on; all must exit 0). Score 1 on
success, else 0; the paper's metric is the accuracy over the 144 problems.

Upstream's handling kept: a reply with no recognised action ends the episode and the problem is
judged with no answer (state-checking problems can still pass); so is an episode that used its 8
rounds. Deliberate differences (see docs/os.md): a multi-line bash block runs as one pasted
unit and returns all of its output (upstream reads until the first prompt or a 5 s silence and
drops the first 8 bytes of every later chunk); each command has a wall-clock limit, after which
it is interrupted with Ctrl-C; sandboxes have no network; check scripts run with the image's own
tools on the agent's files (:mod:`.pristine`), so replacing ``python3`` cannot pass a check.

Splits: ``test`` (the paper's 144, upstream's ``std``), ``dev`` (AgentBench.old's 26), ``train``
(AgentBench main's 1000); ``tasks_file=`` reads a problems file in upstream's format.
"""

from __future__ import annotations

import hashlib
import shlex
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_gym.core import ANSWERED, INVALID_ACTION, INVALID_ACTION_END, RUNNING, Begin, Outcome, TextEnv
from agent_gym.envs.os_interaction import data, engine, prompt

NO_ACTION = ("Invalid action: the reply has no \"Act: bash\", \"Act: finish\" or \"Act: answer(...)\" line. "
             "As in AgentBench, the episode ends here and the problem is judged as it stands.")


class OSEnv(TextEnv):
    task_name = "os"
    splits = ("test", "dev", "train")
    split_aliases = {"std": "test"}  # AgentBench.old's name for the paper's 144 problems
    max_turns = 8
    # AgentBench.old's harness: no system message (FastChat's llama-2 template with an empty one), greedy, 128 tokens
    system_prompt = ""
    decoding = {"max_new_tokens": 128, "temperature": 0.0}
    # The paper ran Docker; neither backend changes the protocol, so no option differs from the paper's.
    paper_options: dict[str, Any] = {}

    def __init__(self, split: str | None = None, render_mode: str | None = None, backend: str = "bwrap",
                 limits: engine.Limits | None = None, tty_output: bool = True, tasks_file: str | Path | None = None,
                 root: str | None = None, cgroups: bool = True, image: str | None = None, host: str | None = None):
        """``backend``: ``bwrap`` or ``docker``; ``tty_output=False`` strips terminal escapes and the
        prompt from observations (AgentBench shows them raw); ``tasks_file``: a problems file in
        upstream's JSON format (script paths relative to its folder). bwrap: ``root`` (the image
        folder, default the one ``docker/os/build.sh`` made, ``"/"`` for the host's), ``cgroups``;
        docker: ``image`` (default ``agent-gym/os:latest``), ``host`` (the daemon, default ``DOCKER_HOST``)."""
        super().__init__(split, render_mode, tasks_file=tasks_file)
        if backend not in ("bwrap", "docker"):
            raise ValueError(f"unknown sandbox backend {backend!r}; choose bwrap or docker")
        self.backend = backend
        self.limits = limits or engine.Limits()
        self.tty_output = tty_output
        if backend == "bwrap":
            self.sandbox_options: dict[str, Any] = {"root": root, "cgroups": cgroups}
        else:
            self.sandbox_options = {"host": host, **({"image": image} if image else {})}
        self.sandbox: engine.Sandbox | None = None
        self._prompts: dict[str, Any] | None = None
        self._engine_info: dict[str, str] | None = None

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Problem]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Problem]:
        """A problems file in upstream's format (``data/os_interaction/data/*.json``); ``file`` script
        paths resolve against the file's folder; ids ``"<file stem>-<index>"``."""
        return data.load_file(path)

    @classmethod
    def engine_status(cls) -> str:
        """Whether the bwrap sandbox can run and which mode it is in: on the image ``docker/os/build.sh``
        built, or (without it) on copies of the host's own folders with its secrets masked."""
        from agent_gym.envs.os_interaction.bwrap import HOST_MODE, BwrapSandbox, default_rootfs

        reason = BwrapSandbox.unavailable()
        if reason:
            return f"bwrap sandbox unavailable: {reason}"
        if default_rootfs() is None:
            return f"bwrap ready, {HOST_MODE}; build the image with docker/os/build.sh"
        return f"bwrap ready, OS image built ({default_rootfs()})"

    def engine_info(self) -> dict[str, str]:
        """``{"sandbox": backend, "os_image": ...}``: for bwrap the image folder and the digest of its
        package list (``var/lib/dpkg/status``), or ``host:/`` without one; for Docker the image id."""
        if self._engine_info is None:
            self._engine_info = {"sandbox": self.backend, "os_image": self._image_id()}
        return self._engine_info

    def _image_id(self) -> str:
        if self.backend == "docker":
            from agent_gym.envs.os_interaction.docker import DEFAULT_IMAGE, DockerSandbox

            sandbox = DockerSandbox(image=self.sandbox_options.get("image", DEFAULT_IMAGE),
                                    host=self.sandbox_options.get("host"))
            try:
                return sandbox.image_id() or f"{sandbox.image} (not found)"
            finally:
                sandbox.close()  # its client's connections
        from agent_gym.envs.os_interaction.bwrap import default_rootfs

        root = self.sandbox_options.get("root") or default_rootfs()
        if root is None or str(root) == "/":
            return "host:/ (no image built: copies of the host's /usr, /etc, /var, its secrets masked)"
        status = Path(root, "var/lib/dpkg/status")
        digest = hashlib.sha256(status.read_bytes()).hexdigest()[:16] if status.is_file() else "no dpkg status"
        return f"{root} (dpkg {digest})"

    def options(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def preflight(self) -> None:
        """Docker: raise :class:`engine.SandboxError` naming the daemon and ``DOCKER_HOST`` when the
        daemon is down or unreachable, or the image is missing (one call to the daemon)."""
        if self.backend == "docker":
            from agent_gym.envs.os_interaction.docker import DEFAULT_IMAGE, DockerSandbox

            probe = DockerSandbox(image=self.sandbox_options.get("image", DEFAULT_IMAGE),
                                  host=self.sandbox_options.get("host"))
            try:
                reason = probe.unavailable()
            finally:
                probe.close()
            if reason:
                raise engine.SandboxError(f"the OS task's Docker sandbox cannot start: {reason}")

    def _begin(self, task: data.Problem) -> Begin:
        self._prompts = self._prompts or data.prompts()
        self._close_sandbox()
        self.sandbox = engine.make_sandbox(self.backend, self.limits, **self.sandbox_options).start()
        try:
            self.sandbox.shell  # upstream opens the agent's shell with the container, before the init scripts
            for script in task.init:
                self.sandbox.run(script)
            if task.start is not None:  # typed into the agent's shell; its output is not shown (as upstream)
                self.sandbox.execute(task.start.code)
        except BaseException:
            self._close_sandbox()
            raise
        return Begin(observation=prompt.first_observation(task.description),
                     prompt=prompt.prompt_messages(self._prompts),
                     extra={"backend": self.backend, "kind": task.kind})

    def _act(self, action: str) -> Outcome:
        parsed = prompt.parse_action(action)
        if parsed.kind is None:
            return self._judged(None, NO_ACTION, INVALID_ACTION, valid=False, end_reason=INVALID_ACTION_END)
        if parsed.kind == "commit":
            return self._judged(parsed.content, "", RUNNING, end_reason=ANSWERED)
        output = self.sandbox.execute(parsed.content or "")
        if not self.tty_output:
            output = prompt.plain(output)
        observation = prompt.observation(output)
        if self._turn >= self.max_turns:  # out of rounds: upstream judges with no answer (the core says round_limit)
            return self._judged(None, observation, RUNNING, done=False)
        return Outcome(observation=observation)

    def _judged(self, answer: str | None, observation: str, status: str, valid: bool = True,
                done: bool = True, end_reason: str | None = None) -> Outcome:
        success = self.judge(answer)
        self._close_sandbox()
        verdict = f"The answer is judged {'correct' if success else 'wrong'}." if done else ""
        return Outcome(observation=(observation + "\n\n" + verdict).strip(), score=float(success), success=success,
                       done=done, status=status, action_valid=valid, end_reason=end_reason,
                       extra={"answer": answer})

    def judge(self, answer: str | None) -> bool:
        """AgentBench's ``_judge`` on the current sandbox; any fault counts as a failure.

        Unlike upstream, the check scripts (and the example run to compare with) run as a checker:
        the image's own tools on the agent's files, with the agent's processes stopped meanwhile
        (see :mod:`.pristine`), so replacing ``python3`` or ``awk`` cannot pass a check."""
        task: data.Problem = self.task
        if task.match is not None:
            return prompt.match(answer, task.match)
        params = [str(answer)]
        try:
            with self.sandbox.frozen():
                for script in task.check:
                    script = script or task.example
                    if script is None:
                        return False
                    result = self.sandbox.run(script, *params, pristine=True)
                    if result.exit_code != 0:
                        return False
                    params.append(result.output)
        except engine.CheckerError:
            raise  # this machine cannot run checks: an error to fix (and retry), not a wrong answer
        except (engine.SandboxError, OSError, ValueError):
            return False
        return True

    def expert_replies(self, task: data.Problem) -> list[str] | None:
        """The example solution typed into the shell, then its output given as the answer.

        The output is computed now, as the checker computes it: in this episode's sandbox for
        problems that compare answers (their init data may be random), in a twin sandbox for
        problems that check the final state (so that only the agent's own reply changes it).
        """
        if task.match is not None:
            answer = task.match.get("answer")
            return None if answer is None else [prompt.answer_reply(answer)]
        if task.example is None or task is not self.task or self.sandbox is None:
            return None
        if task.kind == "state":
            with engine.make_sandbox(self.backend, self.limits, **self.sandbox_options) as twin:
                for script in task.init:
                    twin.run(script)
                if task.start is not None:
                    twin.execute(task.start.code)
                expected = twin.run(task.example).output.strip()
        else:
            expected = self.sandbox.run(task.example).output.strip()
        code = task.example.code
        if task.example.language == "python":
            code = f"python3 -c {shlex.quote(code)}"
        final = prompt.answer_reply(expected) if expected else prompt.finish_reply()
        return [prompt.bash_reply(code, "I will run the solution."), final]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """Upstream's ``overall.acc`` (as ``score``) and the accuracy per problem file."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        by_file: dict[str, list[float]] = defaultdict(list)
        for t in trajectories:
            by_file[t.task_id.rsplit("-", 1)[0]].append(t.score)
        out.update({f"acc/{name}": sum(v) / len(v) for name, v in sorted(by_file.items())})
        return out

    def _close_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None

    def close(self) -> None:
        self._close_sandbox()
        super().close()
