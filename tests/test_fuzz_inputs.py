"""Every bad input is a clear error with exit status 2, never a traceback.

One property test per kind of input the user hands ecsexec: ``ecsexec.toml`` and the
``ECSEXEC_*`` variables, region strings, job YAML, resource JSON/YAML/XML, key-store
files, node filters. Each asserts that only :class:`ConfigurationError` (or the documented
subclass: JobFileError, KeyStoreError, FilterSyntaxError) comes out, never another
exception type, and that the message says something. A few CLI runs then check the same
end to end: exit status 2 and no "Traceback" on stderr.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from botocore.utils import validate_region_name
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecsexec.config import AWS_KEYS, DISPATCH_KEYS, KEYSTORE_KEYS, SECTIONS, load_config
from ecsexec.errors import (
    EXIT_USAGE,
    ConfigurationError,
    FilterSyntaxError,
    JobFileError,
    KeyStoreError,
)
from ecsexec.jobs.library import JobLibrary, load_file
from ecsexec.jobs.parse import parse_jobs
from ecsexec.nodes.filter import parse_filter, select
from ecsexec.nodes.formats import (
    load_nodes,
    parse_resourcejson,
    parse_resourcexml,
    parse_resourceyaml,
)
from ecsexec.nodes.node import Node
from ecsexec.store import keys
from ecsexec.store.keys import KeyStore

T = TypeVar("T")
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DEEP = 5000  # far past Python's recursion limit


def clear_error(
    call: Callable[[], T], kind: type[ConfigurationError] = ConfigurationError
) -> T | None:
    """Run ``call``: it returns, or raises ``kind`` with a message and exit status 2.

    Any other exception propagates and fails the test with its own traceback.
    """
    error: ConfigurationError | None = None
    try:
        return call()
    except ConfigurationError as exc:
        error = exc
    assert isinstance(error, kind), f"{type(error).__name__} is not a {kind.__name__}: {error}"
    assert str(error).strip(), "an error without a message"
    assert error.exit_code == EXIT_USAGE
    return None


# --- ecsexec.toml and ECSEXEC_* ---------------------------------------------------------------

TOML_WORDS = [
    *SECTIONS,
    *"[]{}=\"'.,#\n \t",
    "[[sources]]",
    "[aws]",
    "[dispatch]",
    "region",
    "threads",
    "rate",
    "timeout",
    "true",
    "1e999",
    "nan",
    "-inf",
    "0x10",
    "1979-05-27T07:32:00Z",
    '"""',
    "credential_provider",
    "profile:",
    "secret_key_path",
    "keys/",
    "\\u0000",
    "é",
    "\x00",
]
# The keys the loader knows (so the fuzzer reaches every check), plus a few others.
KEYS = [
    *AWS_KEYS,
    *DISPATCH_KEYS,
    *KEYSTORE_KEYS,
    "type",
    "name",
    "clusters",
    "tags",
    "path",
    "keep_days",
    "keep_runs",
    "filter_behavior",
    "refresh_interval",
    "password",
    "x",
]
SCALARS = (
    st.text(max_size=12)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.sampled_from(
        ["us-east-1", "us east-1", "keys/p/x", "profile:dev", "arn:aws:iam::1:role/r"]
    )
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # ASCII with \\uXXXX escapes: a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


TOML_DOCUMENTS = st.lists(
    st.tuples(
        st.sampled_from([*SECTIONS, "sources", "other"]),
        st.booleans(),  # [[array table]]
        st.dictionaries(st.sampled_from(KEYS), TOML_VALUES, max_size=5),
    ),
    max_size=4,
)


def render_toml(doc: list[tuple[str, bool, dict[str, Any]]]) -> str:
    out = []
    for section, array, table in doc:
        out.append(f"[[{section}]]" if array else f"[{section}]")
        out.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(out) + "\n"


def load_toml(tmp_path: Path, text: str | bytes, environ: dict[str, str] | None = None) -> None:
    path = tmp_path / "ecsexec.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    env = {"ECSEXEC_KEYSTORE_DIR": str(tmp_path / "keystore"), **(environ or {})}
    config = clear_error(lambda: load_config(path, environ=env))
    if config is not None:
        # Whatever it accepted must not crash later: regions are valid for botocore.
        for region in [
            config.aws.region,
            *(getattr(s.config, "region", "") for s in config.sources),
        ]:
            if region:
                validate_region_name(region)


@FUZZ
@given(st.lists(st.sampled_from(TOML_WORDS), max_size=40).map("".join))
def test_toml_text(tmp_path: Path, text: str) -> None:
    load_toml(tmp_path, text)


@FUZZ
@given(TOML_DOCUMENTS)
def test_toml_documents(tmp_path: Path, doc: list[tuple[str, bool, dict[str, Any]]]) -> None:
    load_toml(tmp_path, render_toml(doc))


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * DEEP + "]" * DEEP,
        "[aws]\nx = " + "{a = " * DEEP + "1" + "}" * DEEP,
        "[" + ".".join(["t"] * DEEP) + "]\n",
        "[aws]\nregion = 'us-east-1'\n" * 2,
        b"[aws]\nregion = '\xff'\n",
        "[dispatch]\nthreads = 1e999\nrate = nan\ntimeout = -inf\n",
        "[dispatch]\nthreads = 99999999999999999999\n",
        "[history]\nkeep_days = nan\nkeep_runs = 1e400\n",
        "[aws]\nsecret_key_path = 'keys/p/" + "a" * 300 + "'\n",
    ],
)
def test_toml_corner_cases(tmp_path: Path, text: str | bytes) -> None:
    load_toml(tmp_path, text)


