"""ecsexec.toml: discovery, precedence, per-source credentials, and errors with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ecsexec.config import (
    CONFIG_NAME,
    AwsSettings,
    DispatchSettings,
    Locator,
    config_path,
    load_config,
)
from ecsexec.errors import ConfigurationError
from ecsexec.exec.dispatcher import DEFAULT_BURST, DEFAULT_RATE, DEFAULT_THREADS, DEFAULT_TIMEOUT
from ecsexec.nodes.ecs_source import EcsSourceConfig
from ecsexec.nodes.inventory import FileSourceConfig

ROLE = "arn:aws:iam::123456789012:role/ecsexec-operator"


def write(directory: Path, text: str, name: str = CONFIG_NAME) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_of(path: Path, env: dict[str, str] | None = None, **kw: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ=env or {}, **kw)  # type: ignore[arg-type]
    return str(info.value)


def test_found_upward_from_cwd_or_named_by_env_or_flag(tmp_path: Path) -> None:
    top = write(tmp_path, '[aws]\nregion = "eu-west-1"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert config_path(environ={}, cwd=deep) == top
    assert load_config(environ={}, cwd=deep).aws.region == "eu-west-1"
    other = write(tmp_path / "a", '[aws]\nregion = "us-west-2"\n', name="other.toml")
    assert load_config(environ={"ECSEXEC_CONFIG": str(other)}, cwd=deep).aws.region == "us-west-2"
    # --config wins over ECSEXEC_CONFIG
    named = load_config(str(top), environ={"ECSEXEC_CONFIG": str(other)}, cwd=deep)
    assert named.aws.region == "eu-west-1"
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigurationError, match=r"ECSEXEC_CONFIG: configuration file .*nope"):
        load_config(environ={"ECSEXEC_CONFIG": str(missing)})
    with pytest.raises(ConfigurationError, match="--config: configuration file"):
        load_config(str(missing), environ={})


def test_no_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config.path is None
    assert config.aws == AwsSettings()
    assert config.dispatch == DispatchSettings(
        threads=DEFAULT_THREADS,
        rate=DEFAULT_RATE,
        burst=DEFAULT_BURST,
        timeout=DEFAULT_TIMEOUT,
        keepgoing=True,
    )
    assert config.sources == ()


def test_full_file_and_origins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        [aws]
        region = "us-east-1"
        credential_provider = "container"
        assume_role_arn = "{ROLE}"
        external_id = "ext-1"
        endpoint_url = "http://127.0.0.1:9999"
        ca_bundle = "ca.pem"

        [[sources]]
        name = "web"
        region = "eu-west-1"
        clusters = "demo, demo-staging ,"
        service_names = ["web"]
        tags = {{team = "web"}}
        refresh_interval = 0

        [[sources]]
        type = "file"
        path = "nodes.yaml"

        [dispatch]
        threads = 4
        rate = 2.5
        timeout = 30
        keepgoing = false

        [keystore]
        dir = "keys-here"
        """,
    )
    config = load_config(path, environ={})
    assert config.aws.credential_provider == "container"
    assert config.aws.ca_bundle == str(tmp_path / "ca.pem")  # relative to the file
    web, nodes_file = config.sources
    assert isinstance(web.config, EcsSourceConfig)
    assert web.config == EcsSourceConfig(
        region="eu-west-1",
        clusters=("demo", "demo-staging"),
        service_names=("web",),
        tags=(("team", "web"),),
        assume_role_arn=ROLE,
        refresh_interval=0.0,
    )
    # The source inherits [aws]'s credentials, role and endpoint; its own region wins.
    assert web.aws.credential_provider == "container" and web.aws.region == "eu-west-1"
    assert web.aws.external_id == "ext-1"
    assert nodes_file.config == FileSourceConfig(tmp_path / "nodes.yaml")
    assert config.dispatch == DispatchSettings(threads=4, rate=2.5, timeout=30.0, keepgoing=False)
    assert config.keystore_dir() == tmp_path / "keys-here"
    assert config.origin("aws.credential_provider") == f"{path}:3"
    assert config.origin("dispatch.rate") == f"{path}:23"
    assert config.origin("aws.profile") == "default"
    assert web.origin == f"{path}:9"


