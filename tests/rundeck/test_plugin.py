"""The plugin archive against the loader's rules, and the harness's own rules (pure).

docs/rundeck-plugin.md §1-§4; every rule the harness checks is shown to reject what it must.
"""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ecsexec.cli.main import cli
from ecsexec.rundeck.plugin import (
    BASE_NAME,
    FILE_COPIER,
    NODE_EXECUTOR,
    RESOURCE_SOURCE,
    ZIP_NAME,
    build_zip,
    descriptor,
    messages_properties,
)
from tests.rundeck.harness import (
    ConfigResolutionError,
    Node,
    Plugin,
    PluginLoadError,
    Project,
    ProviderDef,
    command_line,
    env_name,
    expand,
    remote_script_path,
    resolve_config,
    validate_archive,
    validate_descriptor,
)


def write_zip(tmp_path: Path, data: bytes, name: str = ZIP_NAME) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rebuilt(
    data: bytes, *, meta: dict[str, Any] | None = None, modes: dict[str, int] | None = None
) -> bytes:
    """The archive with plugin.yaml replaced and some entries' modes changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = source.read(info)
            if meta is not None and info.filename.endswith("/plugin.yaml"):
                body = yaml.safe_dump(meta).encode()
            short = info.filename.rsplit("/", 1)[-1]
            if modes and short in modes:
                info.external_attr = (0o100000 | modes[short]) << 16
            target.writestr(info, body)
    return out.getvalue()


def test_the_archive_passes_the_loaders_rules(tmp_path: Path) -> None:
    path = write_zip(tmp_path, build_zip())
    assert validate_archive(path) == []
    plugin = Plugin.load(path, tmp_path / "cache")
    assert set(plugin.providers) == {NODE_EXECUTOR, FILE_COPIER, RESOURCE_SOURCE}
    services = {p.name: p.service for p in plugin.providers.values()}
    assert services == {
        NODE_EXECUTOR: "NodeExecutor",
        FILE_COPIER: "FileCopier",
        RESOURCE_SOURCE: "ResourceModelSource",
    }
    meta = descriptor()
    assert meta["rundeckPluginVersion"] == "2.0"
    assert meta["targetHostCompatibility"] == "unix"
    source = plugin.providers[RESOURCE_SOURCE].meta
    assert source["resource-format"] == "resourcejson"
    # Extracted with the execute bit, as Rundeck runs them.
    for provider in plugin.providers.values():
        script = plugin.contents / str(provider.meta["script-file"])
        assert script.stat().st_mode & 0o100, script


def test_the_archive_is_reproducible() -> None:
    assert build_zip() == build_zip()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.pop("targetHostCompatibility"), "2.0 needs targetHostCompatibility"),
        (lambda m: m.pop("rundeckCompatibilityVersion"), "2.0 needs rundeckCompatibilityVersion"),
        (lambda m: m.update(rundeckPluginVersion="3.0"), "rundeckPluginVersion '3.0'"),
        (lambda m: m["providers"][1].pop("script-args"), "a FileCopier needs script-args"),
        (lambda m: m["providers"][2].pop("resource-format"), "resource-format must be one of"),
        (lambda m: m["providers"][0]["config"][0].update(type="Str"), "type 'Str' is not one"),
        (lambda m: m["providers"][0]["config"][2].update(default="x"), "default 'x' is not among"),
        (lambda m: m["providers"][0].pop("script-file"), "script-file is required"),
        (lambda m: m.pop("version"), "version is required"),
    ],
)
def test_the_loaders_rules_reject_what_rundeck_refuses(change: Any, problem: str) -> None:
    meta = copy.deepcopy(descriptor())
    change(meta)
    assert any(problem in p for p in validate_descriptor(meta)), validate_descriptor(meta)


def test_a_script_without_its_execute_bit_or_a_wrong_top_directory_is_refused(
    tmp_path: Path,
) -> None:
    no_exec = write_zip(tmp_path, rebuilt(build_zip(), modes={"node-executor.sh": 0o644}))
    assert any("no execute bit" in p for p in validate_archive(no_exec))
    with pytest.raises(PluginLoadError, match="no execute bit"):
        Plugin.load(no_exec, tmp_path / "cache")
    renamed = write_zip(tmp_path, build_zip(), name="other-plugin.zip")
    assert any("top directory must be 'other-plugin'" in p for p in validate_archive(renamed))


def test_messages_name_every_property() -> None:
    text = messages_properties()
    assert text.startswith("plugin.title=")
    for provider in descriptor()["providers"]:
        for prop in provider["config"]:
            assert f"property.{prop['name']}.title=" in text
            assert f"property.{prop['name']}.description=" in text
    assert text.isascii()


def test_credentials_follow_the_commercial_plugin() -> None:
    """§8: access key + Key Storage secret, provider, assume role overridable per node."""
    for provider in descriptor()["providers"]:
        props = {p["name"]: p for p in provider["config"]}
        assert props["credential_provider"]["values"] == ["default", "instance", "container"]
        secret = props["secret_key"]["renderingOptions"]
        assert secret["valueConversion"] == "STORAGE_PATH_AUTOMATIC_READ"
        assert secret["storage-file-meta-filter"] == "Rundeck-data-type=password"
        role = props["assume_role_arn"].get("renderingOptions", {})
        per_node = role.get("instance-scope-node-attribute")
        if provider["service"] == "ResourceModelSource":
            assert per_node is None
            assert {"region", "clusters", "filter_behavior", "service_names"} <= set(props)
            assert {"task_definition_names", "container_names", "tags"} <= set(props)
        else:
            assert per_node == "assume-role-arn"


def test_the_cli_writes_the_archive(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["rundeck", "plugin", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = tmp_path / ZIP_NAME
    assert str(written) in result.output
    assert written.read_bytes() == build_zip()
    missing = CliRunner().invoke(cli, ["rundeck", "plugin", "-o", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "is not a directory" in missing.output
    assert not (tmp_path / "nope").exists()


# -- the harness's own rules (docs/rundeck-plugin.md §3-§4) ---------------------------------------


def test_env_names_follow_the_renaming_rule() -> None:
    assert env_name("node.ECS:Cluster-ARN") == "RD_NODE_ECS_CLUSTER_ARN"
    assert env_name("config.secret_key") == "RD_CONFIG_SECRET_KEY"
    assert env_name("file-copy.destination") == "RD_FILE_COPY_DESTINATION"
    # Different attributes can collide after the rewrite, as §4 warns.
    assert env_name("node.a-b") == env_name("node.a:b")


EXECUTOR = ProviderDef(
    {
        "name": "x",
        "service": "NodeExecutor",
        "config": [
            {
                "name": "role",
                "type": "String",
                "renderingOptions": {"instance-scope-node-attribute": "assume-role-arn"},
            },
            {"name": "region", "type": "String", "default": "${node.ECS:Region}"},
            {
                "name": "secret",
                "type": "String",
                "renderingOptions": {
                    "selectionAccessor": "STORAGE_PATH",
                    "valueConversion": "STORAGE_PATH_AUTOMATIC_READ",
                },
            },
            {"name": "flag", "type": "Boolean", "default": "yes"},
            {"name": "unset", "type": "String"},
        ],
    },
    "2.0",
)


def test_properties_resolve_in_rundecks_order() -> None:
    node = Node("n1", {"assume-role-arn": "arn:node", "ECS:Region": "eu-west-1"})
    project = Project(
        properties={"project.plugin.NodeExecutor.x.role": "arn:project"},
        framework={
            "framework.plugin.NodeExecutor.x.role": "arn:framework",
            "framework.plugin.NodeExecutor.x.secret": "keys/project/shop/aws",
        },
        key_storage={"keys/project/shop/aws": "s3cr3t"},
    )
    config = resolve_config(EXECUTOR, project, node)
    assert config == {
        "role": "arn:node",  # the node attribute first
        "region": "eu-west-1",  # ${node.X} expanded per node
        "secret": "s3cr3t",  # the key's content, never its path
        "flag": "false",  # a Boolean is the string true or false (Java's parseBoolean)
    }
    assert "unset" not in config
    no_attribute = resolve_config(EXECUTOR, project, Node("n2", {}))
    assert no_attribute["role"] == "arn:project"
    del project.properties["project.plugin.NodeExecutor.x.role"]
    assert resolve_config(EXECUTOR, project, Node("n2", {}))["role"] == "arn:framework"
    project.key_storage.clear()
    with pytest.raises(ConfigResolutionError, match="cannot read Key Storage"):
        resolve_config(EXECUTOR, project, node)


def test_script_args_and_interpreter_expand_like_rundeck(tmp_path: Path) -> None:
    context = {"config": {"region": "us-east-1"}, "file-copy": {"file": "/tmp/a b"}}
    assert expand("${config.region}/${config.nope}", context) == "us-east-1/${config.nope}"
    script = tmp_path / "s.sh"
    listed = ProviderDef({"script-args": ["${file-copy.file}", "x y"]}, "2.0")
    assert command_line(listed, script, context) == [str(script), "/tmp/a b", "x y"]
    string = ProviderDef(
        {"script-args": "${file-copy.file} 'x y'", "script-interpreter": "python3 -u"}, "2.0"
    )
    assert command_line(string, script, context) == [
        "python3",
        "-u",
        str(script),
        "/tmp/a b",
        "x y",
    ]
    quoted = ProviderDef(
        {"script-args": "a", "script-interpreter": "sh -c", "interpreter-args-quoted": True}, "2.0"
    )
    assert command_line(quoted, script, context) == ["sh", "-c", f"{script} a"]


def test_an_invocation_carries_the_rd_variables(tmp_path: Path) -> None:
    plugin = Plugin.load(write_zip(tmp_path, build_zip()), tmp_path / "cache")
    node = Node(
        "orders-1",
        {"ECS:Cluster-ARN": "arn:c", "assume-role-arn": "arn:role", "osFamily": "unix"},
        tags=("ecs", "fargate"),
    )
    project = Project(
        properties={
            f"project.plugin.NodeExecutor.{NODE_EXECUTOR}.access_key_id": "AKIAEXAMPLE",
            f"project.plugin.NodeExecutor.{NODE_EXECUTOR}.secret_key": "keys/project/shop/aws",
        },
        key_storage={"keys/project/shop/aws": "the-secret"},
    )
    call = plugin.invocation(
        NODE_EXECUTOR, project, node=node, exec_command="echo hi", job={"execid": "7"}
    )
    env = call.env
    assert env["RD_EXEC_COMMAND"] == "echo hi"
    assert env["RD_NODE_ECS_CLUSTER_ARN"] == "arn:c"
    assert env["RD_NODE_NAME"] == "orders-1" and env["RD_NODE_TAGS"] == "ecs,fargate"
    assert env["RD_NODE_OS_FAMILY"] == "unix"
    assert env["RD_CONFIG_SECRET_KEY"] == env["RD_NODEEXECUTOR_SECRET_KEY"] == "the-secret"
    assert env["RD_CONFIG_ASSUME_ROLE_ARN"] == "arn:role"
    assert env["RD_CONFIG_ECSEXEC_PATH"] == "ecsexec"
    assert env["RD_JOB_EXECID"] == "7"
    assert env["RD_PLUGIN_BASE"] == str(plugin.contents)
    assert env["RD_RUNDECK_PROJECT"] == "shop"
    assert call.argv == [str((plugin.contents / "node-executor.sh").resolve())]
    assert "the-secret" not in " ".join(call.argv)
    copier = plugin.invocation(FILE_COPIER, project, node=node, file_copy=("/tmp/f", "/dst/"))
    assert copier.argv[1:] == ["/tmp/f", "/dst/"]
    assert copier.env["RD_FILE_COPY_DESTINATION"] == "/dst/"
    source = plugin.invocation(
        RESOURCE_SOURCE,
        Project(properties={"resources.source.1.config.region": "us-east-1"}),
        source_index=1,
    )
    assert source.env["RD_CONFIG_REGION"] == "us-east-1"
    assert source.env["RD_RESOURCEMODELSOURCE_FILTER_BEHAVIOR"] == "include"


def test_script_step_paths() -> None:
    assert remote_script_path("/tmp/", 1, "42", "orders-1", "dispatch") == (
        "/tmp/1-42-orders-1-dispatch.sh"
    )
    assert ZIP_NAME.removesuffix(".zip") == BASE_NAME
