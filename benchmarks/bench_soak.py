"""The soak of issue 16: 1000 episodes over every env in one process, and what the process holds.

    python benchmarks/bench_soak.py            # the full 1000 (about 10 minutes on 2 busy cores)
    python benchmarks/bench_soak.py --short    # the 184 of the CI test (tests/reliability/test_soak.py)

Runs ``tests/reliability/_faults.py soak`` in a child process (the code the test runs), prints each
sample (open descriptors, threads, live child processes, the Python process's resident memory and its
engines'), the growth from the end of the first round (every engine up) to the end, the episodes'
statuses per env, and then whether any engine process (java, mariadbd, chromium, chromedriver, bwrap)
outlived the process. Needs the test data (``AGENT_GYM_DATA``) and the engines the tests use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "reliability" / "_faults.py"
KEYS = ("fds", "threads", "children", "rss_mib", "children_rss_mib")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the CI test's 184 episodes instead of 1000")
    args = parser.parse_args()
    proc = subprocess.Popen([sys.executable, "-W", "ignore", str(RUNNER), "soak", "short" if args.short else "full"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    samples, errors, seen, done = [], [], {}, None
    for line in proc.stdout:
        record = json.loads(line)
        if "usage" in record:
            u = record["usage"]
            samples.append(u)
            seen.update(record["engines"])
            print(f"{u['seconds']:7.1f}s {u['episodes']:5d} ep  fds {u['fds']:4d}  threads {u['threads']:3d}  "
                  f"children {u['children']:3d}  rss {u['rss_mib']:7.1f} MiB  engines rss "
                  f"{u['children_rss_mib']:7.1f} MiB", flush=True)
        elif "episode" in record:
            errors.append(record["episode"])
        else:
            done = record["done"]
    proc.wait()
    if done is None:
        sys.exit(f"the soak process exited with {proc.returncode} before the end")
    base = next(s for s in samples if s["episodes"] >= len(done["statuses"]))
    last = samples[-1]
    print(f"\n{last['episodes']} episodes in {done['seconds']:.0f} s; growth from episode {base['episodes']} "
          f"(every engine up) to the end:")
    print("  " + "  ".join(f"{k} {last[k] - base[k]:+.1f}" for k in KEYS))
    print("  peak: " + "  ".join(f"{k} {max(s[k] for s in samples):.1f}" for k in KEYS))
    for env_id, statuses in done["statuses"].items():
        print(f"  {env_id:32s} {statuses}")
    for e in errors[:10]:
        print(f"  error: {e['env_id']} {e['task']}: {e['error'][-200:]}")
    after = done["after_close"]
    print(f"after closing the envs: children {after['children']}, engines {done['engines_after_close'] or 'none'}")
    time.sleep(2)
    left = [pid for pid in map(int, seen) if Path(f"/proc/{pid}").exists()
            and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    print(f"engine processes seen: {len(seen)} ({', '.join(sorted(set(seen.values())))}); alive after exit: {left or 'none'}")


if __name__ == "__main__":
    main()
