"""The ``agent-gym`` command: list, data, run, report, export, serve."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from agent_gym import data as data_layer

# Exit statuses of `agent-gym` (documented in --help and the README).
EXIT_OK = 0            # done; every episode of a run ended without error
EXIT_ERRORS = 1        # a run finished but some episodes ended in error (resume plays them again); a fetch failed
EXIT_SETUP = 2         # bad input or a setup that cannot work (unknown env / task / split / option, policy not
                       # buildable: model missing, server unreachable); nothing was played
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C; the finished episodes are kept

EXIT_CODES_HELP = """exit status:
  0    done; every episode of a run ended without error
  1    a run finished with episodes in error (the count and first cause are printed; resuming
       with the same -o plays them again), or a download failed
  2    bad input or a setup that cannot work (unknown env, task, split, option or backend; a
       policy that cannot be built: model missing, server unreachable); nothing was played
  130  stopped by Ctrl-C; finished episodes are kept, resume with the same -o"""


def _cmd_list(args: argparse.Namespace) -> int:
    from agent_gym.registration import entries
    from agent_gym.rollout import env_class

    rows = []
    for e in entries():
        try:
            cls = env_class(e.id)
        except ImportError as exc:  # an extra not installed: the env's module imports its engine
            missing = getattr(exc, "name", None) or str(exc)
            rows.append({"id": e.id, "suite": e.suite, "max_steps": e.max_episode_steps, "dataset": e.dataset,
                         "data": "-", "data_state": None, "tasks": {},
                         "engine": f"not installed: no module {missing!r} (pip install 'agent-gym[all]', or the "
                                   f"env's extra in its docs page)"})
            continue
        present = data_layer.dataset(e.dataset).is_present() if e.dataset else True
        # "modified": an edited copy (import --no-verify, or a file unlike its sha256): scores are not the paper's data
        state = data_layer.dataset_state(e.dataset)["state"] if present and e.dataset else None
        counts = {}
        # every split is tried even when the dataset is missing: some tasks ship in their engine's package
        # (ScienceWorld's games) and the dataset holds only extras such as few-shot prompts
        for sp in cls.splits:
            try:
                counts[sp] = len(cls.load_tasks(sp))
            except data_layer.DataMissingError:
                counts[sp] = "no data"
            except Exception as exc:  # noqa: BLE001 - the listing must not fail on one env
                counts[sp] = f"error: {type(exc).__name__}"
        try:
            engine = cls.engine_status()
        except Exception as exc:  # noqa: BLE001
            engine = f"error: {exc}"
        rows.append({"id": e.id, "suite": e.suite, "max_steps": e.max_episode_steps, "dataset": e.dataset,
                     "data": ("modified" if state == "modified" else "present") if present else "missing",
                     "data_state": state, "tasks": counts,
                     "engine": engine})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # the engine's message last and whole: it says what to install or build, and in which mode the engine runs
    print(f"{'id':26} {'suite':9} {'steps':>5}  {'data':8} {'tasks per split':36} engine")
    for r in rows:
        tasks = ", ".join(f"{k}: {v}" for k, v in r["tasks"].items())
        if all(v == "no data" for v in r["tasks"].values()):
            tasks = f"no data: agent-gym data fetch {r['dataset']}"
        print(f"{r['id']:26} {r['suite']:9} {str(r['max_steps']):>5}  {r['data']:8} {tasks:36} {r['engine']}")
    return 0


def _file_errors(handler: Any) -> Any:
    """A command whose inputs and outputs are paths: an OSError (an output that is a folder, an input
    that is a folder, a port in use, no permission) is bad input, said in one line with exit 2,
    never a traceback."""
    import functools

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except FileNotFoundError:
            raise  # _main names the missing file
        except OSError as exc:
            name = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
            where = f" ({name})" if name else ""
            print(f"agent-gym: error: {exc.strerror or exc}{where}: check the paths (and --port) you passed",
                  file=sys.stderr)
            return EXIT_SETUP
    return run


def _output_file(path: str | Path) -> Path:
    """``-o FILE`` of filter / export / mix, checked before any work: a folder there is refused."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"-o {path} is a folder; pass a file path such as {out / 'out.jsonl'}")
    return out


