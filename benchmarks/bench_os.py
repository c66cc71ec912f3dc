"""OS task: episode setup time and per-command latency per sandbox; memory of 8 concurrent episodes.

    python benchmarks/bench_os.py [--episodes 20] [--commands 30] [--no-docker]

Stall = a sandbox stopped from outside (SIGSTOP of its init or of the agent's shell): the time the
step takes to end as an error, and the next episode's score.
Checker = one script run beside the shell with the agent's tools (upstream's way) and as our
checker (the image's tools), and one whole judgement of 4/Q19-0 (the example and integer-match.py).
Setup = ``env.reset`` (a fresh sandbox, the agent's login shell, the problem's init scripts).
Per-command latency = one ``Act: bash`` reply through ``env.step`` (parse, type into the shell,
read up to the prompt). Memory: 8 episodes open at once on the bwrap sandbox, each after one
command, measured as the growth of the machine's used memory (processes, page cache of the
private tmpfs layers) and as the sum of the sandboxes' cgroup memory. The Docker rows start a
private dockerd (root, ``docker.io``) and import the image built by ``docker/os/build.sh``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import gymnasium as gym

import agent_gym
from agent_gym.envs.os_interaction import bwrap, docker, engine, prompt

gym.register_envs(agent_gym)
PROBLEMS = ["1/stock-0", "2/environment-2", "4/Q19-0", "4/N41-0", "5/new-0", "6/new-2", "7/bootstrap-2", "7/bootstrap-10"]
COMMANDS = {"echo hi": "echo hi", "ls -l /usr/bin | wc -l": "ls -l /usr/bin | wc -l", "cd + variable": "cd /tmp; X=1"}


def pss_mb(pid: str) -> float:
    """Proportional set size: shared pages (bash, libc) split between the processes that map them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_backend(backend: str, episodes: int, commands: int, **options: object) -> None:
    env = gym.make("AgentTuning/OS-v0", backend=backend, **options)
    setup = []
    for i in range(episodes):
        t0 = time.perf_counter()
        env.reset(options={"task": PROBLEMS[i % len(PROBLEMS)]})
        setup.append(time.perf_counter() - t0)
    print(f"\n{backend}: episode setup (reset) median {statistics.median(setup) * 1000:.0f} ms, "
          f"max {max(setup) * 1000:.0f} ms over {episodes} episodes ({len(PROBLEMS)} problems, init scripts included)")
    bare = []
    for _ in range(min(episodes, 10)):
        t0 = time.perf_counter()
        sandbox = engine.make_sandbox(backend, **options).start()
        sandbox.shell  # noqa: B018 - the login shell is part of the setup
        bare.append(time.perf_counter() - t0)
        sandbox.close()
    print(f"  bare sandbox + login shell median {statistics.median(bare) * 1000:.0f} ms")
    for label, code in COMMANDS.items():
        env.reset(options={"task": "4/Q19-0"})
        times = []
        for i in range(commands):
            if i and i % 7 == 0:  # stay under the 8-round limit
                env.reset(options={"task": "4/Q19-0"})
            t0 = time.perf_counter()
            env.step(prompt.bash_reply(code))
            times.append(time.perf_counter() - t0)
        print(f"  per command {label:24} median {statistics.median(times) * 1000:.1f} ms, "
              f"p90 {sorted(times)[int(0.9 * len(times)) - 1] * 1000:.1f} ms")
    bench_checker(env, min(commands, 10))
    env.close()


