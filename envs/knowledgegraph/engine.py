"""The knowledge base behind AgentBench's KG tools: SPARQL built as AgentBench's executor builds it,
run on a Freebase SPARQL endpoint over HTTP or on a local ``pyoxigraph`` store.

Upstream (``AgentBench.old/src/tasks/knowledgegraph``): ``api.py`` has the tools, which build
S-expression programs over variables (``(JOIN rel_inv X)``, ``(AND A B)``, ``(ARGMAX A attr)``,
``(COUNT A)``); ``utils/logic_form_util.py`` turns a program into SPARQL (``postprocess_raw_code``
then ``lisp_to_sparql``); ``utils/sparql_executer.py`` sends it to a Virtuoso server. Only
``get_relations``, ``get_attributes`` and the final answer query the knowledge base;
``get_neighbors``, ``intersection``, ``argmax`` / ``argmin`` and ``count`` only build programs.
The translation below is ours, for the operators the tools produce, and gives the same queries,
written in standard SPARQL 1.1 so that any endpoint runs them (see docs/knowledgegraph.md).

Knowledge bases: :class:`HttpEndpoint` (a SPARQL protocol endpoint such as a Freebase Virtuoso,
every request bounded by a total deadline) and :class:`LocalStore` (``pyoxigraph``, an RDF file
loaded in memory or an on-disk store folder). Faults: :class:`EndpointError` when the knowledge
base cannot answer (unreachable, too slow, broken reply: the episode ends with status ``error``),
:class:`QueryError` when it refuses a query (a tool call that cannot be executed, as upstream).
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from agent_gym.envs.knowledgegraph.data import Ontology

NS = "http://rdf.freebase.com/ns/"
#: Environment variables naming the knowledge base when the env gets no ``endpoint=`` / ``rdf_file=``.
ENDPOINT_ENV = "AGENT_GYM_KG_ENDPOINT"
RDF_FILE_ENV = "AGENT_GYM_KG_RDF"
#: Seconds one query may take, all in (connect, send, wait, read), before the episode ends as ``error``.
QUERY_TIMEOUT = 60.0
#: Largest SPARQL reply read from an endpoint (bytes).
MAX_REPLY_BYTES = 256 * 1024 * 1024

SETUP_HINT = (f"the Knowledge Graph env needs a Freebase knowledge base: set {ENDPOINT_ENV}=http://HOST:PORT/sparql "
              f"(a Virtuoso SPARQL endpoint over Freebase, as AgentBench used) or {RDF_FILE_ENV}=PATH (an RDF file or "
              f"a pyoxigraph store folder, loaded locally), or pass endpoint=... / rdf_file=... to the env "
              f"(agent-gym: --env-arg endpoint=URL)")


class EndpointError(RuntimeError):
    """The knowledge base could not answer (unreachable, past the deadline, a broken reply)."""


class QueryError(ValueError):
    """The knowledge base refused a query (syntax or evaluation error)."""


class KnowledgeBase(Protocol):
    """Runs a SPARQL ``SELECT`` of one variable and gives its values, as upstream's
    ``SparqlExecuter.execute_query``: IRIs and literals by their text, with the Freebase namespace
    and ``-08:00`` removed."""

    name: str

    def select(self, query: str) -> list[str]: ...

    def version(self) -> str: ...

    def close(self) -> None: ...


def _strip(value: str) -> str:
    return value.replace(NS, "").replace("-08:00", "")


# --------------------------------------------------------------------------- knowledge bases
class HttpEndpoint:
    """A SPARQL 1.1 protocol endpoint (``POST`` of ``query=``, JSON results), e.g. Virtuoso.

    Every query has a total deadline of ``timeout`` seconds: a timer shuts the socket down when it
    passes, so a server that accepts and never answers, or answers a byte at a time, costs at most
    ``timeout`` (plus scheduling), never a hang. Connection faults and the deadline raise
    :class:`EndpointError`; HTTP 4xx (the server refused the query) raises :class:`QueryError`.
    """

    name = "sparql-http"

    def __init__(self, url: str, timeout: float = QUERY_TIMEOUT, max_bytes: int = MAX_REPLY_BYTES):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http(s) URL such as http://localhost:8890/sparql, got {url!r}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url, self.timeout, self.max_bytes = url, float(timeout), max_bytes
        self._parts = parts

    def version(self) -> str:
        return self.url

    def select(self, query: str) -> list[str]:
        status, body = self._post(query)
        if 400 <= status < 500:
            raise QueryError(f"the endpoint refused the query (HTTP {status}): {body[:300].decode('utf-8', 'replace')}")
        if status != 200:
            raise EndpointError(f"SPARQL endpoint {self.url} answered HTTP {status}: "
                                f"{body[:300].decode('utf-8', 'replace')}")
        try:
            reply = json.loads(body)
            names = reply["head"]["vars"]
            rows = reply["results"]["bindings"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EndpointError(f"SPARQL endpoint {self.url} sent no SPARQL JSON results ({exc})") from None
        return [_strip(row[names[0]]["value"]) for row in rows if names and names[0] in row]

    def _post(self, query: str) -> tuple[int, bytes]:
        p = self._parts
        cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
        conn = cls(p.hostname, p.port, timeout=self.timeout)
        expired = threading.Event()
        opened: list[socket.socket] = []

        def cut() -> None:  # the deadline: unblock whatever recv/send the request is in
            expired.set()
            for sock in opened:  # the socket itself: http.client drops conn.sock once a reply will close
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, cut)
        timer.daemon = True
        path = p.path or "/"
        if p.query:
            path += "?" + p.query
        started = time.monotonic()
        timer.start()
        try:
            conn.connect()  # bounded by the socket timeout (= the deadline)
            opened.append(conn.sock)
            if expired.is_set():
                raise socket.timeout
            conn.request("POST", path, body=urllib.parse.urlencode({"query": query}).encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  "Accept": "application/sparql-results+json"})
            resp = conn.getresponse()
            body = resp.read(self.max_bytes + 1)
            if expired.is_set():
                raise socket.timeout
            if len(body) > self.max_bytes:
                raise EndpointError(f"SPARQL endpoint {self.url} sent more than {self.max_bytes} bytes for one query")
            return resp.status, body
        except EndpointError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            took = time.monotonic() - started
            if expired.is_set() or isinstance(exc, socket.timeout):
                raise EndpointError(f"SPARQL endpoint {self.url} did not answer within {self.timeout:g} s "
                                    f"(the env's timeout=; {took:.1f} s spent)") from None
            raise EndpointError(f"SPARQL endpoint {self.url} is unreachable: {type(exc).__name__}: {exc} "
                                f"(is the server running? {ENDPOINT_ENV} / endpoint= name it)") from None
        finally:
            timer.cancel()
            conn.close()

    def close(self) -> None:
        pass


class LocalStore:
    """An embedded ``pyoxigraph`` store: an RDF file (Turtle, N-Triples, N-Quads, RDF/XML, ...,
    by extension) loaded in memory once per process, or a folder holding an on-disk pyoxigraph store
    (opened read-only).

    A query runs in a worker thread (pyoxigraph releases the GIL while it evaluates) and gets
    ``timeout`` seconds: past them :class:`EndpointError` ends the episode, and the abandoned query
    finishes in the background (a store query cannot be cancelled).
    """

    name = "pyoxigraph"

    def __init__(self, path: str | Path, timeout: float = QUERY_TIMEOUT):
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise FileNotFoundError(f"rdf_file {path} does not exist ({SETUP_HINT})")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._store = _open_store(str(self.path), self.path.stat().st_mtime_ns)

    def version(self) -> str:
        import pyoxigraph

        return pyoxigraph.__version__

    def select(self, query: str) -> list[str]:
        result: list[Any] = []

        def run() -> None:
            try:
                solutions = self._store.query(query)
                names = solutions.variables
                result.append([_strip(row[names[0]].value) for row in solutions if row[names[0]] is not None])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                result.append(exc)

        worker = threading.Thread(target=run, name="kg-local-query", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not result:
            raise EndpointError(f"the local store ({self.path.name}) did not answer within {self.timeout:g} s "
                                f"(the env's timeout=)")
        if isinstance(result[0], SyntaxError):
            raise QueryError(f"the store refused the query: {result[0]}")
        if isinstance(result[0], OSError):
            raise EndpointError(f"pyoxigraph store {self.path} failed: {result[0]}")
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def close(self) -> None:
        pass


@functools.lru_cache(maxsize=2)
def _open_store(path: str, mtime_ns: int) -> Any:  # one load per file state, shared by the process's envs
    try:
        import pyoxigraph
    except ImportError:
        raise ImportError("a local RDF knowledge base needs pyoxigraph: pip install 'agent-gym[kg]'") from None
    if os.path.isdir(path):
        return pyoxigraph.Store.read_only(path)
    store = pyoxigraph.Store()
    store.bulk_load(path=path)
    return store


def open_knowledge_base(endpoint: str | None = None, rdf_file: str | Path | None = None,
                        timeout: float = QUERY_TIMEOUT) -> KnowledgeBase:
    """The knowledge base the arguments, else ``$AGENT_GYM_KG_ENDPOINT`` / ``$AGENT_GYM_KG_RDF``,
    name; :class:`LookupError` naming what to set when none is named."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    rdf_file = rdf_file or os.environ.get(RDF_FILE_ENV) or None
    if endpoint and rdf_file:
        raise ValueError("give the knowledge base once: endpoint= (HTTP) or rdf_file= (local), not both")
    if endpoint:
        return HttpEndpoint(endpoint, timeout=timeout)
    if rdf_file:
        return LocalStore(rdf_file, timeout=timeout)
    raise LookupError(SETUP_HINT)