ENV_NAMES = [
    "ECSEXEC_REGION",
    "ECSEXEC_THREADS",
    "ECSEXEC_RATE",
    "ECSEXEC_TIMEOUT",
    "ECSEXEC_KEEPGOING",
    "ECSEXEC_CREDENTIAL_PROVIDER",
    "ECSEXEC_PROFILE",
    "ECSEXEC_SECRET_KEY_PATH",
    "ECSEXEC_ACCESS_KEY_ID",
    "ECSEXEC_ENDPOINT_URL",
    "ECSEXEC_ASSUME_ROLE_ARN",
    "ECSEXEC_ROLE_SESSION_NAME",
]
ENV_VALUES = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
) | st.sampled_from(["nan", "inf", "-1", "1e999", "9" * 400, "us east-1", "keys/" + "a" * 300])


@FUZZ
@given(st.dictionaries(st.sampled_from(ENV_NAMES), ENV_VALUES, max_size=4))
@example({"ECSEXEC_REGION": "us east-1"})
@example({"ECSEXEC_THREADS": "9" * 400})
@example({"ECSEXEC_RATE": "nan"})
def test_environment_variables(tmp_path: Path, environ: dict[str, str]) -> None:
    load_toml(tmp_path, "", environ)


# --- region strings ---------------------------------------------------------------------------

REGIONS = st.text(max_size=70) | st.sampled_from(
    ["us east-1", "us-east-1 ", "-us-east-1", "a" * 64, "a" * 63, "eu_west_1", "", "us-east-1\n"]
)


@FUZZ
@given(REGIONS)
@example("us east-1")
def test_region_strings(tmp_path: Path, region: str) -> None:
    """A region config accepts is one botocore accepts; any other is a clear error."""
    for text, environ in (
        (f"[aws]\nregion = {json.dumps(region)}\n", {}),
        (f"[[sources]]\nregion = {json.dumps(region)}\nclusters = ['c']\n", {}),
        ("", {"ECSEXEC_REGION": region}),
    ):
        if "\x00" in region and environ:
            continue  # no environment variable can hold a NUL
        load_toml(tmp_path, text, environ)


# --- job YAML ------------------------------------------------------------------------------------

JOB_KEYS = [
    "name",
    "group",
    "uuid",
    "options",
    "nodefilters",
    "sequence",
    "commands",
    "exec",
    "script",
    "jobref",
    "args",
    "errorhandler",
    "keepgoing",
    "strategy",
    "dispatch",
    "threadcount",
    "filter",
    "regex",
    "value",
    "values",
    "required",
    "enforced",
    "secure",
    "plugins",
    "LogFilter",
    "type",
    "config",
    "nodeStep",
    "scriptInterpreter",
]
YAML_SCALARS = (
    st.text(max_size=10)
    | st.integers()
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.none()
    | st.sampled_from(["(a+)+\\1x", "[a-", "ls", "${option.x}", "node-first", "key-value-data"])
)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(JOB_KEYS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=15,
)
YAML_WORDS = [*"-:{}[],&*!|>'\"#%@` \n\t", "name: ", "- ", "sequence:", "<<: ", "!!python/"]


