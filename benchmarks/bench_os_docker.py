"""OS task, Docker sandbox: the Docker SDK against the ``docker`` command line it replaced, in one run.

    python benchmarks/bench_os_docker.py [--rounds 10] [--echoes 50] [--replay 24]

Starts a private dockerd (root, ``docker.io``) and imports the image built by ``docker/os/build.sh``
(``$AGENT_GYM_OS_ROOTFS``). Both clients drive the same daemon, image and limits, alternating
round by round so that load on the machine falls on both alike:

- setup: container created and started, the agent's login shell up to its first prompt;
- echo (shell): ``echo hi`` typed into the agent's shell, read up to the next prompt;
- echo (script): ``echo hi`` run beside the shell (upstream's ``exec_run``): exec, output, exit code;
- check: one checker run (a fresh container of the image in the agent's pid namespace);
- teardown: the container removed;
- replay: the expert's episodes of ``--replay`` problems of the test split (every sixth), 3 at a time
  through ``rollout`` as the gold-replay test plays them (setup, init scripts, the example, the
  judgement with the processes paused), timed twice per client in the order sdk, cli, cli, sdk.

The command-line client is the previous implementation's, call for call: ``docker image inspect``
and ``docker ps`` (the sweep) before ``docker run -dit``, ``docker inspect`` for pid 1 and the
writable layer, ``docker exec -it bash --login`` on a pseudo-terminal, ``docker exec``, ``docker run
--rm`` for a check, ``docker pause`` / ``unpause``, ``docker restart``, ``docker rm -f``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import time

from agent_gym.envs.os_interaction import docker, engine, pristine
from agent_gym.envs.os_interaction.engine import CAPABILITIES, CAPABILITY_NUMBERS, Script, checker_command


class CliDockerSandbox(docker.DockerSandbox):
    """The Docker sandbox as it was before the SDK: every call a ``docker`` command line."""

    def _cli(self) -> list[str]:
        return ["docker", "-H", self.host]

    def _docker(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self._cli(), *args], capture_output=True, text=True, timeout=120)

    def _launch(self) -> None:
        if self._docker("image", "inspect", "--format", "{{.Id}}", self.image).returncode != 0:
            raise engine.SandboxError(f"image {self.image} is missing")
        self._docker("ps", "-a", "--filter", "label=created_by=agent-gym-os", "--format",
                     '{{.ID}}\t{{.Label "agent-gym-os.owner"}}')  # the sweep's listing
        lim = self.limits
        run = subprocess.run(
            [*self._cli(), "run", "-d", "-i", "-t", "--network", "none", "--hostname", self.hostname,
             "--memory", f"{lim.memory_mb}m", "--memory-swap", f"{lim.memory_mb}m", "--pids-limit", str(lim.processes),
             "--ulimit", f"cpu={lim.cpu_seconds}:{lim.cpu_seconds}", "--ulimit", f"fsize={lim.file_mb << 20}",
             "--ulimit", "core=0", "--cap-drop", "MKNOD", "--cap-drop", "NET_RAW",
             "--label", "created_by=agent-gym-os", self.image, "bash"], capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise engine.SandboxError(f"docker run failed: {run.stderr.strip()[-800:]}")
        self.container = run.stdout.strip()
        self._locate_init()

    def _inspect(self, template: str) -> str:
        return self._docker("inspect", "--format", template, self.container).stdout.strip()

    def _locate_init(self) -> None:
        pid = self._inspect("{{.State.Pid}}")
        self._init_pid, self._pid_ns = 0, ""
        with contextlib.suppress(OSError, ValueError):
            self._init_pid, self._pid_ns = int(pid), os.readlink(f"/proc/{pid}/ns/pid")

    def _changed_paths(self) -> list[str]:
        if self._upper is None:
            upper = self._inspect("{{.GraphDriver.Data.UpperDir}}")
            self._upper = upper if upper.startswith("/") and os.path.isdir(upper) else ""
        return pristine.changed_paths(self._upper) if self._upper else []

    @contextlib.contextmanager
    def frozen(self):
        paused = self._docker("pause", self.container).returncode == 0
        try:
            yield
        finally:
            if paused:
                self._docker("unpause", self.container)

    def _kill_all(self) -> None:
        self._docker("restart", "-t", "0", self.container)
        self._locate_init()

    def _enter(self, argv: list[str], *, tty: bool, env: dict[str, str]) -> list[str]:
        envs = [a for k, v in env.items() if k not in ("PATH", "HOSTNAME") for a in ("-e", f"{k}={v}")]
        if not tty:
            argv = ["timeout", "-s", "KILL", str(int(self.limits.script_seconds) + 1), *argv]
        return [*self._cli(), "exec", "-i", *(["-t"] if tty else []), "-w", "/", *envs, self.container, *argv]

    def _terminal(self, argv: list[str], env: dict[str, str]) -> list[str]:
        return self._enter(argv, tty=True, env=env)

    def _run_inside(self, argv: list[str], env: dict[str, str], timeout: float) -> engine.RunResult:
        return self._run_argv(self._enter(argv, tty=False, env=env), timeout)

    def _run_pristine(self, argv: list[str], env: dict[str, str], timeout: float) -> engine.RunResult:
        lim = self.limits
        spec = {"pristine": "/", "pid": 1, "namespaces": ["uts", "ipc", "net"], "changed": self._changed_paths(),
                "capabilities": sorted(CAPABILITY_NUMBERS[c] for c in CAPABILITIES), "argv": argv, "env": env}
        return self._run_argv(
            [*self._cli(), "run", "--rm", "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
             "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable",
             "--pid", f"container:{self.container}", "--network", "none", "--memory", f"{lim.memory_mb}m",
             "--pids-limit", str(lim.processes), "--ulimit", f"cpu={lim.cpu_seconds}:{lim.cpu_seconds}",
             "--ulimit", f"fsize={lim.file_mb << 20}", "--ulimit", "core=0", "--label", "created_by=agent-gym-os",
             self.image, *checker_command(["/usr/bin/python3"], spec)], timeout)

    def _teardown(self) -> None:
        if self.container:
            self._docker("rm", "-f", self.container)
            self.container = None
        super()._teardown()  # the SDK client wedged() and image_id() may have opened


def one_round(kind: type[docker.DockerSandbox], host: str, echoes: int, times: dict[str, list[float]]) -> None:
    sb = kind(engine.Limits(), host=host)
    t0 = time.perf_counter()
    sb.start()
    sb.shell  # noqa: B018 - the login shell is part of the setup
    times["setup"].append(time.perf_counter() - t0)
    for _ in range(echoes):
        t0 = time.perf_counter()
        out = sb.execute("echo hi")
        times["echo (shell)"].append(time.perf_counter() - t0)
        assert "hi" in out, out
    for _ in range(max(echoes // 5, 1)):
        t0 = time.perf_counter()
        result = sb.run(Script("bash", "echo hi"))
        times["echo (script)"].append(time.perf_counter() - t0)
        assert result == engine.RunResult(0, "hi\n"), result
    t0 = time.perf_counter()
    result = sb.run(Script("bash", "test -f /etc/os-release && echo ok"), pristine=True)
    times["check"].append(time.perf_counter() - t0)
    assert result.output == "ok\n", result
    t0 = time.perf_counter()
    sb.close()
    times["teardown"].append(time.perf_counter() - t0)


def replay(kind: type[docker.DockerSandbox], host: str, problems: int) -> tuple[float, int]:
    """(seconds, problems solved) of the expert on ``problems`` problems with sandboxes of ``kind``."""
    from agent_gym.rollout import plan, rollout

    episodes = plan(["AgentTuning/OS-v0"])[::6][:problems]
    original = docker.DockerSandbox
    docker.DockerSandbox = kind  # what engine.make_sandbox builds for backend="docker"
    try:
        t0 = time.perf_counter()
        result = rollout(episodes, "expert", concurrency=3, progress=False,
                         env_kwargs={"backend": "docker", "host": host})
        return time.perf_counter() - t0, sum(t.success for t in result.trajectories)
    finally:
        docker.DockerSandbox = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="sandboxes per client")
    parser.add_argument("--echoes", type=int, default=50, help="shell echoes per sandbox (a fifth as many scripts)")
    parser.add_argument("--replay", type=int, default=24, help="problems in each expert replay (0: none)")
    args = parser.parse_args()
    if shutil.which("docker") is None:
        raise SystemExit("the comparison needs the docker command line: apt-get install docker.io")
    rootfs = os.environ.get("AGENT_GYM_OS_ROOTFS") or str(__import__("agent_gym.envs.os_interaction.bwrap",
                                                                     fromlist=["x"]).default_rootfs() or "")
    if not rootfs:
        raise SystemExit("build the image first: docker/os/build.sh DIR; export AGENT_GYM_OS_ROOTFS=DIR")
    clients = {"sdk": docker.DockerSandbox, "cli": CliDockerSandbox}
    times = {name: {k: [] for k in ("setup", "echo (shell)", "echo (script)", "check", "teardown")} for name in clients}
    with docker.PrivateDockerd(rootfs) as host:
        for name, kind in clients.items():  # warm-up: page cache, the daemon's first container
            one_round(kind, host, 2, {k: [] for k in times[name]})
        for _ in range(args.rounds):
            for name, kind in clients.items():
                one_round(kind, host, args.echoes, times[name])
        replays: dict[str, list[tuple[float, int]]] = {name: [] for name in clients}
        for name in ("sdk", "cli", "cli", "sdk") if args.replay else ():
            replays[name].append(replay(clients[name], host, args.replay))
    print(f"Docker sandbox, SDK vs command line: {args.rounds} sandboxes each, {args.echoes} shell echoes and "
          f"{max(args.echoes // 5, 1)} script echoes per sandbox (median ms; ratio cli / sdk)")
    print(f"{'':16}{'sdk':>10}{'cli':>10}{'ratio':>8}")
    for what in times["sdk"]:
        sdk, cli = (statistics.median(times[n][what]) * 1000 for n in ("sdk", "cli"))
        print(f"{what:16}{sdk:10.1f}{cli:10.1f}{cli / sdk:8.1f}")
    if args.replay:
        sdk, cli = (statistics.mean(s for s, _ in replays[n]) for n in ("sdk", "cli"))
        print(f"{'replay (s)':16}{sdk:10.1f}{cli:10.1f}{cli / sdk:8.1f}   expert on {args.replay} problems, 3 at a "
              f"time, mean of 2; solved: " + json.dumps({n: [k for _, k in r] for n, r in replays.items()}))


if __name__ == "__main__":
    main()