# --------------------------------------------------------------------------- programs -> SPARQL
def _iri(name: str) -> str:
    """A Freebase name as a full IRI. Upstream wrote ``ns:name``; full IRIs mean the same to every
    endpoint, and pyoxigraph 0.5's SPARQL parser refuses a prefixed name with two dots
    (``ns:people.person.profession``)."""
    return f"<{NS}{name}>"


def _parse(program: str) -> list:
    """An S-expression as nested lists, after upstream's ``postprocess_raw_code``: a token ``r_inv``
    becomes ``["R", "r"]`` (the reverse of relation ``r``)."""
    stack: list[list] = [[]]
    for token in program.replace("(", " ( ").replace(")", " ) ").split():
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) < 2:
                raise QueryError(f"unbalanced program {program!r}")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(["R", token[:-4]] if token.endswith("_inv") and len(token) > 4 else token)
    if len(stack) != 1 or len(stack[0]) != 1 or not isinstance(stack[0][0], list):
        raise QueryError(f"not one S-expression: {program!r}")
    return stack[0][0]


def _linearize(expr: list, out: list[list]) -> str:
    """Post-order list of sub-programs, each nested program replaced by ``#k`` (its index in ``out``),
    as upstream's ``_linearize_lisp_expression``; returns the id of ``expr``."""
    node = [e if not (isinstance(e, list) and e[0] != "R") else _linearize(e, out) for e in expr]
    out.append(node)
    return f"#{len(out) - 1}"


