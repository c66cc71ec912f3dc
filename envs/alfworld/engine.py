"""The only code that talks to TextWorld: ALFWorld games on TextWorld's PDDL engine, compiled once.

Upstream (ALFWorld's ``AlfredTWEnv`` over ``textworld.gym``) re-parses the game's grammar with
TatSu and re-grounds its PDDL problem with Fast Downward's translator (twice) on every reset:
about 0.6 s per game. Those results depend only on the game file, so :func:`compile_game` does
that work once and keeps it in memory and, pickled and compressed, in an on-disk cache keyed by
the sha256 of the game file and the engine versions; a reset in any later process only loads the
grounded task into Fast Downward's library (tens of milliseconds).

Steps run TextWorld's own ``PddlEnv.step`` unchanged. The text it derives goes through
:class:`FastGrammar`: TextWorld's derivation algorithm, with the TatSu parse of each grammar
string (a pure function of the string, redone for every admissible command on every step
upstream) memoised and the derivation contexts copied shallowly. Feedback and admissible
commands are the same strings as upstream (the tests play the same actions side by side).

Wording: ALFWorld 0.4 reworded its games (place command ``move X to Y``, "You arrive at drawer 2.",
a ``help`` command). :func:`reword` gives a game the wording of alfworld 0.3.x, which AgentBench
played for the paper, by rewriting those few templates of the game's grammar and domain before
compiling; the compiled-game cache is keyed by the wording.

Differences in what is computed, none visible in play: the optimised second translation, which
only TextWorld's re-planner uses, is not made (ALFWorld's env never re-plans); and copies of Fast
Downward's library are pooled and reused rather than unloaded (see ``_FREE_LIBS``).

Memory: a process holds at most :data:`MEMORY_GAMES` compiled games and bounds TextWorld's own
memo of every ``Proposition`` and ``Signature`` it ever made (:func:`_trim_textworld_memo`), which
otherwise grew about 0.75 MB per distinct game played.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
import threading
import zlib
from collections import Counter, OrderedDict, defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

CACHE_ENV_VAR = "AGENT_GYM_ALFWORLD_CACHE"
_CACHE_FORMAT = 3
_INSTALL_HINT = "the ALFWorld env needs TextWorld's PDDL engine: pip install 'agent-gym[alfworld]'"

try:
    import fast_downward
    import textworld
    from textworld.envs.pddl import logic as pddl_logic
    from textworld.envs.pddl import textgen
    from textworld.envs.pddl.pddl import PddlEnv
    from textworld.generator.game import EntityInfo
    from textworld.logic import Proposition, Rule, Variable
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc


# ---------------------------------------------------------------- grammar
# TextWorld's TatSu parsers are module-level objects that keep state while parsing: one parse at a
# time across threads (with memoisation, parses are rare after a game's first steps).
_PARSE_LOCK = threading.RLock()


def _copy_context(context: dict) -> dict:
    """``textgen.copy_context`` without its deep copies: derivations only add keys to the
    ``variables`` and ``mapping`` dicts and never change the entities in them, so fresh dicts over
    the same values give the same text (deep-copying them was most of a step's time)."""
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


class FastGrammar(textgen.ContextSensitiveGrammar):
    """TextWorld's grammar with memoised parsing of grammar strings and rule conditions, and
    shallow context copies (:func:`_copy_context`).

    ``derive`` mirrors ``ContextSensitiveGrammar.derive`` symbol for symbol; conditional and list
    symbols are expanded here (rather than by their own ``derive``) only so that their queries use
    the memoised parser.
    """

    def __init__(self) -> None:
        super().__init__()
        self._symbols: dict[str, list[textgen.Symbol]] = {}
        self._queries: dict[str, Rule] = {}

    @classmethod
    def from_grammar(cls, grammar: textgen.ContextSensitiveGrammar) -> FastGrammar:
        fast = cls()
        fast.update(grammar)
        return fast

    def __getstate__(self) -> dict[str, Any]:  # memo tables are rebuilt, not pickled
        return {"_rules": dict(self._rules)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        self._rules.update(state["_rules"])

    def _parse(self, text: str) -> list[textgen.Symbol]:
        parsed = self._symbols.get(text)
        if parsed is None:
            with _PARSE_LOCK:
                parsed = self._symbols[text] = textgen._parse_and_convert(text, rule_name="symbols")
        return copy.deepcopy(parsed)

    def _query_rule(self, expression: str) -> Rule:
        rule = self._queries.get(expression)
        if rule is None:
            with _PARSE_LOCK:
                rule = self._queries[expression] = Rule.parse_conjunctive_query(expression)
        return rule

    def _query(self, expression: str, context: dict) -> list[dict]:
        contexts = []
        for mapping in context["state"].all_assignments(self._query_rule(expression), context["mapping"]):
            context_ = _copy_context(context)
            context_["variables"].update({ph.name: context_["entity_infos"][var.name] for ph, var in mapping.items()})
            context_["mapping"].update(mapping)
            contexts.append(context_)
        return contexts

    def replace(self, start: textgen.Symbol) -> list[textgen.Symbol]:
        rules = self._rules.get(str(start))
        if not rules:
            raise textgen.CSGUnknownSymbolError(start)

        def applicable(rule: textgen.ProductionRule) -> bool:
            if not rule.condition:
                return True
            query = self._query_rule(rule.condition)
            return len(list(start.context["state"].all_assignments(query, start.context["mapping"]))) > 0

        chosen = next(filter(applicable, rules), None)
        if chosen is None:  # upstream fails the same way (an IndexError on an empty list)
            raise IndexError(f"no rule of #{start}# applies")
        symbols = copy.deepcopy(chosen.rhs)
        for symbol in symbols:
            symbol.context = _copy_context(start.context)
        return symbols

    @staticmethod
    def _bind(symbol: textgen.Symbol, context: dict) -> textgen.Symbol:
        """``Symbol.copy``: a fresh copy of a (context-free) grammar symbol bound to ``context``."""
        fresh = copy.deepcopy(symbol)
        fresh.context = _copy_context(context)
        return fresh

    def _expand(self, symbol: textgen.Symbol) -> list[textgen.Symbol]:
        """One derivation step of a conditional, list or eval symbol (as their ``derive``)."""
        if isinstance(symbol, textgen.ConditionalSymbol):
            if len(symbol.context) == 0:
                raise ValueError("Empty context")
            context = _copy_context(symbol.context)
            contexts = self._query(symbol.given, context) if symbol.given else [context]
            return [self._bind(symbol.expression, c) for c in contexts]
        if isinstance(symbol, textgen.ListSymbol):
            symbol.symbol.context = symbol.context
            return textgen.display_list(self._expand(symbol.symbol), symbol.context)
        return symbol.derive()

    def derive(self, start: str, context: dict | None = None) -> str:
        context = context or {}
        derivation = self._parse(start)[::-1]
        for symbol in derivation:
            symbol.context = _copy_context(context)
        derived = []
        while derivation:
            symbol = derivation.pop()
            if isinstance(symbol, textgen.TerminalSymbol):
                derived.append(symbol)
            elif isinstance(symbol, textgen.NonterminalSymbol):
                derivation += self.replace(symbol)[::-1]
            elif isinstance(symbol, (textgen.ConditionalSymbol, textgen.EvalSymbol, textgen.ListSymbol)):
                derivation += self._expand(symbol)[::-1]
            else:
                raise NotImplementedError(f"Unknown symbol: {type(symbol)}")
        return "".join(map(str, derived))


# ---------------------------------------------------------------- wording
#: The game wordings ALFWorld has had. The games we load (ALFWorld 0.4's release archive) carry
#: 0.4's; AgentBench (2023), whose numbers the paper reports and on whose trajectories AgentLM was
#: trained, played alfworld 0.3.x's.
WORDINGS = ("alfworld-0.3", "alfworld-0.4")
PAPER_WORDING = "alfworld-0.3"
RELEASE_WORDING = "alfworld-0.4"

# What alfworld 0.3.x's grammar and domain (alfworld/data/alfred.twl2 and alfred.pddl of the
# alfworld 0.3.5 wheel) say where the games of the 0.4 release say otherwise: (0.4 text, 0.3 text).
# Go-to feedback names the location ("You arrive at loc 5.", which AgentBench's observation cleaning
# strips) rather than the receptacle; the place command and its feedback say "put ... in/on".
_GRAMMAR_0_3 = (
    ('"You arrive at {r.name}. #examineReceptacle.feedback#"',
     '"You arrive at {lend.name}. #examineReceptacle.feedback#"'),
    ('"You move the {o.name} to the {r.name}."', '"You put the {o.name} in/on the {r.name}."'),
    ('template :: "move {o} to {r}";', 'template :: "put {o} in/on {r}";'),
)
# 0.3 had no `help` command (grammar action and PDDL operator), and its CleanObject accepted only a
# SinkBasin (the SinkType alternative is commented out there; no valid_unseen game has a SinkType receptacle).
_HELP_ACTION = re.compile(r"\n*action help \{.*?\n\}", re.S)
_HELP_OPERATOR = re.compile(r"\n*\(:action help\b.*?\n\)", re.S)
_SINK_TYPE = re.compile(r"(?m)^(\s*)\(receptacleType \?r SinkType\)")
_MOVE_COMMAND = re.compile(r"move (.+?) to (.+)")


def check_wording(wording: str) -> str:
    if wording not in WORDINGS:
        raise ValueError(f"ALFWorld wording must be one of {list(WORDINGS)} "
                         f"({PAPER_WORDING!r} is the paper's), not {wording!r}")
    return wording


def reword(game: dict[str, Any], wording: str) -> dict[str, Any]:
    """A game file's content (``pddl_domain``, ``grammar``, ``walkthrough``, ...) in ``wording``.

    ``"alfworld-0.4"`` is the file as it is; ``"alfworld-0.3"`` rewrites the templates above and
    maps the walkthrough (:func:`command_in`). A file that already has 0.3's wording passes
    unchanged; one with neither raises ``ValueError``.
    """
    if check_wording(wording) == RELEASE_WORDING:
        return game
    grammar = game["grammar"]
    for new, old in _GRAMMAR_0_3:
        grammar = grammar.replace(new, old)
    grammar = _HELP_ACTION.sub("", grammar)
    if not all(old in grammar and new not in grammar for new, old in _GRAMMAR_0_3):
        raise ValueError("this ALFWorld game's grammar has neither alfworld 0.3's nor 0.4's templates for the "
                         "place command and go-to feedback; play it with wording='alfworld-0.4' (as the file says)")
    domain = _SINK_TYPE.sub(r"\1;(receptacleType ?r SinkType)", _HELP_OPERATOR.sub("", game["pddl_domain"]))
    walkthrough = [command_in(c, wording) for c in game.get("walkthrough") or []]
    return {**game, "grammar": grammar, "pddl_domain": domain, "walkthrough": walkthrough}


def command_in(command: str, wording: str) -> str:
    """A command of the release's games (0.4's wording) as a game in ``wording`` spells it:
    ``move X to Y`` is ``put X in/on Y`` in 0.3; every other command is the same in both."""
    if check_wording(wording) == PAPER_WORDING:
        match = _MOVE_COMMAND.fullmatch(command)
        if match:
            return f"put {match.group(1)} in/on {match.group(2)}"
    return command


# ---------------------------------------------------------------- compiled games
@dataclasses.dataclass
class CompiledGame:
    """Everything a reset needs that depends only on the game file (picklable)."""

    sha256: str
    logic: Any  # textworld.envs.pddl.logic.GameLogic, with a FastGrammar
    sas: str
    actions: dict[str, Any]  # Fast Downward action schemas by name (their parameters name the variables)
    name2type: dict[str, str]
    facts: list[tuple[str, tuple[tuple[str, str], ...]]]  # the initial facts, as (name, ((var, type), ...))
    names: dict[str, str]  # PDDL object id -> ALFWorld's display name ("desk 2")
    walkthrough: list[str]

    # TextWorld's Variable/Proposition cache their hash() at construction, and str hashes differ
    # between processes: the cache stores plain tuples and builds Propositions after loading.
    @functools.cached_property
    def init_facts(self) -> list[Proposition]:
        return [Proposition(name, [Variable(v, t) for v, t in args]) for name, args in self.facts]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("init_facts", None)
        return state


@functools.cache
def versions() -> dict[str, str]:
    """The installed engine packages' versions (for provenance): TextWorld, ALFWorld, Fast Downward."""
    return {p: version(p) for p in ("textworld", "alfworld", "fast-downward-textworld")}


def engine_versions() -> str:
    """The versions a compiled game depends on; part of the cache key."""
    return f"v{_CACHE_FORMAT}-textworld{version('textworld')}-fd{version('fast-downward-textworld')}"


def cache_dir() -> Path:
    """Where compiled games are kept: ``$AGENT_GYM_ALFWORLD_CACHE`` or the user cache dir."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agent-gym")) / "alfworld-compiled"


def _alfred_names(entity_ids: list[str]) -> dict[str, str]:
    """ALFWorld's display names ("cabinet 3") for PDDL ids, as its ``AlfredDemangler`` assigns them."""
    from alfworld.agents.utils.misc import Demangler

    infos = {i: EntityInfo(i, "") for i in entity_ids}
    demangler = Demangler(game_infos=infos, shuffle=False)
    return {i: demangler.demangle_alfred_name(i) for i in entity_ids}


def _compile(data: dict, sha256: str) -> CompiledGame:
    """What ``PddlEnv.load`` + ``PddlState.__init__`` compute from a game file, done once."""
    with _PARSE_LOCK:
        logic = pddl_logic.GameLogic(domain=data["pddl_domain"], grammar=data["grammar"])
    logic.grammar = FastGrammar.from_grammar(logic.grammar)
    # Only the plain translation: PddlState also makes an optimised one (more than half of a
    # compile) that serves nothing but TextWorld's re-planner, which ALFWorld's env never asks for.
    argv = sys.argv[:]  # pddl2sas overwrites sys.argv for the translator's option parser
    try:
        task, sas = fast_downward.pddl2sas(logic.domain, data["pddl_problem"])
    finally:
        sys.argv[:] = argv
    for type_ in task.types:
        try:
            logic.types.add(textworld.logic.Type(type_.name, type_.supertype_names))
        except ValueError:
            pass
    name2type = {o.name: o.type_name for o in task.objects}

    def to_fact(atom: Any) -> Proposition | None:  # PddlState.__init__'s _atom2proposition
        from fast_downward.translate.pddl import conditions, f_expression

        if isinstance(atom, conditions.Atom):
            if atom.predicate == "=":
                return None
            return Proposition(atom.predicate, [Variable(a, name2type[a]) for a in atom.args])
        if isinstance(atom, f_expression.Assign):
            if atom.fluent.symbol == "total-cost":
                return None
            name = f"{atom.expression.value}"
            if str.isdigit(name):
                return None
            return Proposition(name, [Variable(a, name2type[a]) for a in atom.fluent.args])
        return None

    init_facts = [f for f in map(to_fact, task.init) if f is not None]
    entity_ids = sorted({v.name for f in init_facts for v in f.arguments})
    facts = [(f.name, tuple((v.name, v.type) for v in f.arguments)) for f in init_facts]
    return CompiledGame(
        sha256=sha256,
        logic=logic,
        sas=sas,
        actions={a.name: a for a in task.actions},
        name2type=name2type,
        facts=facts,
        names=_alfred_names(entity_ids),
        walkthrough=list(data.get("walkthrough") or []),
    )


#: Compiled games kept in memory, most recently used last: about 1.2 MB each once played (mostly
#: the SAS text and the grammar's memo tables), so at most about 40 MB.
MEMORY_GAMES = 32
#: Entries of TextWorld's Proposition/Signature memo kept before it is emptied (about 1 KB each; a
#: game adds about 800, its objects' ids being its own): at most about 10 MB.
TEXTWORLD_MEMO_ENTRIES = 10_000
_MEMORY: OrderedDict[str, CompiledGame] = OrderedDict()
# Fast Downward's translator keeps its options in module globals and swaps sys.stdout: one at a time
# (a warm load takes milliseconds, so serialising those too costs little).
_COMPILE_LOCK = threading.Lock()


def compile_game(path: Path, use_disk_cache: bool = True, wording: str = PAPER_WORDING) -> CompiledGame:
    """The compiled game for ``path`` in ``wording`` (see :func:`reword`): from memory, else the
    disk cache, else compiled (and cached). The cache key is the game file's sha256, the engine
    versions and the wording."""
    check_wording(wording)
    raw = Path(path).read_bytes()
    key = f"{hashlib.sha256(raw).hexdigest()}-{engine_versions()}-{wording}"
    with _COMPILE_LOCK:
        _trim_textworld_memo()
        game = _MEMORY.get(key)
        if game is None:
            game = _MEMORY[key] = _load_or_compile(raw, key, use_disk_cache, wording)
            while len(_MEMORY) > MEMORY_GAMES:
                _MEMORY.popitem(last=False)
        _MEMORY.move_to_end(key)
    return game


def _trim_textworld_memo() -> None:
    """Empty TextWorld's memo of Propositions and Signatures when it holds more than
    :data:`TEXTWORLD_MEMO_ENTRIES`.

    ``textworld.logic`` makes both classes with ``mementos``' memoising metaclass, whose cache is one
    module-level dict that nothing ever empties: every fact of every game played stays (about
    0.75 MB a game: 100 MB over the 134 valid_unseen games). The memo only saves re-creating equal
    objects: Propositions and Signatures compare and hash by value and TextWorld never compares
    them by identity, so emptying it changes no result, and the live games' facts stay referenced
    by their states. A concurrent lookup during ``clear()`` is a miss and makes a fresh object.
    """
    memo = getattr(sys.modules.get("mementos.core"), "_memento_cache", None)  # imported by textworld.logic
    if memo is not None and len(memo) > TEXTWORLD_MEMO_ENTRIES:
        memo.clear()


def _load_or_compile(raw: bytes, key: str, use_disk_cache: bool, wording: str) -> CompiledGame:
    cached = cache_dir() / f"{key}.pkl.z"
    game = None
    if use_disk_cache and cached.exists():
        try:
            game = pickle.loads(zlib.decompress(cached.read_bytes()))
        except Exception:  # a truncated or stale file is recompiled, never fatal
            game = None
    if game is None:
        game = _compile(reword(json.loads(raw), wording), key.split("-", 1)[0])
        if use_disk_cache:
            # SAS text is most of it and compresses about 13x: 0.1 MB a game, 3 ms to unpack
            _write_atomically(cached, zlib.compress(pickle.dumps(game, protocol=pickle.HIGHEST_PROTOCOL), 1))
    return game


def _write_atomically(path: Path, blob: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs speed
        pass


# ---------------------------------------------------------------- the engine
class _CompiledPddlState(pddl_logic.PddlState):
    """``PddlState`` built from a compiled game: no PDDL translation, same facts and operators."""

    def __init__(self, downward_lib: Any, game: CompiledGame) -> None:  # noqa: D107 - mirrors PddlState
        self._facts = defaultdict(set)
        self._vars_by_name = {}
        self._vars_by_type = defaultdict(set)
        self._var_counts = Counter()
        self._logic = game.logic
        self.downward_lib = downward_lib
        self.pddl_problem = None
        self.task = None
        self.sas, self.sas_replan = game.sas, None
        self._actions = game.actions
        downward_lib.load_sas(game.sas.encode("utf-8"))
        self.name2type = game.name2type
        self.add_facts(game.init_facts)
        atoms = (pddl_logic.Atom * downward_lib.get_state_size())()
        downward_lib.get_state(atoms)
        self.add_facts([f for f in (a.get_fact(self.name2type) for a in atoms) if not f.is_negation])

    def replan(self, infos: Any) -> list[str]:
        raise NotImplementedError("compiled ALFWorld games have no re-planner; the expert plays the game's walkthrough")


# Copies of Fast Downward's library not in use. The library keeps one game's state in globals, so
# each env needs its own copy (TextWorld dlopens a 33 MB copy per env); unloading one with dlclose
# and loading another later crashes dlopen, so copies are handed back here and reused instead.
_FREE_LIBS: list[Any] = []
_LIBS_LOCK = threading.Lock()


def _take_lib() -> Any:
    with _LIBS_LOCK:
        if _FREE_LIBS:
            return _FREE_LIBS.pop()
    return fast_downward.load_lib()


class AlfredGame(PddlEnv):
    """TextWorld's ``PddlEnv`` over compiled ALFWorld games, with ALFWorld's object names.

    One instance holds one copy of Fast Downward's library and plays one game at a time;
    ``close`` hands the copy back for the next instance.
    """

    def __init__(self) -> None:
        # PddlEnv.__init__ less its load_lib(): the library copy comes from the pool
        textworld.Environment.__init__(self, textworld.EnvInfos(won=True, admissible_commands=True, facts=False))
        self.downward_lib = _take_lib()
        self._game: CompiledGame | None = None

    def load(self, path: str | Path, use_disk_cache: bool = True,  # type: ignore[override]
             wording: str = PAPER_WORDING) -> None:
        game = compile_game(Path(path), use_disk_cache, wording)
        self._game = game
        self._game_file = str(path)
        self._game_data = None
        self.walkthrough = game.walkthrough
        self._logic = game.logic
        self._entity_infos = {}
        for fact in game.init_facts:
            for v in fact.arguments:
                if v.name not in self._entity_infos:
                    info = EntityInfo(v.name, v.type)
                    info.name, info.definite, info.indefinite = game.names[v.name], "the", "a"
                    self._entity_infos[v.name] = info

    def reset(self) -> textworld.GameState:
        if self._game is None:
            raise RuntimeError("load a game before reset()")
        self._pddl_state = _CompiledPddlState(self.downward_lib, self._game)
        self.prev_state = None
        self.state = textworld.GameState()
        self._last_action = None
        self._moves = 0
        context = {
            "state": self._pddl_state,
            "facts": list(self._pddl_state.facts),
            "variables": {},
            "mapping": {},
            "entity_infos": self._entity_infos,
        }
        self.state.feedback = self._logic.grammar.derive("#intro#", context)
        self.state.raw = self.state.feedback
        self._gather_infos()
        return self.state

    @property
    def facts(self) -> Any:
        """The current PDDL state (``textworld.logic.State``) for sub-goal checks."""
        return self._pddl_state

    def close(self) -> None:
        lib, self.downward_lib = getattr(self, "downward_lib", None), None
        if lib is not None:
            self._game = None
            with _LIBS_LOCK:
                _FREE_LIBS.append(lib)


# ---------------------------------------------------------------- progress
#: Sub-goals of each ALFRED task type, in order; the last one is always the game's goal.
SUBGOALS = {
    "pick_and_place_simple": ("found", "picked", "goal"),
    "look_at_obj_in_light": ("found", "picked", "goal"),
    "pick_clean_then_place_in_recep": ("found", "picked", "isclean", "goal"),
    "pick_heat_then_place_in_recep": ("found", "picked", "ishot", "goal"),
    "pick_cool_then_place_in_recep": ("found", "picked", "iscool", "goal"),
    "pick_two_obj_and_place": ("found", "picked", "placed_one", "goal"),
}


def subgoals_reached(task_type: str, targets: dict[str, str], facts: Any, won: bool) -> tuple[int, int]:
    """How many of the task type's sub-goals hold in ``facts`` (the furthest one that holds), of how many.

    found: an object of the task's type is in view (in an open or open-topped receptacle where
    the agent stands) or held; picked: one is held; isclean/ishot/iscool: one is cleaned/heated/
    cooled; placed_one: one is in a receptacle of the goal's type; goal: the game is won. A game
    whose folder name does not say its object counts only the goal.
    """
    chain = SUBGOALS.get(task_type)
    if not chain or "object" not in targets:
        return int(won), 1
    if won:
        return len(chain), len(chain)
    by_name: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for fact in facts:
        by_name[fact.name].append(tuple(v.name for v in fact.arguments))
    object_type = targets["object"].lower() + "type"
    parent_type = targets.get("parent", "").lower() + "type"
    objects = {o for o, t in by_name["objecttype"] if t == object_type}
    held = {o for _, o in by_name["holds"]} & objects
    where = {loc for _, loc in by_name["atlocation"]}
    openable = {r for (r,) in by_name["openable"]}
    opened = {r for (r,) in by_name["opened"]}
    in_view = {r for r, loc in by_name["receptacleatlocation"] if loc in where and (r not in openable or r in opened)}
    goal_receptacles = {r for r, t in by_name["receptacletype"] if t == parent_type}
    holds = {
        "found": bool(held) or any(o in objects and r in in_view for o, r in by_name["inreceptacle"]),
        "picked": bool(held),
        "isclean": any((o,) in set(by_name["isclean"]) for o in objects),
        "ishot": any((o,) in set(by_name["ishot"]) for o in objects),
        "iscool": any((o,) in set(by_name["iscool"]) for o in objects),
        "placed_one": any(o in objects and r in goal_receptacles for o, r in by_name["inreceptacle"]),
        "goal": False,
    }
    reached = max((i + 1 for i, name in enumerate(chain) if holds[name]), default=0)
    return reached, len(chain)
