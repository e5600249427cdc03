"""Read YAML text into plain data while remembering where every key and value came from.

`yaml.safe_load` throws positions away, and without them a schema error can only say "somewhere in
routes[3]". Composing the node graph ourselves keeps each node's start mark, so every later stage can pin
its problems to a line and column. Doing the construction ourselves also lets us refuse duplicate keys,
which PyYAML silently resolves by keeping the last one (a classic way to lose a setting without noticing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from router.config.problems import ConfigError, JsonPath, Problem, format_json_path

Position = tuple[int, int]
"""1-based (line, column)."""

if TYPE_CHECKING:
    from typing import TypeAlias

    Loader: TypeAlias = yaml.SafeLoader | yaml.CSafeLoader

_MERGE_TAG = "tag:yaml.org,2002:merge"
# Scalars we build with PyYAML's safe constructors. A timestamp-looking value stays its source text (the
# config only wants JSON-like values, and a datetime would confuse the schema); other tags are refused.
_CONSTRUCTED_TAGS = frozenset("tag:yaml.org,2002:" + name for name in ("null", "bool", "int", "float", "str"))
_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_COLLECTION_TAGS = frozenset(("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"))

MAX_ALIAS_EXPANSION = 100_000
"""How many nodes aliases (`*name`, `<<: *name`) may add to the document once expanded.