def to_sparql(program: str) -> str:
    """The SPARQL query for a tool program, as ``lisp_to_sparql`` builds it: one variable per
    sub-program, merged where ``AND`` / ``ARGMAX`` / ``COUNT`` say they are the same (the smaller
    id is kept), the question variable named ``?x``; every entity of the program excluded from the
    answers; literals kept only when untagged or English; ``ARGMAX`` / ``ARGMIN`` as a sub-select of
    the best ``?sk0`` (``ORDER BY DESC(?sk0)`` / ``ORDER BY ?sk0``, ``LIMIT 1``) joined back, so ties
    all answer. ``COUNT`` is written ``(COUNT(DISTINCT ?x) AS ?count)`` (Virtuoso's own
    ``COUNT DISTINCT ?x`` is not standard). ``OR`` (upstream's unadvertised ``union``) has no
    translation upstream either: :class:`QueryError`."""
    nodes: list[list] = []
    _linearize(_parse(program), nodes)
    parent: dict[int, int] = {}

    def root(v: int) -> int:
        while v in parent:
            v = parent[v]
        return v

    def merge(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    def ref(token: Any) -> int:
        if not (isinstance(token, str) and token.startswith("#")):
            raise QueryError(f"expected a sub-program, got {token!r} in {program!r}")
        return int(token[1:])

    triples: list[tuple[str, Any, Any]] = []  # (kind, ...) with variable ids resolved at the end
    entities: list[str] = []
    order: list[str] = []
    count = superlative = False
    for i, node in enumerate(nodes):
        op = node[0]
        if op == "JOIN" and len(node) == 3:
            rel, arg = node[1], node[2]
            if isinstance(arg, str) and arg[:2] in ("m.", "g."):
                subject: Any = _iri(arg)
                entities.append(arg)
            elif isinstance(arg, str) and arg.startswith("#"):
                subject = ref(arg)
            else:
                raise QueryError(f"literal arguments are not produced by the tools: {arg!r}")
            if isinstance(rel, list):  # (JOIN (R r) X): the objects of r from X
                triples.append(("t", subject, rel[1], i))
            else:  # (JOIN r X): the subjects with r to X
                triples.append(("t", i, rel, subject))
        elif op == "AND" and len(node) == 3:
            merge(i, ref(node[2]))
            if isinstance(node[1], str) and node[1].startswith("#"):
                merge(i, ref(node[1]))
            else:  # a class: (AND type X)
                triples.append(("t", i, "type.object.type", _iri(node[1])))
        elif op in ("ARGMAX", "ARGMIN") and len(node) == 3 and isinstance(node[2], str):
            superlative = True
            merge(i, ref(node[1]))
            triples.append(("t", i, node[2], "?sk0"))
            order += ["ORDER BY DESC(?sk0)" if op == "ARGMAX" else "ORDER BY ?sk0", "LIMIT 1"]
        elif op == "COUNT" and len(node) == 2:
            count = True
            merge(i, ref(node[1]))
        elif op == "OR":
            raise QueryError("union variables cannot be queried: AgentBench's translator has no OR")
        else:
            raise QueryError(f"unknown operator {op!r} in {program!r}")

    question = root(len(nodes) - 1)

    def term(t: Any) -> str:
        if isinstance(t, int):
            return "?x" if root(t) == question else f"?x{root(t)}"
        return t

    body = [f"{term(s)} {_iri(p)} {term(o)} ." for _, s, p, o in triples]
    lang = "FILTER (!isLiteral(?x) || lang(?x) = '' || langMatches(lang(?x), 'en'))"
    inner = [lang, *body, *(f"FILTER (?x != {_iri(e)})" for e in dict.fromkeys(entities))]
    head = [f"PREFIX ns: <{NS}>"]
    if count:
        return "\n".join([*head, "SELECT (COUNT(DISTINCT ?x) AS ?count)", "WHERE {", *inner, "}", *order])
    if superlative:
        return "\n".join([*head, "SELECT DISTINCT ?x", "WHERE {", *body, "{SELECT ?sk0", "WHERE {", *inner, "}",
                          *order, "}", "}"])
    return "\n".join([*head, "SELECT DISTINCT ?x", "WHERE {", *inner, "}"])


def relations_query(program: str) -> str:
    """The query of the predicates leaving a variable's members (``get_relations`` /
    ``get_attributes`` on a variable): the variable's query as a sub-select under ``?x ?rel ?obj``."""
    first, rest = to_sparql(program).split("\n", 1)
    return "\n".join([first, "SELECT DISTINCT ?rel", "WHERE {", "?x ?rel ?obj .", "{", rest, "}", "}"])


def entity_relations_query(mid: str) -> str:
    """The query of the Freebase predicates leaving an entity (``SparqlExecuter.get_out_relations``)."""
    return (f"PREFIX : <{NS}>\nSELECT (?x0 AS ?value) WHERE {{\nSELECT DISTINCT ?x0 WHERE {{\n{_iri(mid)} ?x0 ?x1 .\n"
            f"FILTER regex(str(?x0), \"{NS}\")\n}}\n}}")


# --------------------------------------------------------------------------- the tools
@dataclasses.dataclass(frozen=True)
class Variable:
    """A set of entities, kept as the program that derives it; ``type`` is its Freebase type."""

    type: str
    program: str


class ToolError(Exception):
    """A tool call upstream's tool would raise on (its message is upstream's "cannot be executed")."""


_MID = re.compile(r"^(m|f)\.[\w_]+$")


class Tools:
    """AgentBench's seven tools (and its unadvertised ``union``) on a knowledge base, for one episode.

    Each tool returns ``(new variable or None, observation)``; an observation that creates a
    variable holds ``##``, which the caller replaces by the variable's number. Bad arguments raise
    :class:`ToolError` (or :class:`QueryError` from the knowledge base); a knowledge base that cannot
    answer raises :class:`EndpointError`. The relation and attribute caches that ``get_neighbors``
    and ``argmax`` / ``argmin`` check live as long as this object (upstream: the whole process).
    """

    NAMES = ("get_relations", "get_neighbors", "intersection", "union", "get_attributes", "argmax", "argmin",
             "count")

    def __init__(self, kb: KnowledgeBase, ontology: Ontology):
        self.kb, self.ontology = kb, ontology
        self.relations_cache: dict[Any, list[str]] = {}
        self.attributes_cache: dict[Any, list[str]] = {}

    def call(self, name: str, args: list[Any]) -> tuple[Variable | None, str]:
        """Run tool ``name`` on resolved arguments (a wrong name or argument count is a :class:`ToolError`)."""
        if name not in self.NAMES:
            raise ToolError(f"{name} is not a tool")
        fn = getattr(self, name)
        try:
            return fn(*args)
        except TypeError as exc:
            raise ToolError(str(exc)) from None

    @staticmethod
    def _listing(items: list[str]) -> str:
        # upstream printed a set's order (different per process); sorted is the same list, reproducibly
        return f"Observation: [{', '.join(sorted(items))}]"

    @staticmethod
    def _instances(var: Variable) -> str:
        return f"Observation: variable ##, which are instances of {var.type}"

    def get_relations(self, x: Variable | str) -> tuple[None, str]:
        if isinstance(x, Variable):
            found = self.kb.select(relations_query(x.program))
        elif isinstance(x, str) and _MID.match(x):
            found = self.kb.select(entity_relations_query(x))
        else:
            raise ToolError("get_relations: variable must be a variable or an entity")
        out = list(set(found) & self.ontology.relations)
        self.relations_cache[x] = out
        return None, self._listing(out)

    def get_neighbors(self, x: Variable | str, relation: Any) -> tuple[Variable, str]:
        if not isinstance(x, Variable) and not (isinstance(x, str) and _MID.match(x)):
            raise ToolError("get_neighbors: variable must be a variable or an entity")
        if relation not in self.relations_cache.get(x, ()):
            raise ToolError("get_neighbors: relation must be a relation of the variable")
        if relation not in self.ontology.range_info:
            raise ToolError(f"get_neighbors: {relation} has no range in fb_roles")
        source = x.program if isinstance(x, Variable) else x
        var = Variable(self.ontology.range_info[relation], f"(JOIN {relation}_inv {source})")
        return var, self._instances(var)

    def _combine(self, op: str, a: Any, b: Any) -> tuple[Variable, str]:
        if not (isinstance(a, Variable) and isinstance(b, Variable)) or a.type != b.type:
            raise ToolError(f"{op}: two variables of the same type")
        var = Variable(a.type, f"({op} {a.program} {b.program})")
        return var, self._instances(var)

    def intersection(self, a: Any, b: Any) -> tuple[Variable, str]:
        return self._combine("AND", a, b)

    def union(self, a: Any, b: Any) -> tuple[Variable, str]:
        return self._combine("OR", a, b)

    def get_attributes(self, x: Any) -> tuple[None, str]:
        if not isinstance(x, Variable):
            raise ToolError("get_attributes: variable must be a variable")
        out = list(set(self.kb.select(relations_query(x.program))) & self.ontology.attributes)
        self.attributes_cache[x] = out
        return None, self._listing(out)

    def _superlative(self, op: str, x: Any, attribute: Any) -> tuple[Variable, str]:
        if attribute not in self.attributes_cache.get(x, ()):
            raise ToolError(f"{op.lower()}: attribute must be an attribute of the variable")
        var = Variable(x.type, f"({op} {x.program} {attribute})")
        return var, self._instances(var)

    def argmax(self, x: Any, attribute: Any) -> tuple[Variable, str]:
        return self._superlative("ARGMAX", x, attribute)

    def argmin(self, x: Any, attribute: Any) -> tuple[Variable, str]:
        return self._superlative("ARGMIN", x, attribute)

    def count(self, x: Any) -> tuple[Variable, str]:
        if not isinstance(x, Variable):
            raise ToolError("count: variable must be a variable")
        return Variable("type.int", f"(COUNT {x.program})"), "Observation: variable ##, which is a number"

    def answer(self, var: Variable) -> list[str]:
        """The values of a variable (upstream's ``final_execute``): the prediction scored against
        the gold set. A union variable gives ``[]`` (upstream could not run it either)."""
        try:
            query = to_sparql(var.program)
        except QueryError:
            return []
        return self.kb.select(query)