def bench_checker(env: gym.Env, n: int) -> None:
    """A script run beside the shell as upstream runs checks (the agent's tools) and as our checker
    runs them (the image's tools, :mod:`agent_gym.envs.os_interaction.pristine`); a whole judgement."""
    env.reset(options={"task": "4/Q19-0"})
    sandbox = env.unwrapped.sandbox
    script = engine.Script("bash", "true")
    rows = {}
    for label, pristine in (("script, agent's tools", False), ("script as checker", True)):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            sandbox.run(script, pristine=pristine)
            times.append(time.perf_counter() - t0)
        rows[label] = statistics.median(times)
    times = []
    for _ in range(max(n // 2, 1)):
        t0 = time.perf_counter()
        assert env.unwrapped.judge("3")
        times.append(time.perf_counter() - t0)
    rows["judge 4/Q19-0 (2 checks)"] = statistics.median(times)
    for label, value in rows.items():
        print(f"  {label:32} median {value * 1000:.0f} ms")


def bench_memory(n: int = 8) -> None:
    envs = [gym.make("AgentTuning/OS-v0") for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(options={"task": PROBLEMS[i % len(PROBLEMS)]})
        env.step(prompt.bash_reply("ls / > /dev/null"))
    time.sleep(0.5)
    charged = pss = 0.0
    processes = 0
    for env in envs:
        for d in getattr(env.unwrapped.sandbox, "_cgroups", []):  # noqa: SLF001 - benchmark introspection
            if (d / "memory.usage_in_bytes").exists():  # cgroup v1; v2 has memory.current
                charged += int((d / "memory.usage_in_bytes").read_text()) / 2**20
            elif (d / "memory.current").exists():
                charged += int((d / "memory.current").read_text()) / 2**20
            if "memory" in d.parts or (d / "memory.current").exists():
                pids = (d / "cgroup.procs").read_text().split()
                processes += len(pids)
                pss += sum(pss_mb(p) for p in pids)
    print(f"\nmemory of {n} concurrent bwrap episodes: {pss:.0f} MB PSS over their {processes} processes "
          f"({pss / n:.1f} MB each), {charged:.0f} MB charged to their memory cgroups "
          f"(processes + the private writable layers) ({charged / n:.1f} MB each)")
    for env in envs:
        env.close()


def bench_stall(backend: str, **options: object) -> None:
    """A sandbox stopped from outside (SIGSTOP of its init, then of the agent's shell): how long the
    step takes to end as `error`, and whether the next episode (stopped processes left as they are)
    scores. Also the bare start without the image (host copies, secrets masked) beside the image's."""
    import os
    import signal

    for which in ("init", "shell"):
        env = gym.make("AgentTuning/OS-v0", backend=backend, limits=engine.Limits(command_seconds=10), **options)
        env.reset(options={"task": "4/Q19-0"})
        sb = env.unwrapped.sandbox
        sb.execute("true")
        init = sb.init_pid if backend == "bwrap" else sb._init_pid  # noqa: SLF001 - benchmark introspection
        if which == "init":
            target = init
        elif backend == "bwrap":
            target = int(Path(f"/proc/{sb.shell.proc.pid}/task/{sb.shell.proc.pid}/children").read_text().split()[0])
        else:
            target = sb._find_shell_pid()  # noqa: SLF001
        os.kill(target, signal.SIGSTOP)
        time.sleep(0.1)
        t0 = time.perf_counter()
        *_, info = env.step(prompt.bash_reply("echo after"))
        took = time.perf_counter() - t0
        env.reset(options={"task": "4/Q19-0"})
        *_, after = env.step(prompt.answer_reply("3"))
        print(f"  {which} stopped: step ended in {took * 1000:.0f} ms as {info['status']} (limit 10 s); "
              f"next episode {after['status']}, score {after['score']:.0f}")
        try:
            os.kill(target, signal.SIGCONT)
        except ProcessLookupError:
            pass
        env.close()
    if backend == "bwrap":
        for label, root in (("image", None), ("host copies, secrets masked", "/")):
            bare = []
            for _ in range(10):
                t0 = time.perf_counter()
                with bwrap.BwrapSandbox(root=root) as sandbox:
                    sandbox.shell  # noqa: B018
                    bare.append(time.perf_counter() - t0)
            print(f"  bare sandbox + login shell on {label}: median {statistics.median(bare) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--commands", type=int, default=30)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    rootfs = bwrap.default_rootfs()
    print(f"sandbox image: {rootfs or 'not built: the bwrap sandbox uses the host /usr, /etc, /var'}")
    bench_backend("bwrap", args.episodes, args.commands)
    bench_stall("bwrap")
    bench_memory()
    if args.no_docker or rootfs is None:
        print("\ndocker: skipped" + ("" if args.no_docker else " (build the image with docker/os/build.sh)"))
        return
    try:
        with docker.PrivateDockerd(rootfs) as host:
            bench_backend("docker", args.episodes, args.commands, host=host)
            bench_stall("docker", host=host)
    except engine.SandboxError as exc:
        print(f"\ndocker: skipped ({exc})")


if __name__ == "__main__":
    main()
