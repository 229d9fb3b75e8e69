"""Bounded, strict YAML loading for workspace files.

PyYAML's ``safe_load`` alone lets through what later fails far from the file: a byte that is not
UTF-8, a date that does not exist (``2026-02-30`` raises a bare ``ValueError``), a key given twice in
one mapping (the last silently wins), nesting deep enough to exhaust Python's stack, and aliases that
expand a few hundred bytes into billions of values ("billion laughs": the parser shares the nodes,
but every consumer that walks the data -- pydantic first -- expands them). :func:`load_yaml` refuses
each of these with a :class:`YamlProblem` that names the line, before anything is built from the file.

The checks run on PyYAML's node graph, before construction: the expanded size and depth are counted
once per distinct node (memoised), so a billion-laughs file is refused in milliseconds and in the
memory of its few nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A workspace file is configuration written by hand: these bounds are far above any real one.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(Exception):
    """Why a file cannot be loaded: ``key`` is the dotted path inside the file where known ("" otherwise)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class _Composer(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH before recursing into it,
    and whose timestamps fail with the line of an impossible date instead of a bare ValueError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def _too_deep(self) -> YamlProblem:
        return YamlProblem("", f"line {self.line + 1}: nesting is deeper than {MAX_DEPTH} levels; flatten the file")

    # The scanner's work per token grows with the flow nesting: refuse deep nesting while scanning.
    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        super().fetch_flow_collection_start(TokenClass)
        if self.flow_level > MAX_DEPTH:
            raise self._too_deep()

    def add_indent(self, column: int) -> bool:
        added = bool(super().add_indent(column))
        if len(self.indents) > MAX_DEPTH:
            raise self._too_deep()
        return added

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # The composer recurses once per level: stop before Python's stack does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self._too_deep()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_timestamp(self, node: ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise YamlProblem("", f"line {node.start_mark.line + 1}: '{node.value}' is not a valid date or time "
                                  f"({exc}); correct it, or quote it if it is text") from None


_Composer.add_constructor("tag:yaml.org,2002:timestamp", _Composer.construct_yaml_timestamp)


def _key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else "<complex key>"


class _Walker:
    """One pass over the node graph: duplicate keys, expanded size and depth, alias cycles.

    Sizes and depths are memoised per node, so a node shared by many aliases is counted in O(1)
    after its first visit, yet contributes its full expanded size every time it is referenced.
    """

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.depths: dict[int, int] = {}
        self.active: set[int] = set()

    def visit(self, node: Node, path: tuple[str, ...]) -> tuple[int, int]:
        ident = id(node)
        if ident in self.sizes:
            return self.sizes[ident], self.depths[ident]
        if ident in self.active:
            raise YamlProblem(".".join(path), f"line {node.start_mark.line + 1}: an alias refers to the "
                                              "structure that contains it; write the values out")
        self.active.add(ident)
        size, depth = 1, 1
        if isinstance(node, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    child_path = path
                else:
                    text = _key_text(key_node)
                    marker = (key_node.tag, text)
                    line = key_node.start_mark.line + 1
                    if marker in seen:
                        raise YamlProblem(".".join((*path, text)), f"key '{text}' appears twice in the same "
                                          f"mapping (lines {seen[marker]} and {line}); keep one")
                    seen[marker] = line
                    child_path = (*path, text)
                for child, child_at in ((key_node, path), (value_node, child_path)):
                    s, d = self.visit(child, child_at)
                    size, depth = size + s, max(depth, d + 1)
                    self._bound(size, depth, node, path)
        elif isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                s, d = self.visit(child, (*path, str(i)))
                size, depth = size + s, max(depth, d + 1)
                self._bound(size, depth, node, path)
        self.active.discard(ident)
        self.sizes[ident], self.depths[ident] = size, depth
        return size, depth

    @staticmethod
    def _bound(size: int, depth: int, node: Node, path: tuple[str, ...]) -> None:
        where = f"line {node.start_mark.line + 1}: "
        if size > MAX_NODES:
            raise YamlProblem(".".join(path), f"{where}expands to more than {MAX_NODES} values (through aliases "
                                              "or sheer size); a workspace file must stay small: write the "
                                              "values out or split the file")
        if depth > MAX_DEPTH:
            raise YamlProblem(".".join(path), f"{where}expands to more than {MAX_DEPTH} levels of nesting "
                                              "(through aliases); flatten it")


def _utf8_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise YamlProblem("", f"is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) "
                              "is not valid UTF-8; save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def _yaml_error(exc: yaml.YAMLError) -> YamlProblem:
    """A one-line message from PyYAML's multi-line one: what is wrong and where."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if (
            exc.context and exc.context_mark is not None and exc.context_mark is not mark) else ""
        return YamlProblem("", f"is not valid YAML: {exc.problem or exc.context}{where}{context}")
    return YamlProblem("", f"is not valid YAML: {exc}")


def parse_yaml(data: bytes) -> Any:
    """The one document in ``data`` (None when empty), or raise YamlProblem."""
    if len(data) > MAX_FILE_BYTES:
        raise YamlProblem("", f"is larger than {MAX_FILE_BYTES} bytes, the limit of a workspace file; split it")
    text = _utf8_text(data)
    loader = _Composer(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Walker().visit(node, ())
        return loader.construct_document(node)
    except ConstructorError as exc:
        return _raise(_yaml_error(exc))
    except yaml.YAMLError as exc:
        return _raise(_yaml_error(exc))
    finally:
        loader.dispose()


def _raise(problem: YamlProblem) -> Any:
    raise problem from None


def load_yaml(path: Path) -> Any:
    """Read ``path`` (bounded in size) and parse it with :func:`parse_yaml`; OSError propagates."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    return parse_yaml(data)
