"""The web console's access policy: what each role may do, and on which nodes and jobs.

A user has one role. A role allows a set of actions, on the nodes its node filter selects
(docs/node-filter.md; none given: every node) and the jobs whose path its ``jobs`` regex
matches in full (none given: every job). Everything not allowed is denied: an unknown
role may do nothing, and a command aimed at several nodes is refused as a whole if one of
them is outside the role's filter (:meth:`Policy.refused_nodes`), before anything runs.
``admin`` implies every other action.

Roles come from ``[server.roles.NAME]`` tables in ``ecsexec.toml`` (validated by
:mod:`ecsexec.config`, errors name file:line); the built-in ``admin``, ``operator`` and
``viewer`` roles stay unless a table of the same name redefines them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from ecsexec.config import Config, RoleConfig
from ecsexec.errors import AccessDenied, FilterSyntaxError
from ecsexec.nodes.filter import NodeFilter, parse_filter
from ecsexec.nodes.javaregex import BoundedRegex, RegexCostError, compile_bounded
from ecsexec.nodes.node import Node


class Action(enum.StrEnum):
    """What a role may be allowed; the values are what ``actions = [...]`` lists."""

    VIEW_NODES = "view_nodes"
    RUN_COMMAND = "run_command"
    RUN_JOB = "run_job"
    OPEN_TERMINAL = "open_terminal"
    MANAGE_KEYS = "manage_keys"
    VIEW_ACTIVITY = "view_activity"
    ADMIN = "admin"  # users, audit, and every action above

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS: Final = {
    Action.VIEW_NODES: "view nodes",
    Action.RUN_COMMAND: "run commands",
    Action.RUN_JOB: "run jobs",
    Action.OPEN_TERMINAL: "open terminals",
    Action.MANAGE_KEYS: "manage keys",
    Action.VIEW_ACTIVITY: "view activity",
    Action.ADMIN: "administer the server",
}

REFUSED_SHOWN: Final = 5  # refused node names an error lists before "and N more"


@dataclass(frozen=True)
class Role:
    """One role: its actions, its node filter ("" = every node), its job regex ("" = every
    job)."""

    name: str
    actions: frozenset[Action]
    nodes: str = ""
    jobs: str = ""
    description: str = ""
    _filter: NodeFilter | None = field(default=None, init=False, compare=False, repr=False)
    _jobs: BoundedRegex | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Parsed once; a bad filter or regex raises here (config has already named its line).
        object.__setattr__(self, "_filter", parse_filter(self.nodes) if self.nodes else None)
        object.__setattr__(self, "_jobs", compile_bounded(self.jobs) if self.jobs else None)

    def allows(self, action: Action) -> bool:
        return Action.ADMIN in self.actions or action in self.actions

    def covers(self, node: Node) -> bool:
        """Whether ``node`` is within this role's node filter (a filter that cannot be
        evaluated on the node refuses it)."""
        if self._filter is None:
            return True
        try:
            return self._filter.keeps(node)
        except FilterSyntaxError:
            return False

    def covers_job(self, job_path: str) -> bool:
        if self._jobs is None:
            return True
        try:
            return bool(self._jobs.fullmatch(job_path))
        except RegexCostError:
            return False

    @classmethod
    def from_config(cls, role: RoleConfig) -> Role:
        return cls(
            role.name,
            frozenset(Action(a) for a in role.actions),
            role.nodes,
            role.jobs,
            role.description,
        )


def _default_roles() -> dict[str, Role]:
    every = frozenset(Action)
    return {
        "admin": Role("admin", every, description="everything, on every node"),
        "operator": Role(
            "operator",
            frozenset(
                {
                    Action.VIEW_NODES,
                    Action.RUN_COMMAND,
                    Action.RUN_JOB,
                    Action.OPEN_TERMINAL,
                    Action.VIEW_ACTIVITY,
                }
            ),
            description="run commands, jobs and terminals on every node; no keys, no admin",
        ),
        "viewer": Role(
            "viewer",
            frozenset({Action.VIEW_NODES, Action.VIEW_ACTIVITY}),
            description="see nodes and activity; run nothing",
        ),
    }


class Policy:
    """The roles in force; every question about an unknown role is answered no."""

    def __init__(self, roles: Mapping[str, Role]) -> None:
        self._roles = dict(roles)

    @property
    def roles(self) -> Mapping[str, Role]:
        return MappingProxyType(self._roles)

    @classmethod
    def default(cls) -> Policy:
        """admin: everything; operator: view_nodes, run_command, run_job, open_terminal,
        view_activity; viewer: view_nodes, view_activity. All on every node and job."""
        return cls(_default_roles())

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        """The built-in roles, with ``[server.roles.NAME]`` tables added or replacing them."""
        roles = _default_roles()
        for name, role in config.server.roles.items():
            roles[name] = Role.from_config(role)
        return cls(roles)

    def role(self, name: str) -> Role | None:
        return self._roles.get(name)

    def allows(self, role: str, action: Action) -> bool:
        found = self._roles.get(role)
        return found is not None and found.allows(action)

    def visible_nodes(self, role: str, nodes: Sequence[Node]) -> list[Node]:
        """The nodes within the role's filter, in order (none for an unknown role)."""
        found = self._roles.get(role)
        if found is None:
            return []
        return [node for node in nodes if found.covers(node)]

    def refused_nodes(self, role: str, nodes: Sequence[Node]) -> list[Node]:
        """The nodes outside the role's filter, in order (all for an unknown role)."""
        found = self._roles.get(role)
        if found is None:
            return list(nodes)
        return [node for node in nodes if not found.covers(node)]

    def allows_job(self, role: str, job_name: str) -> bool:
        """Whether the role's ``jobs`` regex matches the whole job path (group/name)."""
        found = self._roles.get(role)
        return found is not None and found.covers_job(job_name)

    # --- the same questions, as errors that say why ----------------------------------------

    def check(self, role: str, action: Action) -> None:
        """Raise :class:`AccessDenied` unless ``role`` may do ``action``."""
        if self.allows(role, action):
            return
        if role not in self._roles:
            raise AccessDenied(action, f"role {role!r} is not defined; it may do nothing")
        raise AccessDenied(action, f"role {role!r} may not {action.label}")

    def check_nodes(self, role: str, action: Action, nodes: Sequence[Node]) -> None:
        """Raise :class:`AccessDenied` unless ``role`` may do ``action`` on every node."""
        self.check(role, action)
        refused = self.refused_nodes(role, nodes)
        if refused:
            names = ", ".join(node.name for node in refused[:REFUSED_SHOWN])
            more = len(refused) - REFUSED_SHOWN
            if more > 0:
                names += f" and {more} more"
            scope = self._roles[role].nodes
            raise AccessDenied(
                action,
                f"role {role!r} is limited to nodes matching {scope!r}; "
                f"{len(refused)} of the {len(nodes)} nodes are outside it: {names}",
            )

    def check_job(self, role: str, job_name: str) -> None:
        """Raise :class:`AccessDenied` unless ``role`` may run the job ``job_name``."""
        self.check(role, Action.RUN_JOB)
        if not self.allows_job(role, job_name):
            pattern = self._roles[role].jobs
            raise AccessDenied(
                Action.RUN_JOB,
                f"role {role!r} may run only jobs matching /{pattern}/, not {job_name!r}",
            )
