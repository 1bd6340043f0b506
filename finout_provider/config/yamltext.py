"""YAML read as the text the user wrote (the clusters file's loader; pure, no Airflow).

PyYAML follows YAML 1.1, which guesses a type for every plain scalar: ``03600`` is octal 1920,
``0123`` is 83, ``yes`` and ``on`` are booleans, ``12:30`` is 750, and ``2025-13-01`` raises a bare
``ValueError`` while the file loads. Here every scalar stays the text written (``~``, ``null`` and
nothing stay "no value"), so the key that reads a value decides what it means. Mappings remember
the line of each key and the keys given twice. A document whose aliases would expand past a bound
(an "alias bomb") is refused before anything is built from it, and every error names its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 16 << 20
# Nodes of the document with every alias expanded: far above any real clusters file (about
# 20 per cluster), far below what an alias bomb expands to.
MAX_NODES = 2_000_000
MERGE = "tag:yaml.org,2002:merge"


class YamlTextError(ValueError):
    """The text is not YAML this loader accepts; ``line`` (1-based) is where, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class TextMap(dict[str, Any]):
    """A mapping of the document: ``line`` of the mapping, ``key_lines`` of each key, and the
    keys given more than once (``duplicates``: key and the line of its repetition)."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.duplicates: list[tuple[str, int]] = []


# libyaml's parser where PyYAML was built with it (about 10x faster on a large fleet's file).
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    yaml_implicit_resolvers: dict[Any, Any] = {}

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as err:  # e.g. an explicit !!timestamp
            raise YamlTextError(str(err), node.start_mark.line + 1) from None


_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver(MERGE, re.compile(r"^(?:<<)$"), ["<"])


def _construct_map(loader: _Loader, node: MappingNode) -> Iterator[TextMap]:
    data = TextMap(node.start_mark.line + 1)
    yield data
    for key_node, _ in node.value:
        if key_node.tag == MERGE:
            continue
        if not isinstance(key_node, ScalarNode):
            raise YamlTextError("a key must be a plain name, not a list or mapping", key_node.start_mark.line + 1)
        key, line = str(key_node.value), key_node.start_mark.line + 1
        if key in data.key_lines:
            data.duplicates.append((key, line))
        else:
            data.key_lines[key] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:  # merged keys first, so the entry's own keys win
        data[str(loader.construct_object(key_node))] = loader.construct_object(value_node, deep=False)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _check_expansion(root: Node) -> None:
    """Refuse a document whose aliases expand past :data:`MAX_NODES` (counted without expanding)."""
    sizes: dict[int, int] = {}

    def size(node: Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a node that contains itself counts once
        if isinstance(node, SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        if total > MAX_NODES:
            raise YamlTextError(
                f"its aliases expand to more than {MAX_NODES:,} values (an alias bomb?); write the values out",
                node.start_mark.line + 1,
            )
        sizes[id(node)] = total
        return total

    size(root)


def load(text: str) -> Any:
    """The document in ``text``, every scalar a string (or ``None``), mappings as :class:`TextMap`."""
    documents = load_all(text)
    if len(documents) > 1:
        raise YamlTextError("expected one document, found several (separated by '---')")
    return documents[0] if documents else None


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (a stream separated by ``---``), read as :func:`load` reads one."""
    if len(text) > MAX_BYTES:
        raise YamlTextError(f"the text is larger than {MAX_BYTES >> 20} MiB")
    loader = _Loader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said one follows
            _check_expansion(node)
            documents.append(loader.construct_document(node))
    except yaml.MarkedYAMLError as err:
        mark = err.context_mark or err.problem_mark
        problem = " ".join(str(part) for part in (err.context, err.problem) if part)
        raise YamlTextError(problem or str(err), mark.line + 1 if mark else None) from None
    except yaml.YAMLError as err:
        raise YamlTextError(str(err)) from None
    except RecursionError:
        raise YamlTextError("the document is nested too deeply") from None
    finally:
        loader.dispose()
    return documents


def plain(value: Any) -> Any:
    """``value`` with every :class:`TextMap` turned into a plain dict (for ``yaml.safe_dump``)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