def parse_job_text(text: str) -> None:
    jobfile = clear_error(lambda: parse_jobs(text, "jobs.yaml"), JobFileError)
    if jobfile is not None:
        library = JobLibrary(Path("/nonexistent-ecsexec-fuzz"))
        library.add(jobfile)
        for job in jobfile.jobs:
            clear_error(lambda job=job: library.check(job))  # type: ignore[misc]


@FUZZ
@given(st.lists(YAML_VALUES, max_size=3))
def test_job_yaml_documents(jobs: list[Any]) -> None:
    parse_job_text(yaml.safe_dump(jobs))


@FUZZ
@given(st.lists(st.sampled_from(YAML_WORDS), max_size=40).map("".join) | st.text(max_size=60))
def test_job_yaml_text(text: str) -> None:
    parse_job_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "- " + "[" * DEEP + "]" * DEEP,
        "- name: j\n  x: " + "{a: " * DEEP + "1" + "}" * DEEP,
        "- name: j\n  options:\n  - " + "[" * DEEP,
        "- &a [" + ", ".join(["*a"] * 3) + "]",  # a recursive alias
        "- name: j\n  sequence: {commands: [{exec: ls}]}\n  options: [{name: n, regex: "
        + json.dumps("(a|a)*b")
        + ", value: "
        + "a" * 40
        + "}]",
        "- name: !!python/object:os.system ls",
        "\ufeff- name: j",
    ],
)
def test_job_yaml_corner_cases(text: str) -> None:
    parse_job_text(text)


@FUZZ
@given(st.binary(max_size=200))
def test_job_files_of_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_bytes(data)
    clear_error(lambda: load_file(path), JobFileError)


# --- resource JSON / YAML / XML ---------------------------------------------------------------

NODE_KEYS = ["nodename", "hostname", "tags", "osFamily", "attributes", "name", "x", "<<"]
RESOURCE_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(NODE_KEYS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=15,
)
XML_WORDS = [
    *"<>/=\"' \n&;",
    "<project>",
    "</project>",
    "<node ",
    "name=",
    "<attribute ",
    "value=",
    "/>",
    "<!DOCTYPE x>",
    "<!ENTITY a 'b'>",
    "&a;",
    "<?xml version='1.0' encoding='",
    "'?>",
    "utf-7",
    "x-nope",
    "rot13",
    "<![CDATA[",
]
ENCODINGS = [
    "utf-8",
    "UTF-16",
    "utf-32",
    "utf-7",
    "latin-1",
    "cp037",
    "cp1252",
    "shift_jis",
    "x-unknown",
    "ebcdic",
    "rot13",
    "base64",
    "hex",
    "zlib",
    "idna",
    "punycode",
    "undefined",
    "mbcs",
    "",
]


@FUZZ
@given(RESOURCE_VALUES)
def test_resource_json_and_yaml_documents(value: Any) -> None:
    clear_error(lambda: parse_resourcejson(json.dumps(value)))
    clear_error(lambda: parse_resourceyaml(yaml.safe_dump(value)))


@FUZZ
@given(st.text(max_size=80) | st.lists(st.sampled_from(YAML_WORDS), max_size=30).map("".join))
def test_resource_text(text: str) -> None:
    clear_error(lambda: parse_resourcejson(text))
    clear_error(lambda: parse_resourceyaml(text))
    clear_error(lambda: parse_resourcexml(text))


@FUZZ
@given(st.lists(st.sampled_from(XML_WORDS), max_size=30).map("".join))
def test_resource_xml_text(text: str) -> None:
    clear_error(lambda: parse_resourcexml(text))


@FUZZ
@given(st.sampled_from(ENCODINGS) | st.text(max_size=12), st.binary(max_size=40))
@example("utf-7", b"")
@example("x-unknown", b"")
@example("idna", b"\xff")
def test_xml_files_declaring_any_encoding(tmp_path: Path, encoding: str, junk: bytes) -> None:
    head = f"<?xml version='1.0' encoding='{encoding}'?>".encode("utf-8", "surrogatepass")
    path = tmp_path / "nodes.xml"
    path.write_bytes(head + b"<project><node name='a'/>" + junk + b"</project>")
    clear_error(lambda: load_nodes(path))


