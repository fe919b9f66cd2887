"""The access policy: deny by default, admin implies all, node and job scoping (pure)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ecsexec.config import SERVER_ACTIONS, load_config
from ecsexec.errors import AccessDenied, FilterSyntaxError
from ecsexec.nodes.filter import parse_filter
from ecsexec.nodes.node import Node
from ecsexec.web.acl import Action, Policy, Role

WEB = [Node(f"web-{i}", {"ECS:Service-Name": "web", "region": "eu-west-1"}) for i in range(3)]
DB = [Node("db-0", {"ECS:Service-Name": "db", "region": "eu-west-1"}, frozenset({"prod"}))]
NODES = WEB + DB


def policy_from(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "ecsexec.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return Policy.from_config(load_config(path, environ={}))


def test_the_actions_are_the_ones_config_accepts() -> None:
    assert tuple(Action) == tuple(Action(a) for a in SERVER_ACTIONS)
    assert all(action.label for action in Action)


def test_default_roles() -> None:
    policy = Policy.default()
    assert set(policy.roles) == {"admin", "operator", "viewer"}
    assert all(policy.allows("admin", action) for action in Action)
    operator = {a for a in Action if policy.allows("operator", a)}
    assert operator == {
        Action.VIEW_NODES,
        Action.RUN_COMMAND,
        Action.RUN_JOB,
        Action.OPEN_TERMINAL,
        Action.VIEW_ACTIVITY,
    }
    viewer = {a for a in Action if policy.allows("viewer", a)}
    assert viewer == {Action.VIEW_NODES, Action.VIEW_ACTIVITY}
    assert policy.visible_nodes("viewer", NODES) == NODES
    assert policy.allows_job("operator", "ops/anything")


def test_an_unknown_role_may_do_nothing() -> None:
    policy = Policy.default()
    assert not any(policy.allows("intern", action) for action in Action)
    assert policy.visible_nodes("intern", NODES) == []
    assert policy.refused_nodes("intern", NODES) == NODES
    assert not policy.allows_job("intern", "x")
    with pytest.raises(AccessDenied, match="role 'intern' is not defined"):
        policy.check("intern", Action.VIEW_NODES)


def test_admin_implies_every_action() -> None:
    role = Role("root", frozenset({Action.ADMIN}))
    assert all(role.allows(action) for action in Action)


def test_configured_roles_scope_nodes_and_jobs_with_the_real_engines(tmp_path: Path) -> None:
    policy = policy_from(
        tmp_path,
        """
        [server.roles.web-oncall]
        actions = ["view_nodes", "run_command", "run_job"]
        nodes = "ECS:Service-Name: web"
        jobs = "ops/(restart|thread-dump)"

        [server.roles.viewer]
        actions = ["view_activity"]

        [server.roles.not-prod]
        actions = ["view_nodes"]
        nodes = "region: eu-.* !tags: prod"
        """,
    )
    assert set(policy.roles) == {"admin", "operator", "viewer", "web-oncall", "not-prod"}
    assert policy.visible_nodes("web-oncall", NODES) == WEB
    assert policy.refused_nodes("web-oncall", NODES) == DB
    assert policy.visible_nodes("not-prod", NODES) == WEB
    assert policy.allows_job("web-oncall", "ops/restart")
    assert not policy.allows_job("web-oncall", "ops/restart-all")  # the whole path must match
    assert not policy.allows_job("web-oncall", "dev/ops/restart")
    # a redefined built-in role replaces the built-in one
    assert not policy.allows("viewer", Action.VIEW_NODES)
    assert policy.allows("viewer", Action.VIEW_ACTIVITY)
    assert not policy.allows("web-oncall", Action.OPEN_TERMINAL)


def test_a_command_reaching_outside_the_filter_is_refused_as_a_whole() -> None:
    policy = Policy(
        {"web": Role("web", frozenset({Action.RUN_COMMAND}), nodes="ECS:Service-Name: web")}
    )
    policy.check_nodes("web", Action.RUN_COMMAND, WEB)
    with pytest.raises(AccessDenied) as info:
        policy.check_nodes("web", Action.RUN_COMMAND, NODES)
    assert info.value.action == "run_command"
    assert "limited to nodes matching 'ECS:Service-Name: web'" in info.value.reason
    assert "1 of the 4 nodes are outside it: db-0" in info.value.reason
    many = [Node(f"db-{i}", {"ECS:Service-Name": "db"}) for i in range(8)]
    with pytest.raises(AccessDenied, match=r"db-0, db-1, db-2, db-3, db-4 and 3 more"):
        policy.check_nodes("web", Action.RUN_COMMAND, many)
    with pytest.raises(AccessDenied, match="may not open terminals"):
        policy.check_nodes("web", Action.OPEN_TERMINAL, WEB)


def test_job_checks_say_which_jobs_the_role_may_run() -> None:
    policy = Policy({"ops": Role("ops", frozenset({Action.RUN_JOB}), jobs="ops/.*")})
    policy.check_job("ops", "ops/restart")
    with pytest.raises(AccessDenied, match=r"only jobs matching /ops/\.\*/, not 'dev/x'"):
        policy.check_job("ops", "dev/x")
    with pytest.raises(AccessDenied, match="may not run jobs"):
        Policy.default().check_job("viewer", "ops/restart")


def test_a_filter_that_cannot_be_evaluated_on_a_node_refuses_it() -> None:
    # a back-reference under nested quantifiers: no bounded matcher for long values
    text = "name: (a+)+\\1x"
    role = Role("r", frozenset({Action.VIEW_NODES}), nodes=text)
    long_name = Node("a" * 5000)
    with pytest.raises(FilterSyntaxError, match="too costly"):
        parse_filter(text).keeps(long_name)
    assert not role.covers(long_name)
    assert role.covers(Node("aax"))
