"""MiniWoB++: reset / step latency of AgentTuning/MiniWoB-v0 against miniwob's own gymnasium env, and
the memory (PSS of every browser process) of 1 and of 8 concurrent envs.

    python benchmarks/bench_miniwob.py [--episodes 20] [--memory-only]

Ours: one reset = start an episode with a seed + read utterance and HTML; one step = one
``clickxpath`` on the text field (a real Selenium click: 3 WebDriver round trips; also measured with
computergym's 250 ms pointer-move wait, ``pointer_move_ms=250``). Raw: ``miniwob/enter-text-v1`` reset(seed) and a CLICK_ELEMENT step
(its observation includes a screenshot and the DOM tree; ours the HTML). Printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
import time

import gymnasium as gym

import agent_gym
from agent_gym.envs.miniwob.engine import UPSTREAM_POINTER_MOVE_MS

MEMORY = textwrap.dedent("""
    import sys, time, gymnasium as gym, agent_gym
    gym.register_envs(agent_gym)
    envs = [gym.make("AgentTuning/MiniWoB-v0").unwrapped for _ in range(int(sys.argv[1]))]
    for i, env in enumerate(envs):
        env.reset(options={"task": ["enter-text", "click-dialog", "login-user", "choose-list"][i % 4] + f"/{i}"})
    time.sleep(1)
    pss = 0
    for pid in envs[0]._page.browser.pids():
        try:
            pss += sum(int(l.split()[1]) for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:"))
        except OSError:
            pass
    print(pss // 1024, len(envs[0]._page.browser.pids()))
    for env in envs:
        env.close()
""")


def timed(fn, n):
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


def latency(episodes: int) -> None:
    import os

    import miniwob  # noqa: F401 - registers miniwob/*

    from agent_gym.browser import find_chromium
    from agent_gym.envs.miniwob import engine

    # miniwob's own env must not ask Selenium Manager (the network) for a browser
    os.environ["MINIWOB_CHROME_BINARY"], os.environ["MINIWOB_CHROMEDRIVER"] = find_chromium()
    os.environ["SE_AVOID_STATS"] = "true"

    gym.register_envs(agent_gym)
    ours = gym.make("AgentTuning/MiniWoB-v0").unwrapped
    ours.reset(options={"task": "enter-text/0"})
    raw = gym.make("miniwob/enter-text-v1")
    raw.reset(seed=0)
    try:
        ours_reset = timed(lambda i: ours.reset(options={"task": f"enter-text/{i % 10}"}), episodes)
        raw_reset = timed(lambda i: raw.reset(seed=i % 10), episodes)

        def ours_step(i):
            ours.reset(options={"task": f"enter-text/{i % 10}"})
            t = time.perf_counter()
            ours.step('clickxpath //*[@id="tt"]')
            return time.perf_counter() - t

        def raw_step(i):
            obs, _ = raw.reset(seed=i % 10)
            ref = next(e["ref"] for e in obs["dom_elements"] if e["id"] == "tt")
            t = time.perf_counter()
            raw.step(raw.unwrapped.create_action("CLICK_ELEMENT", ref=ref))
            return time.perf_counter() - t

        o_step = statistics.median(ours_step(i) for i in range(episodes)) * 1000
        r_step = statistics.median(raw_step(i) for i in range(episodes)) * 1000
        default, ours._page.pointer_move_ms = ours._page.pointer_move_ms, UPSTREAM_POINTER_MOVE_MS
        try:  # the env option pointer_move_ms=250 (computergym's wait) on the same page
            o_wait = statistics.median(ours_step(i) for i in range(episodes)) * 1000
        finally:
            ours._page.pointer_move_ms = default
        print(f"reset  ours {ours_reset:7.1f} ms   raw miniwob {raw_reset:7.1f} ms   ratio {ours_reset / raw_reset:.2f}x")
        print(f"step   ours {o_step:7.1f} ms   raw miniwob {r_step:7.1f} ms   ratio {o_step / r_step:.2f}x"
              f"   (default pointer_move_ms={default}; raw miniwob clicks in JavaScript)")
        print(f"step   ours {o_wait:7.1f} ms   raw miniwob {r_step:7.1f} ms   ratio {o_wait / r_step:.2f}x"
              f"   (pointer_move_ms={UPSTREAM_POINTER_MOVE_MS}: computergym's wait before the same events)")
    finally:
        ours.close()
        raw.close()


def memory() -> None:
    for n in (1, 8):
        out = subprocess.run([sys.executable, "-c", MEMORY, str(n)], capture_output=True, text=True, timeout=300)
        pss, procs = out.stdout.split()
        print(f"memory {n} env(s): {pss} MB PSS in {procs} browser processes (upstream: about {430 * n} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    if not args.memory_only:
        latency(args.episodes)
    memory()


if __name__ == "__main__":
    main()