@pytest.mark.parametrize(
    ("suffix", "data"),
    [
        (".json", b"[" * DEEP + b"]" * DEEP),
        (".json", b'{"a": ' * DEEP + b"1" + b"}" * DEEP),
        (".yaml", b"[" * DEEP + b"]" * DEEP),
        (".yaml", b"a: &a [*a]"),
        (".xml", b"<project>" + b"<n>" * DEEP + b"</n>" * DEEP + b"</project>"),
        (".xml", b"<?xml version='1.0'?><!DOCTYPE p [<!ENTITY a 'aaaa'>]><project>&a;</project>"),
        (".xml", b""),
        (".json", b"\xff\xfe"),
    ],
)
def test_resource_file_corner_cases(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"nodes{suffix}"
    path.write_bytes(data)
    clear_error(lambda: load_nodes(path))


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([".json", ".yaml", ".xml", ".txt"]))
def test_resource_files_of_any_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"nodes{suffix}"
    path.write_bytes(data)
    clear_error(lambda: load_nodes(path))


# --- key-store files ----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["scrypt", "keyfile", "password", "public", "AAAA", "2024-01-01T00:00:00"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "kdf",
                    "salt",
                    "n",
                    "r",
                    "p",
                    "check",
                    "type",
                    "size",
                    "created",
                    "modified",
                    "nonce",
                    "ciphertext",
                ]
            ),
            inner,
            max_size=8,
        )
    ),
    max_leaves=12,
)
KEY_PATHS = st.text(max_size=20) | st.sampled_from(
    ["keys/p/x", "keys/p/" + "a" * 300, "p/x", "keys/" + "/".join(["d"] * 200), "keys/../x"]
)


def exercise_store(store: KeyStore, path: str) -> None:
    for operation in (
        store.list,
        lambda: store.exists(path),
        lambda: store.info(path),
        lambda: store.read(path),
        lambda: store.get_public(path),
        lambda: store.put(path, b"value"),
        lambda: store.remove(path),
    ):
        clear_error(operation, KeyStoreError)


@pytest.fixture(scope="module")
def pristine_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """A key-file store and a passphrase store, each holding keys/p/x (scrypt made cheap
    for the test: the headers under test are the corrupted ones)."""
    stores = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "SCRYPT_N", 2**10)
        for passphrase in (False, True):
            directory = tmp_path_factory.mktemp("keystore")
            KeyStore(directory, passphrase="pw" if passphrase else None).put("keys/p/x", b"v")
            stores[passphrase] = directory
    return stores


def fresh_store(tmp_path: Path, pristine: dict[bool, Path], passphrase: bool) -> KeyStore:
    """A copy of a pristine store, one per example (the previous one may be broken)."""
    directory = Path(tempfile.mkdtemp(dir=tmp_path)) / "store"
    shutil.copytree(pristine[passphrase], directory)
    return KeyStore(directory, passphrase="pw" if passphrase else None)


@FUZZ
@given(JSON_VALUES, st.booleans(), KEY_PATHS)
@example({"version": 1, "kdf": "scrypt", "salt": "AAAA", "n": 3, "r": 8, "p": 1}, True, "p/x")
@example({"version": 1, "kdf": "scrypt", "salt": "AAAA", "n": 2**40, "r": 8, "p": 1}, True, "p/x")
@example({"version": 1, "kdf": "scrypt", "salt": "AAAA", "n": 2, "r": 0, "p": -1}, True, "p/x")
def test_corrupted_key_store_headers(
    tmp_path: Path, pristine_stores: dict[bool, Path], meta: Any, passphrase: bool, path: str
) -> None:
    store = fresh_store(tmp_path, pristine_stores, passphrase)
    header = store.directory / "keystore.json"
    original = json.loads(header.read_text())
    if isinstance(meta, dict):
        meta = {**original, **meta}
    header.write_text(json.dumps(meta))
    exercise_store(store, path)
    exercise_store(KeyStore(store.directory, passphrase="pw" if passphrase else None), "p/x")


@FUZZ
@given(JSON_VALUES, KEY_PATHS)
@example({"type": "password"}, "p/x")
@example({"type": "public", "created": "x", "modified": 5, "size": "big"}, "p/x")
def test_corrupted_key_entries(
    tmp_path: Path, pristine_stores: dict[bool, Path], entry: Any, path: str
) -> None:
    store = fresh_store(tmp_path, pristine_stores, False)
    file = store.directory / "keys" / "p" / "x.entry"
    original = json.loads(file.read_text())
    file.write_text(json.dumps({**original, **entry} if isinstance(entry, dict) else entry))
    exercise_store(store, path)
    exercise_store(store, "p/x")