def _score_in_range(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:  # scores are 0..1 in every env; 2 or -1 would keep nothing or everything
        raise ValueError(f"{name} is a score from 0 to 1, got {value}")
    return value


@_file_errors
def _cmd_data_filter(args: argparse.Namespace) -> int:
    from agent_gym.instruct import counts_table, filter_trajectories
    from agent_gym.metrics import load_runs
    from agent_gym.trajectory import dumps

    out = _output_file(args.output)
    stats: dict[str, Any] = {}
    trajs = [t for ts in load_runs(args.files, stats).values() for t in ts]
    _warn_damaged(stats["damaged"])
    thresholds = {}
    for item in args.threshold:
        env, eq, value = item.rpartition("=")
        if not eq:
            raise ValueError(f"--threshold takes ENV=SCORE, got {item!r}")
        from agent_gym.registration import resolve_ids

        try:
            thresholds[resolve_ids([env])[0]] = _score_in_range(f"--threshold {item}", float(value))
        except ValueError as exc:
            raise ValueError(f"--threshold takes ENV=SCORE with SCORE from 0 to 1, got {item!r} ({exc})") from None
    if args.min_score is not None:
        _score_in_range("--min-score", args.min_score)
    res = filter_trajectories(trajs, min_score=args.min_score, thresholds=thresholds,
                              decontaminate=not args.no_decontaminate, ngram=args.ngram)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for t in res.kept:
            fh.write(dumps(t))
    tmp.replace(out)
    print(counts_table(res))
    for reason in res.reasons:
        print(f"agent-gym: in a test split: {reason}", file=sys.stderr)
    print(f"kept {len(res.kept)} of {len(trajs)} trajectories -> {out} (trajectory records: "
          f"agent-gym export {out} --format messages -o FILE)", file=sys.stderr)
    return 0


@_file_errors
def _cmd_data_mix(args: argparse.Namespace) -> int:
    from agent_gym.instruct import mix, read_records, write_records

    _output_file(args.output)
    agent = read_records(args.agent)
    general = read_records(args.general)
    fmt = "messages" if agent and isinstance(agent[0], dict) and "messages" in agent[0] else "agentinstruct"
    mixed, used = mix(agent, general, args.eta, fmt, seed=args.seed)
    write_records(mixed, args.output, "parquet" if str(args.output).endswith(".parquet") else fmt)
    short = " (all there were: fewer than the share asks)" if used < round(len(agent) * (1 - args.eta) / args.eta) else ""
    print(f"{len(agent)} agent + {used} general records{short}, agent share {len(agent) / max(1, len(mixed)):.3f} "
          f"-> {args.output}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_cmd == "filter":
        return _cmd_data_filter(args)
    if args.data_cmd == "mix":
        return _cmd_data_mix(args)
    if args.data_cmd == "path":
        print(data_layer.data_dir_path())
    elif args.data_cmd == "list":
        for ds in data_layer.datasets():
            state = data_layer.dataset_state(ds.name)["state"] if ds.is_present() else "missing"
            print(f"{ds.name:20} {state:10} {ds.description}")
    elif args.data_cmd == "fetch":
        from tqdm.auto import tqdm

        names = args.names or [ds.name for ds in data_layer.datasets()]
        for name in names:
            bars: dict[str, Any] = {}

            def progress(path: str, done: int, total: int | None) -> None:
                bar = bars.get(path) or bars.setdefault(path, tqdm(total=total, unit="B", unit_scale=True, desc=path))
                bar.update(done - bar.n)

            try:
                where = data_layer.fetch(name, force=args.force, progress=progress)
            except (data_layer.FetchError, data_layer.ChecksumError) as exc:
                for bar in bars.values():
                    bar.leave = False
                    bar.close()
                print(f"agent-gym: error: {name}: {exc}", file=sys.stderr)
                return 1
            finally:
                for bar in bars.values():
                    bar.close()
            print(f"{name}: ok ({where})")
    elif args.data_cmd == "import":
        result = data_layer.import_local(Path(args.path), link=args.link, verify=not args.no_verify,
                                        modified=args.no_verify)
        for name, state in result.items():
            print(f"{name:20} {state}")
        print(f"data directory: {data_layer.data_dir_path()}")
    return 0


def _policy_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key in ("backend", "model", "url", "temperature", "max_new_tokens", "chat_template"):
        value = getattr(args, key)
        if value is not None:
            opts[key] = value
    opts["seed"] = args.seed
    for item in args.policy_arg:
        k, _, v = item.partition("=")
        opts[k.replace("-", "_")] = _parse_value(v)
    return opts


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def _cmd_run(args: argparse.Namespace) -> int:
    from agent_gym.metrics import format_table, report_rows
    from agent_gym.registration import resolve_ids
    from agent_gym.rollout import check_env_kwargs, plan, rollout

    # every check that can fail on bad input runs here, before any env, model or episode
    env_ids = resolve_ids(args.envs)
    env_kwargs = {k.replace("-", "_"): _parse_value(v) for k, _, v in (a.partition("=") for a in args.env_arg)}
    for env_id in env_ids:
        check_env_kwargs(env_id, env_kwargs)
    if args.backend is not None:
        from agent_gym.policies.backend import BACKENDS

        if args.backend not in BACKENDS:
            raise ValueError(f"unknown backend {args.backend!r}; known: {', '.join(BACKENDS)}")
    tasks_file = env_kwargs.get("tasks_file")
    if tasks_file is not None and args.split is not None:
        raise ValueError("--split and --env-arg tasks_file=... exclude each other (a tasks_file is its own split)")
    episodes = plan(env_ids, episodes=args.episodes, split=args.split, repeats=args.repeats, seed=args.seed,
                    sample=args.sample, tasks=args.task or None, tasks_file=tasks_file)
    output = Path(args.output) if args.output else Path("runs") / time.strftime(f"run-%Y%m%d-%H%M%S-{os.getpid()}.jsonl", time.gmtime())
    resume = _resume_command(args.argv, output)
    if not args.output:
        print(f"agent-gym: recording to {output}; to resume this run: {resume}", file=sys.stderr)
    result = rollout(episodes, args.policy, output=output, concurrency=args.concurrency,
                     policy_options=_policy_options(args), env_kwargs=env_kwargs, progress=not args.no_progress,
                     retry_errors=not args.no_retry_errors, **_worker_options(args))
    if result.interrupted:
        print(f"agent-gym: stopped: {len(result.trajectories)} episodes finished and kept in {output}, "
              f"{result.abandoned} cancelled; to resume: {resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    retried = f", {result.retried} of them errors played again" if result.retried else ""
    print(f"{len(result.trajectories)} episodes in {result.seconds:.1f}s{retried} "
          f"({result.skipped} already in {output}); trajectories: {output}", file=sys.stderr)
    print(format_table(report_rows([output])))
    errors = result.errors
    if errors:
        first = (errors[0].error or "").strip().splitlines()
        kept = f" ({len(result.kept_errors)} kept from before by --no-retry-errors)" if result.kept_errors else ""
        print(f"agent-gym: {len(errors)} episodes ended in error{kept}; first: {first[-1] if first else '?'}; "
              f"fix the cause and resume (errors are played again): {resume}", file=sys.stderr)
        return EXIT_ERRORS
    return EXIT_OK


def _eval_env_kwargs(env_ids: list[str], items: list[str]) -> dict[str, dict[str, Any]]:
    """``[ENV:]KEY=VALUE`` items -> options per env id; an option no env of the suite has is an error."""
    from agent_gym.registration import resolve_ids
    from agent_gym.rollout import env_class, env_options

    out: dict[str, dict[str, Any]] = {e: {} for e in env_ids}
    for item in items:
        head, eq, value = item.partition("=")
        if not eq or not head:
            raise ValueError(f"--env-arg takes [ENV:]KEY=VALUE, got {item!r}")
        target, _, key = head.rpartition(":")
        key = key.replace("-", "_")
        targets = resolve_ids([target]) if target else env_ids
        takers = [e for e in targets if key in env_options(env_class(e))]
        if not takers:
            raise ValueError(f"no env of {', '.join(targets)} has the option {key!r}")
        for e in takers:
            out.setdefault(e, {})[key] = _parse_value(value)
    return out


@_file_errors
def _cmd_eval(args: argparse.Namespace) -> int:
    from agent_gym.evaluation import evaluate, suite_ids, write_report

    if args.backend is not None:
        from agent_gym.policies.backend import BACKENDS

        if args.backend not in BACKENDS:
            raise ValueError(f"unknown backend {args.backend!r}; known: {', '.join(BACKENDS)}")
    env_ids = suite_ids([x.strip() for x in args.suite.split(",") if x.strip()])
    env_kwargs = _eval_env_kwargs(env_ids, args.env_arg)
    workers = _worker_options(args)
    try:
        results = evaluate(env_ids, args.policy, output=args.output, policy_options=_policy_options(args),
                           episodes=args.episodes, concurrency=args.concurrency, env_kwargs=env_kwargs,
                           seed=args.seed, progress=not args.no_progress,
                           log=lambda line: print(f"agent-gym: {line}", file=sys.stderr), **workers)
    except KeyboardInterrupt:
        print(f"agent-gym: stopped: finished episodes are kept in {Path(args.output) / 'runs'}; to resume: "
              f"{shlex.join(['agent-gym', *args.argv])}", file=sys.stderr)
        return EXIT_INTERRUPTED
    paths = write_report(results, args.output, plots=not args.no_plots)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print(f"report: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    if all(r.not_run for r in results):
        print("agent-gym: error: no task could run (see 'Not run' above)", file=sys.stderr)
        return EXIT_SETUP
    errors = sum(r.errors for r in results)
    if errors:
        print(f"agent-gym: {errors} episodes ended in error; rerun the same command to play them again",
              file=sys.stderr)
        return EXIT_ERRORS
    return EXIT_OK


def _cmd_generate(args: argparse.Namespace) -> int:
    from agent_gym.registration import resolve_ids
    from agent_gym.rollout import env_class

    lacking = [e for e in resolve_ids(args.envs) if "train" not in env_class(e).splits]
    if lacking:
        raise ValueError(f"no train split in {', '.join(lacking)} (their tasks are all evaluation tasks); "
                         f"envs with one: " + ", ".join(e.id for e in __import__("agent_gym").registration.entries()
                                                        if _has_train(e.id)))
    return _cmd_run(args)


def _has_train(env_id: str) -> bool:
    from agent_gym.rollout import env_class

    try:
        return "train" in env_class(env_id).splits
    except Exception:  # noqa: BLE001 - an env whose extra is not installed
        return False


def _resume_command(argv: list[str], output: Path) -> str:
    """The command line that resumes this run: the same arguments, with ``-o`` naming the file."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-o", "--output"):
            skip = True
            continue
        if a.startswith("--output=") or (a.startswith("-o") and len(a) > 2):
            continue
        rest.append(a)
    return shlex.join(["agent-gym", *rest, "-o", str(output)])


def _warn_damaged(damaged: list[Any]) -> None:
    """One stderr line per damaged line of a run file (file, line number, why), the first 20."""
    for d in damaged[:20]:
        print(f"agent-gym: warning: {d}", file=sys.stderr)
    if len(damaged) > 20:
        print(f"agent-gym: warning: {len(damaged) - 20} more damaged lines skipped", file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    from agent_gym.metrics import format_table, report_rows, to_json

    damaged: list[Any] = []
    rows = report_rows(args.files, damaged)
    _warn_damaged(damaged)
    print(to_json(rows) if args.json else format_table(rows, details=args.details))
    if args.plot:
        from agent_gym.plot import plot_scores

        plot_scores(rows, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


@_file_errors
def _cmd_export(args: argparse.Namespace) -> int:
    from agent_gym.export import select, write_agentinstruct
    from agent_gym.metrics import load_runs

    _output_file(args.output)
    stats: dict[str, Any] = {}
    trajs = [t for ts in load_runs(args.files, stats).values() for t in ts]
    _warn_damaged(stats["damaged"])
    if args.min_score is not None:
        _score_in_range("--min-score", args.min_score)
    kept = list(select(trajs, args.min_score))
    if args.format == "agentinstruct":
        n = write_agentinstruct(kept, args.output)
    else:
        from agent_gym.instruct import records_of, write_records

        n = write_records(records_of(kept, "messages"), args.output, args.format)
    superseded = f" ({stats['superseded']} older records superseded by newer ones left out)" if stats["superseded"] else ""
    print(f"kept {n} of {len(trajs)} trajectories -> {args.output}{superseded}")
    return 0


@_file_errors
def _cmd_view(args: argparse.Namespace) -> int:
    from agent_gym.viewer import serve

    try:
        serve(args.files, host=args.host, port=args.port)
    except RuntimeError as exc:
        print(f"agent-gym: error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        from agent_gym.policies import serve
    except ImportError as exc:
        print(f"agent-gym serve needs the serve extra: pip install 'agent-gym[serve]' ({exc})", file=sys.stderr)
        return 2
    return serve.main(rest)


def _cmd_serve_env(args: argparse.Namespace) -> int:
    try:
        from agent_gym import envserver
    except ImportError as exc:
        print(f"agent-gym: error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    return envserver.main(args)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): what is wrong, and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_SETUP, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _JoinURLs(argparse.Action):
    """``--url A --url B`` and ``--url A,B`` both give ``"A,B"``: several inference instances, one backend."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{before},{values}" if before else values)


def _add_worker_args(s: argparse.ArgumentParser) -> None:
    """--workers and --ray of run / generate / eval (agent_gym.rollout, docs/distributed.md)."""
    from agent_gym.rollout import WORKER_KINDS

    s.add_argument("--workers", choices=WORKER_KINDS, default=None,
                   help="where episodes run: threads (default; policies that wait on a server), processes (-c worker "
                        "processes: CPU-bound engines such as ALFWorld use every core), ray (Ray actors, see --ray)")
    s.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="play on -c Ray actors of the cluster at ADDRESS: auto (RAY_ADDRESS or the `ray start` "
                        "cluster of this machine), local (a private one here), HOST:6379 or ray://HOST:10001")
    s.add_argument("--env-server", default=None, metavar="URL",
                   help="play the envs in sessions of an agent-gym serve-env server at URL (docs/env_server.md)")


def _worker_options(args: argparse.Namespace) -> dict[str, Any]:
    """rollout()'s ``workers``, ``ray_address`` and ``env_server`` from --workers / --ray / --env-server
    (--ray alone means ray)."""
    if args.ray and args.workers not in (None, "ray"):
        raise ValueError(f"--ray plays on Ray actors: leave out --workers {args.workers}")
    if args.env_server and (args.ray or args.workers not in (None, "threads")):
        raise ValueError("--env-server plays from threads (the server runs the engines): leave out --workers / --ray")
    return {"workers": "ray" if args.ray else args.workers, "ray_address": args.ray, "env_server": args.env_server}


def _add_policy_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--backend", default=None, help="LLM backend: local (default), tgi, openai")
    s.add_argument("--model", default=None, help="model id or path (default: the bundled SmolLM2-135M-Instruct)")
    s.add_argument("--url", default=None, action=_JoinURLs,
                   help="server URL for the tgi / openai backends; repeat it (or separate with commas) for several "
                        "instances of one model: requests go to the least-loaded live one")
    s.add_argument("--temperature", type=float, default=None)
    s.add_argument("--max-new-tokens", type=int, default=None)
    s.add_argument("--chat-template", default=None, help="llama2 or auto (the tokenizer's own)")
    s.add_argument("--policy-arg", action="append", default=[], metavar="KEY=VALUE", help="extra policy option")


def build_parser() -> argparse.ArgumentParser:
    from agent_gym import __version__

    p = _Parser(prog="agent-gym", description="The AgentTuning agent tasks as Gymnasium text envs.",
                                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"agent-gym {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list", help="env ids, task counts, splits, data and engine status")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("data", help="the task data directory")
    dsub = s.add_subparsers(dest="data_cmd", required=True)
    dsub.add_parser("path", help="print the data directory")
    dsub.add_parser("list", help="datasets and whether they are present")
    f = dsub.add_parser("fetch", help="download datasets from upstream and verify their sha256")
    f.add_argument("names", nargs="*", help="dataset names (default: all)")
    f.add_argument("--force", action="store_true", help="download again even if present")
    fl = dsub.add_parser("filter", help="keep trajectories that meet their task's threshold, drop duplicates and "
                                        "test-split tasks; print counts as the paper's AgentInstruct table")
    fl.add_argument("files", nargs="+", help="run files (JSONL trajectories)")
    fl.add_argument("--output", "-o", required=True, help="JSONL of the kept trajectories")
    fl.add_argument("--min-score", type=float, default=None, help="one threshold for every task (0..1)")
    fl.add_argument("--threshold", action="append", default=[], metavar="ENV=SCORE",
                    help="a task's threshold (the paper: 1, Mind2Web 2/3)")
    fl.add_argument("--ngram", type=_positive_int, default=None, metavar="N",
                    help="also drop tasks sharing an N-word sequence with a test task (13 is the usual rule)")
    fl.add_argument("--no-decontaminate", action="store_true", help="keep tasks that are in a test split")
    mx = dsub.add_parser("mix", help="mix agent records with a general chat set (ShareGPT JSONL) at agent share eta")
    mx.add_argument("agent", help="agent records (agent-gym export output)")
    mx.add_argument("general", help="general records: ShareGPT-style JSONL ({'conversations': [{'from', 'value'}]})")
    mx.add_argument("--eta", type=float, default=0.2, help="the agent share of the mix (the paper's best: 0.2)")
    mx.add_argument("--seed", type=int, default=0)
    mx.add_argument("--output", "-o", required=True, help="JSONL (or .parquet)")
    i = dsub.add_parser("import", help="take datasets from a local folder laid out like the data directory")
    i.add_argument("path")
    i.add_argument("--link", action="store_true", help="symlink instead of copying")
    i.add_argument("--no-verify", action="store_true",
                   help="take a deliberately edited copy whose sha256 differs; marked 'modified' in list and trajectories")

    s = sub.add_parser("run", help="play episodes with a policy; append trajectories to a JSONL file (resumable)",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("envs", nargs="+", help="env ids, short names (gsm8k) or suites (general, held-in, held-out, all)")
    s.add_argument("--policy", default="react",
                   help="react (default), expert, random, human, or your own as module:factory")
    s.add_argument("--episodes", "-n", type=_positive_int, default=None, help="episodes per env (default: the whole split)")
    s.add_argument("--task", action="append", default=[], help="a task id to play (repeatable)")
    s.add_argument("--split", default=None)
    s.add_argument("--repeats", type=_positive_int, default=1)
    s.add_argument("--sample", action="store_true", help="a seeded random sample of tasks instead of the first N")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--concurrency", "-c", type=_positive_int, default=1)
    s.add_argument("--output", "-o", default=None,
                   help="JSONL file; an existing one is resumed (default: a new file under runs/, named when the run starts)")
    s.add_argument("--no-retry-errors", action="store_true",
                   help="on resume, keep episodes recorded as error instead of playing them again")
    _add_policy_args(s)
    _add_worker_args(s)
    s.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="gym.make keyword (checked against the env's options), e.g. tasks_file=PATH for your own tasks")
    s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("generate", help="play the training split with a teacher policy: candidate trajectories for "
                                        "agent-gym data filter (as run, with --split train)",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("envs", nargs="+", help="env ids, short names or suites; each needs a train split")
    s.add_argument("--policy", default="react", help="the teacher: react (default) on any backend, expert, module:factory")
    s.add_argument("--episodes", "-n", type=_positive_int, default=None, help="episodes per env (default: all)")
    s.add_argument("--task", action="append", default=[], help=argparse.SUPPRESS)
    s.add_argument("--split", default="train", help=argparse.SUPPRESS)
    s.add_argument("--repeats", type=_positive_int, default=1, help="plays per task (with sampling, more candidates)")
    s.add_argument("--sample", action="store_true", help="a seeded random sample of tasks instead of the first N")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--concurrency", "-c", type=_positive_int, default=8)
    s.add_argument("--output", "-o", required=True, help="JSONL file; an existing one is resumed")
    s.add_argument("--no-retry-errors", action="store_true", help=argparse.SUPPRESS)
    _add_policy_args(s)
    _add_worker_args(s)
    s.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help="gym.make keyword")
    s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("eval", help="every env of a suite under the paper's protocol; a report beside the paper's table",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--suite", default="all", help="held-in, held-out, general, all (default), or env ids / short names "
                                                  "separated by commas")
    s.add_argument("--policy", default="react",
                   help="react (default), expert, random, or your own as module:factory")
    s.add_argument("--episodes", "-n", type=_positive_int, default=None,
                   help="the first N tasks of each test split (default: the whole split, the paper's protocol)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--concurrency", "-c", type=_positive_int, default=1)
    s.add_argument("--output", "-o", required=True, help="a folder: runs/ (resumable, one file per env) and the report")
    _add_policy_args(s)
    _add_worker_args(s)
    s.add_argument("--env-arg", action="append", default=[], metavar="[ENV:]KEY=VALUE",
                   help="an env option, for the env named (short name or id) or for every env that has it")
    s.add_argument("--no-plots", action="store_true")
    s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("report", help="the per-env metric table of run files")
    s.add_argument("files", nargs="+")
    s.add_argument("--json", action="store_true")
    s.add_argument("--details", action="store_true", help="per-group metrics too (MMLU subjects, ...)")
    s.add_argument("--plot", default=None, metavar="PNG", help="also draw scores next to the paper's")

    s = sub.add_parser("export", help="filter trajectories (paper's rule: reward 1) into training data")
    s.add_argument("files", nargs="+")
    s.add_argument("--output", "-o", required=True)
    s.add_argument("--min-score", type=float, default=None, help="keep episodes scoring at least this (0..1)")
    s.add_argument("--format", default="agentinstruct", choices=["agentinstruct", "messages", "parquet"],
                   help="agentinstruct (JSONL, loss marked per turn), messages (JSONL for TRL's SFTTrainer), "
                        "parquet (for datasets.load_dataset)")

    s = sub.add_parser("view", help="browse the episodes of run files in a local web page")
    s.add_argument("files", nargs="+")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)

    sub.add_parser("serve", help="a TGI-protocol server backed by the local model (see agent-gym serve --help)",
                   add_help=False)

    s = sub.add_parser("serve-env", help="serve the envs over OpenEnv's protocol, one session (env) per client "
                                         "(docs/env_server.md)")
    s.add_argument("--env", action="append", default=[], metavar="ID",
                   help="ids, short names or suites to serve (repeat or separate with commas; default: every env)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090, help="0 picks a free one (printed)")
    s.add_argument("--max-sessions", type=_positive_int, default=64, help="sessions open at once; one more is refused")
    s.add_argument("--idle-timeout", type=float, default=600.0, help="seconds a session may idle before it is closed "
                                                                     "(0: never)")
    s.add_argument("--max-payload-bytes", type=_positive_int, default=1 << 20,
                   help="largest message or request body taken; a larger one is refused with an error reply")
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line; ``argv`` None means the process's own (the console script)."""
    code = _main(argv)
    if argv is None and code == EXIT_INTERRUPTED and _episodes_in_flight():
        # Episodes abandoned at Ctrl-C may still be inside native code (torch, a JVM bridge): letting the
        # interpreter finalize under them aborts the process (SIGABRT, "terminate called without an active
        # exception"). Everything worth keeping is written and the engines are closed: leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _episodes_in_flight() -> bool:
    import threading

    return any(t.is_alive() and t.name.startswith("episode-") for t in threading.enumerate())


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _cmd_serve(argparse.Namespace(), argv[1:])
    parser = build_parser()
    if not argv:
        parser.print_help()
        return EXIT_OK
    args = parser.parse_args(argv)
    args.argv = argv
    from agent_gym.policy import PolicySetupError
    from agent_gym.rollout import RunSetupError

    handlers = {"list": _cmd_list, "data": _cmd_data, "run": _cmd_run, "generate": _cmd_generate, "eval": _cmd_eval, "report": _cmd_report,
                "export": _cmd_export, "view": _cmd_view, "serve-env": _cmd_serve_env}
    try:
        return handlers[args.cmd](args)
    except (KeyError, FileNotFoundError, ValueError, RunSetupError, PolicySetupError, NotImplementedError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"agent-gym: error: {msg}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:  # outside a rollout (which handles Ctrl-C itself): loading, listing
        print("agent-gym: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