def test_environment_and_flags_override_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [aws]
        region = "us-east-1"
        access_key_id = "AKIAFILEFILEFILE1234"
        secret_key_path = "keys/project/p/aws-secret"

        [dispatch]
        threads = 4
        burst = 12
        """,
    )
    assert load_config(path, environ={}).aws.credential_provider == "keys"  # implied by the pair
    assert load_config(path, environ={}).dispatch.burst == 12
    env = {
        "ECSEXEC_REGION": "eu-west-1",
        "ECSEXEC_CREDENTIAL_PROVIDER": "instance",
        "ECSEXEC_THREADS": "9",
        "ECSEXEC_KEEPGOING": "no",
        "ECSEXEC_BURST": "3",
    }
    config = load_config(path, environ=env)
    assert config.aws.region == "eu-west-1"
    # Choosing another provider drops the file's key pair instead of conflicting with it.
    assert config.aws.credential_provider == "instance" and not config.aws.access_key_id
    assert config.dispatch.threads == 9 and config.dispatch.keepgoing is False
    assert config.dispatch.burst == 3 and config.origin("dispatch.burst") == "env ECSEXEC_BURST"
    assert config.origin("aws.region") == "env ECSEXEC_REGION"
    assert config.origin("dispatch.threads") == "env ECSEXEC_THREADS"
    flagged = load_config(path, environ=env, profile="ops")
    assert (flagged.aws.credential_provider, flagged.aws.profile) == ("profile", "ops")
    assert flagged.origin("aws.profile") == "flag --profile"
    shorthand = load_config(path, environ={"ECSEXEC_CREDENTIAL_PROVIDER": "profile:dev"})
    assert (shorthand.aws.credential_provider, shorthand.aws.profile) == ("profile", "dev")


def test_per_source_credentials_follow_ecs_nodes_section_3(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        [aws]
        region = "us-east-1"
        profile = "base"
        assume_role_arn = "{ROLE}"

        [[sources]]
        # own base credentials; the [aws] role still applies
        credential_provider = "profile:other"

        [[sources]]
        # same base as [aws], another role, no external id inherited
        assume_role_arn = "arn:aws:iam::210987654321:role/cross"

        [[sources]]
        assume_role_arn = ""
        """,
    )
    own, cross, plain = load_config(path, environ={}).sources
    assert (own.aws.credential_provider, own.aws.profile) == ("profile", "other")
    assert own.aws.assume_role_arn == ROLE
    assert cross.aws.profile == "base"
    assert cross.aws.assume_role_arn.endswith(":role/cross")
    assert isinstance(cross.config, EcsSourceConfig)
    assert cross.config.assume_role_arn == cross.aws.assume_role_arn  # node caches differ
    assert plain.aws.assume_role_arn == "" and plain.aws.region == "us-east-1"


def test_every_error_names_file_line_and_choices(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [aws]
        regoin = "us-east-1"
        credential_provider = "contaner"

        [[sources]]
        type = "ecs"

        [[sources]]
        type = "s3"

        [[sources]]
        filter_behavior = "inclde"
        tags = "team"
        clusters = 3

        [dispatch]
        threads = 0
        keepgoing = "yes"

        [extras]
        """,
    )
    lines = error_of(path).splitlines()
    assert lines == sorted(lines, key=lambda line: int(line.split(":")[1]))
    text = "\n".join(lines)
    assert f"{path}:2: [aws]: unknown key 'regoin'" in text and "did you mean 'region'" in text
    assert f"{path}:3: [aws].credential_provider: 'contaner' is not a credential provider" in text
    assert "choose one of default, instance, container, keys, profile" in text
    assert f"{path}:9: [[sources]] #2: type 's3' is not valid; choose one of ecs, file" in text
    assert f"{path}:12: [[sources]] #3.filter_behavior" in text and "include, exclude" in text
    assert f"{path}:13: [[sources]] #3.tags: tag filter 'team' needs the form key=value" in text
    assert f"{path}:14: [[sources]] #3.clusters: expected a list of strings" in text
    assert f"{path}:17: [dispatch].threads: 0 is out of range" in text
    assert f"{path}:18: [dispatch].keepgoing: expected true or false" in text
    assert f"{path}:20: unknown section [extras]" in text


def test_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[aws]\nregion = "us-east-1\n')
    assert error_of(path).startswith(f"{path}:2:20: Illegal character")
    assert "(TOML syntax)" in error_of(path)


def test_credential_combinations(tmp_path: Path) -> None:
    half = write(tmp_path, '[aws]\naccess_key_id = "AKIAHALFHALFHALF0000"\n', "half.toml")
    assert "secret_key_path is missing" in error_of(half)
    assert "AKIAHALF" not in error_of(half)  # identifying values are never echoed
    mixed = write(
        tmp_path,
        """
        [aws]
        credential_provider = "container"
        access_key_id = "AKIAMIXEDMIXEDMIX000"
        secret_key_path = "keys/project/p/aws-secret"
        """,
        "mixed.toml",
    )
    assert f"{mixed}:2: [aws]: access_key_id/secret_key_path cannot be used" in error_of(mixed)
    for text, message in [
        ('credential_provider = "keys"', "needs access_key_id and secret_key_path"),
        ('credential_provider = "profile"', "needs profile"),
        ('external_id = "x"', "external_id needs assume_role_arn"),
        ('assume_role_arn = "role/x"', "must be a role ARN"),
        ('endpoint_url = "localhost:1"', "http:// or https://"),
        ('secret_key_path = "keys/../x"', "not allowed"),
        ("region = 5", "expected a string, got an integer"),
    ]:
        path = write(tmp_path, f"[aws]\n{text}\n", "case.toml")
        assert message in error_of(path), text
    env_error = error_of(None, {"ECSEXEC_CREDENTIAL_PROVIDER": "magic"}, search=False)  # type: ignore[arg-type]
    assert env_error.startswith("ECSEXEC_CREDENTIAL_PROVIDER: 'magic' is not a credential")


def test_a_secret_in_the_file_is_refused_without_echo(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [aws]
        access_key_id = "AKIAEXAMPLEEXAMPLE00"
        secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzzzzzzzzz"
        """,
    )
    text = error_of(path)
    assert f"{path}:3: [aws]: secret_access_key does not belong" in text
    assert "ecsexec keys put" in text
    assert "wJalrXUtnFEMI" not in text


