"""OS task: episode setup time and per-command latency per sandbox; memory of 8 concurrent episodes.

    python benchmarks/bench_os.py [--episodes 20] [--commands 30] [--no-docker]

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


def mem_used_mb() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kb = lambda key: int(info[key].split()[0])  # noqa: E731
    return (kb("MemTotal") - kb("MemAvailable")) / 1024


def bench_backend(backend: str, episodes: int, commands: int, **options: object) -> None:
    env = gym.make("AgentTuning/OS-v0", backend=backend, **options)
    setup = []
    for i in range(episodes):
        t0 = time.perf_counter()
        env.reset(options={"task": PROBLEMS[i % len(PROBLEMS)]})
        setup.append(time.perf_counter() - t0)
    print(f"\n{backend}: episode setup (reset) median {statistics.median(setup) * 1000:.0f} ms, "
          f"max {max(setup) * 1000:.0f} ms over {episodes} episodes ({len(PROBLEMS)} problems, init scripts included)")
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
    env.close()


def bench_memory(n: int = 8) -> None:
    before = mem_used_mb()
    envs = [gym.make("AgentTuning/OS-v0") for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(options={"task": PROBLEMS[i % len(PROBLEMS)]})
        env.step(prompt.bash_reply("ls / > /dev/null"))
    time.sleep(0.5)
    after = mem_used_mb()
    cgroup = 0
    for env in envs:
        for d in getattr(env.unwrapped.sandbox, "_cgroups", []):  # noqa: SLF001 - benchmark introspection
            f = d / "memory.usage_in_bytes"
            if f.exists():
                cgroup += int(f.read_text())
    print(f"\nmemory of {n} concurrent bwrap episodes: machine +{after - before:.0f} MB "
          f"({(after - before) / n:.1f} MB each); their cgroups {cgroup / 2**20:.0f} MB")
    for env in envs:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--commands", type=int, default=30)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    rootfs = bwrap.default_rootfs()
    print(f"sandbox image: {rootfs or 'not built: the bwrap sandbox uses the host /usr, /etc, /var'}")
    bench_backend("bwrap", args.episodes, args.commands)
    bench_memory()
    if args.no_docker or rootfs is None:
        print("\ndocker: skipped" + ("" if args.no_docker else " (build the image with docker/os/build.sh)"))
        return
    try:
        with docker.PrivateDockerd(rootfs) as host:
            bench_backend("docker", args.episodes, args.commands, host=host)
    except engine.SandboxError as exc:
        print(f"\ndocker: skipped ({exc})")


if __name__ == "__main__":
    main()