The node graph PyYAML composes shares an anchored node between its aliases, so a few kilobytes can describe
billions of nodes ("billion laughs"); building them would take the process's memory and, in a live
router, freeze it. Real tables reuse a few defaults a few hundred times at most.
"""


@dataclass(frozen=True)
class Document:
    """Parsed data plus where each part of it sits in the file.

    `values` maps a path to the position of the value at that path; `keys` maps the path of a mapping
    entry to the position of its key (unknown or misspelt keys are best reported at the key itself).
    """

    file: str
    data: dict[str, Any]
    values: Mapping[JsonPath, Position]
    keys: Mapping[JsonPath, Position]

    def locate(self, path: JsonPath, *, at_key: bool = False) -> Position:
        """Position of `path`, falling back to its nearest located ancestor (e.g. for a missing key)."""
        if at_key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            position = self.values.get(path[:end])
            if position is not None:
                return position
        return (1, 1)

    def problem(self, path: JsonPath, message: str, *, at_key: bool = False) -> Problem:
        """A Problem about `path`, located in this document."""
        line, col = self.locate(path, at_key=at_key)
        return Problem(self.file, line, col, message, format_json_path(path))

    def with_data(self, data: dict[str, Any]) -> Document:
        """The same positions over transformed data of the same shape (e.g. after interpolation)."""
        return dataclasses.replace(self, data=data)


_FAST_LOADER: type[Loader] | None = getattr(yaml, "CSafeLoader", None)
"""libyaml's parser with PyYAML's safe constructors, when PyYAML was built with it: it composes the same
nodes with the same marks, some ten times faster (a 10,000-route table took seconds in pure Python)."""


def parse_yaml(text: str, file: str) -> Document:
    """Parse one YAML document whose top level is a mapping; raise ConfigError with located problems.

    The text is composed with libyaml when it is there. Any text it refuses, or that PyYAML's reader would
    refuse, is composed again by the pure-Python loader, whose messages are the ones users are told.
    """
    loader: Loader | None = None
    root: yaml.Node | None = None
    if _FAST_LOADER is not None and not yaml.reader.Reader.NON_PRINTABLE.search(text):
        loader = _FAST_LOADER(text)
        try:
            root = loader.get_single_node()
        except yaml.YAMLError:
            loader.dispose()
            loader = None
    if loader is None:
        loader, root = _compose(text, file)
    try:
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL_TAG and not root.value):
            message = "the file is empty; a routing table needs version, upstreams and routes"
            raise ConfigError([Problem(file, 1, 1, message)])
        if not isinstance(root, yaml.MappingNode):
            line, col = _mark(root.start_mark)
            raise ConfigError(
                [Problem(file, line, col, f"the top level must be a mapping (key: value), not {_kind(root)}")]
            )
        builder = _Builder(loader, file)
        try:
            data = builder.build(root, ())
        except _TooManyAliases as exc:
            line, col = _mark(exc.node.start_mark)
            message = (
                f"aliases expand this document beyond {MAX_ALIAS_EXPANSION:,} nodes; "
                "write the repeated parts out or reuse fewer nested anchors"
            )
            raise ConfigError([Problem(file, line, col, message)]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ConfigError(builder.problems)
    return Document(file=file, data=data, values=builder.values, keys=builder.keys)


def _compose(text: str, file: str) -> tuple[Loader, yaml.Node | None]:
    """The pure-Python loader and its node graph, or ConfigError locating why the text is not YAML."""
    try:
        # The reader checks the whole text for unprintable characters as soon as the loader is made.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line, col = _offset_position(text, exc.position)
        raise ConfigError([Problem(file, line, col, f"cannot read YAML: {exc.reason}")]) from None
    try:
        return loader, loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        raise ConfigError([_syntax_problem(file, exc)]) from None


class _TooManyAliases(Exception):
    """Aliases expanded past MAX_ALIAS_EXPANSION nodes; `node` is where the budget ran out."""

    def __init__(self, node: yaml.Node) -> None:
        super().__init__()
        self.node = node


class _Builder:
    """Turns a composed node graph into dicts, lists and scalars, recording positions on the way.

    Every node built a second time (reached through an alias) counts against MAX_ALIAS_EXPANSION.
    """

    def __init__(self, loader: Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.values: dict[JsonPath, Position] = {}
        self.keys: dict[JsonPath, Position] = {}
        # Every path given a position, in order, and where the outermost build of each mapping being built
        # began in it: a mapping's positions are all recorded after that, so forgetting the ones under a
        # key looks at that mapping's own records, not at the whole file's (quadratic in the file).
        self._recorded: list[JsonPath] = []
        self._began: dict[JsonPath, int] = {}
        self.problems: list[Problem] = []
        self._active: set[int] = set()  # nodes being built right now: an alias back to one is a cycle
        self._seen: set[int] = set()
        self._expanded = 0

    def report(self, node: yaml.Node, path: JsonPath, message: str) -> None:
        line, col = _mark(node.start_mark)
        self.problems.append(Problem(self.file, line, col, message, format_json_path(path)))

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        ident = id(node)
        if ident in self._seen:
            if ident in self._active:
                self.report(
                    node,
                    path,
                    "an alias refers to a mapping or list that contains it; YAML cycles are not allowed",
                )
                return None
            self._expanded += 1
            if self._expanded > MAX_ALIAS_EXPANSION:
                raise _TooManyAliases(node)
        else:
            self._seen.add(ident)
        if type(node) is yaml.ScalarNode:  # most nodes; a scalar contains nothing, so no cycle to watch
            value: Any = self._scalar(node, path)
            mark = node.start_mark
            self.values[path] = (mark.line + 1, mark.column + 1)
            self._recorded.append(path)
            return value
        self._active.add(ident)
        try:
            if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
                self.report(node, path, f"unsupported YAML tag {node.tag}; write a plain mapping or list")
            if isinstance(node, yaml.MappingNode):
                value = self._mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                value = [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            else:
                value = self._scalar(node, path)
        finally:
            self._active.discard(ident)
        # Recorded last: merged-in mappings are built at the same path and must not keep their position.
        self.values[path] = _mark(node.start_mark)
        self._recorded.append(path)
        return value

    def _scalar(self, node: yaml.Node, path: JsonPath) -> Any:
        if node.tag == _STR_TAG:  # most values: what the safe constructor returns for them, without it
            return node.value
        if node.tag == _TIMESTAMP_TAG:
            return str(node.value)
        if node.tag not in _CONSTRUCTED_TAGS:
            self.report(node, path, f"unsupported YAML tag {node.tag}; write a plain value")
            return None
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:  # `!!int eighty` fails inside PyYAML with a ValueError
            short = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.report(node, path, f"invalid value for {short}: {node.value!r} ({exc})")
            return None

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        outermost = path not in self._began  # a merged-in mapping is built at the path it is merged into
        if outermost:
            self._began[path] = len(self._recorded)
        try:
            return self._entries(node, path)
        finally:
            if outermost:
                del self._began[path]

    def _entries(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        first_seen: dict[str, yaml.Node] = {}
        explicit: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.report(key_node, path, f"a key must be a plain string, not {_kind(key_node)}")
                continue
            key = str(key_node.value)
            if key in first_seen:
                first_line = first_seen[key].start_mark.line + 1
                self.report(
                    key_node,
                    (*path, key),
                    f"duplicate key '{key}' (first given at line {first_line}); YAML would silently keep "
                    "only the last one, so remove one of them",
                )
                continue
            first_seen[key] = key_node
            explicit.append((key, key_node, value_node))
        # YAML merge keys (`<<: *base`): explicit keys win over merged ones, earlier merges over later ones.
        for source in reversed(self._merge_sources(merges, path)):
            merged = self.build(source, path)
            if isinstance(merged, dict):
                result.update(merged)
        for key, key_node, value_node in explicit:
            child = (*path, key)
            if key in result:
                self._forget(child, since=self._began[path])
            self.keys[child] = _mark(key_node.start_mark)
            self._recorded.append(child)
            result[key] = self.build(value_node, child)
        return result

    def _merge_sources(self, merges: list[yaml.Node], path: JsonPath) -> list[yaml.Node]:
        sources: list[yaml.Node] = []
        for merge in merges:
            items = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for item in items:
                if isinstance(item, yaml.MappingNode):
                    sources.append(item)
                else:
                    self.report(item, path, "'<<' merges only mappings, e.g. <<: *defaults")
        return sources

    def _forget(self, prefix: JsonPath, since: int) -> None:
        """Drop positions under a merged-in value that an explicit key replaces (all recorded since the
        build of the mapping holding it began)."""
        size = len(prefix)
        for stale in self._recorded[since:]:
            if stale[:size] == prefix:
                self.values.pop(stale, None)
                self.keys.pop(stale, None)


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = _mark(mark) if mark is not None else (1, 1)
    parts = [part for part in (exc.context, exc.problem) if part]
    detail = "; ".join(parts) if parts else "invalid YAML"
    return Problem(file, line, col, f"YAML syntax error: {detail}")


def _mark(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


def _offset_position(text: str, offset: int) -> Position:
    line_start = text.rfind("\n", 0, offset) + 1
    return (text.count("\n", 0, offset) + 1, offset - line_start + 1)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"a scalar ({node.value!r})"