def test_settings_repr_masks_identifying_values() -> None:
    settings = AwsSettings(
        access_key_id="AKIAREPRREPRREPR9876", external_id="very-private-external"
    )
    assert "AKIAREPRREPR" not in repr(settings) and "9876" in repr(settings)
    assert "very-private" not in repr(settings)
    assert "very-private" not in str(settings.masked())


def test_locator_follows_tables_arrays_and_multiline_strings() -> None:
    text = textwrap.dedent(
        '''
        top = 1
        [aws]
        region = "x"
        note = """
        fake = 1
        """
        "quoted key" = 2
        [[sources]]
        a = 1
        [[sources]]
        a = 2
        dotted.key = 3
        '''
    ).lstrip()
    locator = Locator(text)
    assert locator.line("top") == 1
    assert locator.line("aws", "region") == 3
    assert ("aws", "fake") not in locator.lines
    assert locator.line("aws", "quoted key") == 7
    assert locator.line("sources", 0, "a") == 9
    assert locator.line("sources", 1, "a") == 11
    assert locator.line("sources", 1, "dotted", "key") == 12
    assert locator.line("sources", 1, "missing") == 10  # falls back to the table
    assert locator.line("nowhere") == 1


def test_a_region_botocore_would_refuse_is_an_error_where_it_was_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [aws]
        region = "us east-1"

        [[sources]]
        region = "123"
        clusters = ["c"]
        """,
    )
    message = error_of(path)
    assert f"{path}:2: [aws]: region 'us east-1' is not a region name" in message
    assert f"{path}:5: [[sources]] #1: region '123' is not a region name" in message
    env = error_of(write(tmp_path, ""), {"ECSEXEC_REGION": "us east-1"})
    assert env.startswith("ECSEXEC_REGION: [aws]: region 'us east-1' is not a region name")
    for good in ("us-east-1", "eu-west-3", "local", "cn-north-1", "us-gov-west-1"):
        assert load_config(write(tmp_path, f'[aws]\nregion = "{good}"\n'), environ={}).aws.region


def test_deeply_nested_toml_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a = " + "[" * 5000 + "]" * 5000 + "\n")
    assert error_of(path) == f"{path}: arrays or tables nested too deeply (TOML syntax)"


@pytest.mark.parametrize("value", ["9" * 400, "nan", "inf", "-inf"])
def test_dispatch_numbers_from_the_environment_must_be_finite(tmp_path: Path, value: str) -> None:
    message = error_of(write(tmp_path, ""), {"ECSEXEC_THREADS": value, "ECSEXEC_RATE": value})
    assert "ECSEXEC_THREADS: expected an integer" in message
    assert "ECSEXEC_RATE: expected a number" in message


# --- [server] ----------------------------------------------------------------------------------


def test_server_section_with_roles(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        listen = "0.0.0.0:8443"
        state_dir = "state"
        job_dirs = ["jobs", "/srv/more-jobs"]

        [server.roles.oncall]
        description = "the on-call engineer"
        actions = ["view_nodes", "run_job", "view_activity", "run_job"]
        nodes = "ECS:Service-Name: web"
        jobs = "ops/.*"
        """,
    )
    server = load_config(path, environ={}).server
    assert server.listen == "0.0.0.0:8443"
    assert server.state_dir == tmp_path / "state"
    assert server.job_dirs == (tmp_path / "jobs", Path("/srv/more-jobs"))
    role = server.roles["oncall"]
    assert role.actions == ("view_nodes", "run_job", "view_activity")
    assert (role.nodes, role.jobs, role.description) == (
        "ECS:Service-Name: web",
        "ops/.*",
        "the on-call engineer",
    )
    assert role.origin == f"{path}:6"


