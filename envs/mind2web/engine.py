"""The page side of Mind2Web's multiple choice: the step's cleaned HTML pruned around a few
candidate elements and rendered as the compact HTML the model reads.

This is the only code that touches the DOM (lxml, as upstream). The rules are Mind2Web's
``data_utils/dom_utils.py`` (``prune_tree``, ``get_tree_repr``) as AgentBench.old ships it, and
its ``dataloader.format_input_multichoice`` for the choices; each rule below names its source.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Sequence

from lxml import etree

ID = "backend_node_id"
TEXT = "text"  # Mind2Web's cleaned HTML keeps page text in <text> elements

# prune_tree's defaults: descendants within 5 levels (6 below the node), at most 50 of them,
# and 3 element siblings either side.
MAX_DEPTH = 5
MAX_CHILDREN = 50
MAX_SIBLINGS = 3
# get_tree_repr / get_attribute_repr: words per attribute value, words in the meta text and in a text node.
MAX_VALUE_WORDS = 5
MAX_WORDS = 20
CHOICE_WORDS = 10  # format_input_multichoice: an option is the first 10 words of its element's repr

# get_attribute_repr: the attributes shown, in this order, and the values it leaves out.
_SHOWN_ATTRIBUTES = ("role", "aria_role", "type", "alt", "aria_description", "aria_label", "label", "title", "name",
                     "text_value", "value", "placeholder", "input_checked", "input_value", "option_selected", "class")
_UNINFORMATIVE = {"hidden", "none", "presentation", "null", "undefined"}
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", " "), ("&ndash;", "-"),
             ("&rsquo;", "'"), ("&lsquo;", "'"), ("&ldquo;", '"'), ("&rdquo;", '"'), ("&#39;", "'"),
             ("&#40;", "("), ("&#41;", ")"))


@dataclasses.dataclass(frozen=True)
class MultipleChoice:
    """One multiple-choice question's page: ``html`` (pruned and rendered, candidates numbered
    ``id=0..`` in page order) and ``choices``, ``(backend_node_id, text)`` per candidate in page
    (DOM) order: option B is ``choices[0]``."""

    html: str
    choices: tuple[tuple[str, str], ...]


def parse(cleaned_html: str) -> etree._Element:
    """The step's page as an lxml tree (an XML parse, as upstream's ``etree.fromstring``).

    Raises ``ValueError`` when the page is not well-formed XML (Mind2Web's released pages all are;
    a hand-made tasks_file may not be)."""
    try:
        return etree.fromstring(cleaned_html.encode("utf-8") if isinstance(cleaned_html, str) else cleaned_html)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"cleaned_html is not well-formed XML ({exc})") from None


def _node_id(node: etree._Element | None) -> str:
    # Nodes without the attribute count as id "": once any ancestor lacks one, every id-less node is
    # kept by prune_tree, exactly as upstream's set of ids does.
    return node.attrib.get(ID, "") if node is not None and isinstance(node.tag, str) else ""


def _descendants(node: etree._Element, depth: int = 0) -> list[etree._Element]:
    """Pre-order descendants down to ``MAX_DEPTH + 1`` levels below ``node`` (get_descendants)."""
    if depth > MAX_DEPTH:
        return []
    out: list[etree._Element] = []
    for child in node:
        out.append(child)
        out.extend(_descendants(child, depth + 1))
    return out


def _find(tree: etree._Element, candidate_id: str) -> etree._Element:
    found = tree.xpath(f"//*[@{ID}=$value]", value=candidate_id)
    if not found:
        raise ValueError(f"candidate backend_node_id {candidate_id!r} is not in the step's cleaned_html")
    return found[0]


def prune(tree: etree._Element, candidate_ids: Sequence[str]) -> etree._Element:
    """A copy of ``tree`` cut down around the candidates (prune_tree).

    Kept: each candidate, its ancestors, its first 50 descendants within the depth limit and its
    element siblings within 3 places; text nodes of kept elements. Only candidates keep their
    ``backend_node_id``; a kept node left with no attribute, no text child and at most one child
    is replaced by its child.
    """
    candidates = set(candidate_ids)
    keep: set[str] = set()
    for cid in candidate_ids:
        node = _find(tree, cid)
        keep.add(node.attrib[ID])
        keep.update(_node_id(a) for a in node.iterancestors())
        keep.update([_node_id(d) for d in _descendants(node)][:MAX_CHILDREN])
        parent = node.getparent()
        if parent is not None:
            siblings = [s for s in parent if s.tag != TEXT]
            i = siblings.index(node)
            keep.update(_node_id(s) for s in siblings[max(0, i - MAX_SIBLINGS):i + MAX_SIBLINGS + 1])

    pruned = copy.deepcopy(tree)
    for node in pruned.xpath("//*")[::-1]:  # deepest and last first, so children are settled before parents
        owner = node.getparent() if node.tag == TEXT else node
        owner_id = _node_id(owner)
        if owner_id not in keep and node.getparent() is not None:
            node.getparent().remove(node)
            continue
        if owner_id not in candidates or node.tag == TEXT:
            node.attrib.pop(ID, None)
        if (len(node.attrib) == 0 and node.tag != TEXT and node.getparent() is not None
                and not any(c.tag == TEXT for c in node) and len(node) <= 1):
            for child in list(node):
                node.addprevious(child)
            node.getparent().remove(node)
    return pruned


def _attribute_text(node: etree._Element) -> str:
    """The ``meta`` words of an element: its informative attribute values, deduplicated (get_attribute_repr)."""
    seen: set[str] = set()
    words = ""
    for attr in _SHOWN_ATTRIBUTES:
        value = node.attrib.get(attr)
        if value is None:
            continue
        value = value.lower()
        if value in _UNINFORMATIVE or value.startswith("http"):
            continue
        value = " ".join([w for w in value.split() if len(w) < 15][:MAX_VALUE_WORDS])
        if value and value not in seen:
            seen.add(value)
            words += value + " "
    return " ".join(words.split()[:MAX_WORDS])


def render(tree: etree._Element, id_mapping: dict[str, int]) -> str:
    """A (sub)tree as the model reads it (get_tree_repr with HTML brackets kept).

    Candidates are numbered in order of first appearance through ``id_mapping`` (shared between
    a page and its choices, so an option shows the same ``id=k`` as the page). Each element shows
    ``id=k`` and its attribute words; text nodes are cut to 20 words and lose their tags.
    """
    tree = copy.deepcopy(tree)  # with its tail, as upstream's copy
    for node in tree.xpath("//*"):
        if node.tag == TEXT:
            node.text = " ".join((node.text or "").split()[:MAX_WORDS])
            continue
        uid = node.attrib.get(ID)
        if uid is not None:
            uid = str(id_mapping.setdefault(uid, len(id_mapping)))
        meta = _attribute_text(node)
        node.attrib.clear()
        if uid:
            node.attrib["id"] = uid
        if meta:
            node.attrib["meta"] = meta
    text = etree.tostring(tree, encoding="unicode").replace('"', " ")
    text = text.replace("meta= ", "").replace("id= ", "id=").replace(" >", ">")
    text = re.sub(r"<text>(.*?)</text>", r"\1", text)
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return re.sub(r"\s+", " ", text).strip()


def multiple_choice(tree: etree._Element, candidate_ids: Sequence[str]) -> MultipleChoice:
    """The page pruned around ``candidate_ids`` and its options (format_input_multichoice)."""
    pruned = prune(tree, candidate_ids)
    id_mapping: dict[str, int] = {}
    html = render(pruned, id_mapping)
    choices = tuple((node.attrib[ID], " ".join(render(node, id_mapping).split()[:CHOICE_WORDS]))
                    for node in pruned.xpath(f"//*[@{ID}]"))
    return MultipleChoice(html=html, choices=choices)
