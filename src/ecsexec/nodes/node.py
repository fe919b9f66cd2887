"""The node model: one Rundeck-style node (an ECS container), immutable and hashable.

A node has a name, string attributes and a tag set (docs/ecs-nodes.md §5). The standard
properties (``hostname``, ``username``, ``description``, ``osFamily``, ``osName``,
``osArch``, ``osVersion``) are ordinary attributes stored under their document names,
as in Rundeck's ``NodeEntryImpl``, so ``node.attributes["osFamily"]`` and
``node.os_family`` are the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, NoReturn

#: Standard properties, in the order the document writers emit them (docs/ecs-nodes.md §5).
STANDARD_PROPERTIES: Final = (
    "hostname",
    "username",
    "description",
    "osFamily",
    "osName",
    "osArch",
    "osVersion",
)

#: Keys with a meaning of their own: the name and the tag set are not attributes.
RESERVED_KEYS: Final = frozenset({"nodename", "tags"})


def is_delimiter(char: str) -> bool:
    """True for the characters Java's ``String.trim`` strips and the filter tokenizer splits on."""
    # docs/node-filter.md (Definitions): every character <= U+0020, and nothing else.
    return char <= " "


def java_trim(text: str) -> str:
    """Strip characters <= U+0020 from both ends, like Java's ``String.trim``."""
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


def is_blank(text: str | None) -> bool:
    """True when ``text`` is missing or empty after :func:`java_trim`."""
    return text is None or not java_trim(text)


def tag_set(items: Iterable[str]) -> frozenset[str]:
    """The tag set of ``items``: each item Java-trimmed, blank items dropped.

    See docs/node-filter.md §5.
    """
    result = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"tags must be strings, not {type(item).__name__}")
        trimmed = java_trim(item)
        if trimmed:
            result.add(trimmed)
    return frozenset(result)


def split_tags(text: str) -> frozenset[str]:
    """The tag set of a ``tags`` string: split at ``,``, items trimmed, blanks dropped."""
    return tag_set(text.split(","))


def utf16_key(text: str) -> bytes:
    """A sort key giving Java's ``String.compareTo`` order (UTF-16 code units)."""
    # Differs from Python's code-point order only above U+FFFF; surrogatepass keeps
    # lone surrogates (legal in both Java and Python strings) sortable.
    return text.encode("utf-16-be", "surrogatepass")


class ReadOnlyAttributes(dict[str, str]):
    """A dict that refuses changes: a node's attributes.

    A dict subclass rather than a mapping proxy so that nodes pickle, deep-copy and go
    through ``dataclasses.asdict``.
    """

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("node attributes are read-only; use dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[ReadOnlyAttributes], tuple[dict[str, str]]]:
        return (ReadOnlyAttributes, (dict(self),))


@dataclass(frozen=True)
class Node:
    """One node: a name, string attributes (standard properties included) and a tag set.

    ``attributes`` must not contain ``nodename`` or ``tags``: the name and the tag set
    are fields of their own. Tags are normalised to the tag set of docs/node-filter.md §5
    (items Java-trimmed, blanks dropped). The name must not be blank.
    """

    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"node name must be a string, not {type(self.name).__name__}")
        if is_blank(self.name):
            raise ValueError("node name must not be blank")
        attributes: dict[str, str] = {}
        for key, value in self.attributes.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"node {self.name!r}: attribute names and values must be strings")
            if key in RESERVED_KEYS:
                raise ValueError(
                    f"node {self.name!r}: {key!r} is not an attribute; use the "
                    f"{'name' if key == 'nodename' else 'tags'} field"
                )
            attributes[key] = value
        # A read-only private copy: the node stays immutable and hashable.
        object.__setattr__(self, "attributes", ReadOnlyAttributes(attributes))
        object.__setattr__(self, "tags", tag_set(self.tags))

    def __hash__(self) -> int:
        return hash((self.name, frozenset(self.attributes.items()), self.tags))

    def __repr__(self) -> str:
        attributes, tags = dict(self.attributes), set(self.tags)
        return f"Node(name={self.name!r}, attributes={attributes!r}, tags={tags!r})"

    def get(self, key: str) -> str | None:
        """The value Rundeck's ``getAttributes().get(key)`` gives, or None.

        ``nodename`` is the node name; ``tags`` is the sorted tags joined by ``", "`` (as
        Rundeck's ``NodeEntryImpl.setTags`` stores it) or None without tags.
        """
        if key == "nodename":
            return self.name
        if key == "tags":
            return ", ".join(sorted(self.tags, key=utf16_key)) if self.tags else None
        return self.attributes.get(key)

    def items(self) -> Iterator[tuple[str, str]]:
        """Every attribute of the document model, ``nodename`` first, then the attributes."""
        yield "nodename", self.name
        yield from self.attributes.items()

    @property
    def hostname(self) -> str | None:
        """The ``hostname`` standard property."""
        return self.attributes.get("hostname")

    @property
    def username(self) -> str | None:
        """The ``username`` standard property."""
        return self.attributes.get("username")

    @property
    def description(self) -> str | None:
        """The ``description`` standard property."""
        return self.attributes.get("description")

    @property
    def os_family(self) -> str | None:
        """The ``osFamily`` standard property."""
        return self.attributes.get("osFamily")

    @property
    def os_name(self) -> str | None:
        """The ``osName`` standard property."""
        return self.attributes.get("osName")

    @property
    def os_arch(self) -> str | None:
        """The ``osArch`` standard property."""
        return self.attributes.get("osArch")

    @property
    def os_version(self) -> str | None:
        """The ``osVersion`` standard property."""
        return self.attributes.get("osVersion")