def test_server_defaults(tmp_path: Path) -> None:
    server = load_config(write(tmp_path, "[server]\n"), environ={}).server
    assert (server.listen, server.state_dir, server.job_dirs, dict(server.roles)) == (
        "127.0.0.1:8440",
        None,
        (),
        {},
    )


def test_server_mistakes_name_file_line_key_and_choices(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        listen = "localhost"
        job_dirs = "jobs"
        colour = "blue"

        [server.roles.a]
        actions = ["view_nodes", "run_comand"]

        [server.roles.b]
        actions = []

        [server.roles.c]
        actions = ["view_nodes,run_job"]
        nodes = "name: /(unclosed/"

        [server.roles.d]
        actions = ["admin"]
        jobs = "ops/[a-"
        scope = "x"

        [server.roles.e]
        nodes = "name: x"
        """,
    )
    lines = error_of(path).splitlines()
    expected = [
        (2, "[server].listen: 'localhost' is not HOST:PORT"),
        (3, "[server].job_dirs: expected a list of directory paths"),
        (4, "[server]: unknown key 'colour'; choose one of listen, state_dir, job_dirs, "),
        (7, "unknown action 'run_comand'; choose one of view_nodes, run_command"),
        (10, "[server.roles.b].actions: the list is empty"),
        (13, "'view_nodes,run_job' holds several actions: write one per item"),
        (14, "[server.roles.c].nodes: not a valid node filter"),
        (18, "[server.roles.d].jobs: not a valid regex"),
        (19, "[server.roles.d]: unknown key 'scope'"),
        (21, "[server.roles.e]: actions is required; choose from view_nodes, run_command"),
    ]
    assert len(lines) == len(expected), lines
    for line, (number, text) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}:{number}: "), line
        assert text in line, line
    assert "did you mean 'run_command'" in lines[3]


def test_a_role_filter_that_selects_nothing_or_warns_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[server.roles.x]\nactions = ["view_nodes"]\nnodes = "name: \'\'"\n')
    assert f"{path}:3: [server.roles.x].nodes: \"name: ''\" selects no node" in error_of(path)
    path.write_text('[server.roles.x]\nactions = ["view_nodes"]\nnodes = "name: web tags:"\n')
    assert 'key "tags" has no value' in error_of(path)


@pytest.mark.parametrize("listen", ["127.0.0.1:8440", "[::1]:8440", ":8440", "host.example:1"])
def test_listen_addresses(tmp_path: Path, listen: str) -> None:
    path = write(tmp_path, f'[server]\nlisten = "{listen}"\n')
    assert load_config(path, environ={}).server.listen == listen


@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.1:0", "1.2.3.4:65536", "::1:80", "a b:1"])
def test_bad_listen_addresses(tmp_path: Path, listen: str) -> None:
    path = write(tmp_path, f'[server]\nlisten = "{listen}"\n')
    assert "is not HOST:PORT" in error_of(path)


def test_server_behind_a_proxy_names_its_public_origins_and_trusted_proxies(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        [server]
        origins = ["https://Ecsexec.Example.com/", "http://10.0.0.5:8440"]
        trusted_proxies = ["127.0.0.1", "10.1.0.0/16", "::1"]
        """,
    )
    server = load_config(path, environ={}).server
    assert server.origins == ("https://ecsexec.example.com", "http://10.0.0.5:8440")
    assert server.trusted_proxies == ("127.0.0.1/32", "10.1.0.0/16", "::1/128")
    assert (load_config(write(tmp_path, "[server]\n"), environ={}).server.origins) == ()


def test_server_origins_and_proxies_that_are_not_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        origins = ["ecsexec.example.com", "https://a.example/console"]
        trusted_proxies = ["proxy.example"]
        """,
    )
    lines = error_of(path).splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path}:2: ") and "'ecsexec.example.com'" in lines[0]
    assert "scheme://host[:port]" in lines[0]
    assert "'https://a.example/console'" in lines[1] and "no path" in lines[1]
    assert lines[2].startswith(f"{path}:3: ") and "'proxy.example'" in lines[2]
    assert "an IP address or network" in lines[2]