@pytest.mark.parametrize(
    "content",
    [b"[" * DEEP, b"\xff\xfe", b"", b'{"version": 1, "kdf": "keyfile", "check": 5}'],
)
def test_unreadable_key_store_files(
    tmp_path: Path, pristine_stores: dict[bool, Path], content: bytes
) -> None:
    store = fresh_store(tmp_path, pristine_stores, False)
    (store.directory / "keystore.json").write_bytes(content)
    (store.directory / "keys" / "p" / "x.entry").write_bytes(content)
    exercise_store(KeyStore(store.directory), "p/x")


def test_a_key_file_that_is_a_directory(tmp_path: Path, pristine_stores: dict[bool, Path]) -> None:
    store = fresh_store(tmp_path, pristine_stores, False)
    store.key_file.unlink()
    store.key_file.mkdir()
    exercise_store(KeyStore(store.directory), "p/x")


# --- node filters --------------------------------------------------------------------------------

FILTER_WORDS = [*"ab:!,+/ \t\"'[](){}.*?\\^$|-&0129", "name:", "tags:", "(a+)+", "\\1", "(.*)*"]
FUZZ_NODES = [
    Node("a" * 40, {"x": "a" * 40, "hostname": "ab"}, frozenset({"a" * 40, "b"})),
    Node("b", {"osName": "b" * 200}, frozenset({"x"})),
]


@FUZZ
@given(st.lists(st.sampled_from(FILTER_WORDS), max_size=20).map("".join) | st.text(max_size=30))
@example("name: (a+)+\\1x")
@example("name: (.*)*x")
def test_filter_strings(text: str) -> None:
    flt = clear_error(lambda: parse_filter(text), FilterSyntaxError)
    if flt is not None:
        clear_error(lambda: select(FUZZ_NODES, flt), FilterSyntaxError)


# --- the CLI: exit status 2, no traceback ---------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_", "XDG_"))
    }
    environ.update(
        HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        ECSEXEC_HISTORY="off",
        AWS_ACCESS_KEY_ID="AKIAFUZZFUZZFUZZFUZZ",
        AWS_SECRET_ACCESS_KEY="x" * 40,
        AWS_EC2_METADATA_DISABLED="true",
        **(env or {}),
    )
    done = subprocess.run(
        [sys.executable, "-m", "ecsexec", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "content", "args"),
    [
        ("deep.yaml", "- " + "[" * DEEP + "]" * DEEP, ["job", "validate", "deep.yaml"]),
        ("bytes.yaml", b"- name: \xff\n", ["job", "validate", "bytes.yaml"]),
        ("deep.json", "[" * DEEP + "]" * DEEP, ["nodes", "--nodes-file", "deep.json"]),
        (
            "enc.xml",
            "<?xml version='1.0' encoding='x-nope'?><project/>",
            ["nodes", "--nodes-file", "enc.xml"],
        ),
        ("bad.json", "{", ["nodes", "--nodes-file", "bad.json"]),
        (
            "n.json",
            json.dumps({"a" * 40: {"hostname": "h"}}),
            ["nodes", "--nodes-file", "n.json", "-F", "name: (a+)+\\1x"],
        ),
        ("ecsexec.toml", "a = " + "[" * DEEP + "]" * DEEP, ["config", "show"]),
        ("ecsexec.toml", "[aws]\nregion = 'us east-1'\n", ["nodes"]),
    ],
)
def test_cli_bad_input_exits_2_without_a_traceback(
    tmp_path: Path, name: str, content: str | bytes, args: list[str]
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, stderr = run_cli(tmp_path, *args)
    assert "Traceback" not in stderr, stderr
    assert code == EXIT_USAGE, stderr
    assert "error:" in stderr


@pytest.mark.e2e
def test_cli_bad_region_in_the_environment_exits_2(tmp_path: Path) -> None:
    code, stderr = run_cli(tmp_path, "nodes", env={"ECSEXEC_REGION": "us east-1"})
    assert "Traceback" not in stderr, stderr
    assert code == EXIT_USAGE, stderr
    assert "ECSEXEC_REGION" in stderr


@pytest.mark.e2e
def test_cli_bad_region_flag_exits_2(tmp_path: Path) -> None:
    code, stderr = run_cli(tmp_path, "nodes", "--region", "bad region")
    assert "Traceback" not in stderr, stderr
    assert code == EXIT_USAGE, stderr
    assert "bad region" in stderr
