"""Key storage: AES-GCM at rest, key file or passphrase, atomic writes, Rundeck's read rule."""

from __future__ import annotations

import json
import os
import pickle
import stat
import threading
from pathlib import Path

import pytest

from ecsexec.errors import KeyStoreError
from ecsexec.store import keys as keys_module
from ecsexec.store.keys import KeyStore, Secret, normalize_path

SECRET = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
PATH = "keys/project/p/aws-secret"


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_put_read_info_list_rm(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ks")
    info = store.put(PATH, SECRET)
    assert (info.path, info.type, info.size) == (PATH, "password", len(SECRET))
    store.put("project/p/id.pub", b"ssh-ed25519 AAAA pub\n", "public")
    store.put("keys/project/q/deploy", b"-----BEGIN OPENSSH PRIVATE KEY-----\n", "private")
    assert store.read(PATH).reveal() == SECRET
    assert [i.path for i in store.list()] == [
        "keys/project/p/aws-secret",
        "keys/project/p/id.pub",
        "keys/project/q/deploy",
    ]
    assert [i.path for i in store.list("keys/project/q")] == ["keys/project/q/deploy"]
    again = store.put(PATH, b"rotated")
    assert again.created == info.created and store.read(PATH).reveal() == b"rotated"
    store.remove("keys/project/q/deploy")
    assert not (tmp_path / "ks" / "keys" / "project" / "q").exists()  # emptied dirs go too
    with pytest.raises(KeyStoreError, match="no key at keys/project/q/deploy"):
        store.info("keys/project/q/deploy")
    with pytest.raises(KeyStoreError, match="no key at"):
        store.remove("keys/project/q/deploy")


def test_values_are_encrypted_and_files_private(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    KeyStore(directory).put(PATH, SECRET)
    assert SECRET not in all_bytes(directory)
    assert b"wJalrXUtnFEMI" not in all_bytes(directory)
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert len((directory / "master.key").read_bytes()) == 32


def test_public_values_only_can_be_read_back(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.put(PATH, SECRET, "password")
    store.put("keys/p/key", b"PRIVATE", "private")
    store.put("keys/p/key.pub", b"PUBLIC", "public")
    assert store.get_public("keys/p/key.pub") == b"PUBLIC"
    for path, kind in [(PATH, "password"), ("keys/p/key", "private")]:
        with pytest.raises(KeyStoreError, match=f"is a {kind} key: its value cannot be read") as e:
            store.get_public(path)
        assert "PRIVATE" not in str(e.value) and SECRET.decode() not in str(e.value)


def test_passphrase_mode(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    KeyStore(directory, passphrase="correct horse").put(PATH, SECRET)
    assert not (directory / "master.key").exists()
    assert KeyStore(directory, passphrase="correct horse").read(PATH).reveal() == SECRET
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        KeyStore(directory, passphrase="wrong horse").read(PATH)
    with pytest.raises(KeyStoreError, match="ECSEXEC_KEYSTORE_PASSPHRASE"):
        KeyStore(directory).read(PATH)
    # metadata needs no key
    assert [i.path for i in KeyStore(directory).list()] == [PATH]
    env = {"ECSEXEC_KEYSTORE_DIR": str(directory), "ECSEXEC_KEYSTORE_PASSPHRASE": "correct horse"}
    assert KeyStore.from_env(environ=env).read(PATH).reveal() == SECRET


def test_key_file_mode_guards(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    KeyStore(directory).put(PATH, SECRET)
    with pytest.raises(KeyStoreError, match="uses the key file"):
        KeyStore(directory, passphrase="x").read(PATH)
    key_file = directory / "master.key"
    key_file.chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        KeyStore(directory).read(PATH)
    key_file.chmod(0o600)
    key_file.write_bytes(os.urandom(32))
    with pytest.raises(KeyStoreError, match="wrong key file"):
        KeyStore(directory).read(PATH)
    key_file.unlink()
    with pytest.raises(KeyStoreError, match=r"key file .* is missing"):
        KeyStore(directory).read(PATH)


def test_tampered_or_moved_entries_fail_authentication(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.put("keys/a/one", b"first")
    store.put("keys/a/two", b"second")
    one = tmp_path / "keys" / "a" / "one.entry"
    two = tmp_path / "keys" / "a" / "two.entry"
    two.write_bytes(one.read_bytes())  # the value of one, presented as two
    with pytest.raises(KeyStoreError, match="fails authentication"):
        store.read("keys/a/two")
    retyped = one.read_text().replace('"password"', '"public"')
    one.write_text(retyped)  # a password relabelled public to get it printed
    with pytest.raises(KeyStoreError, match="fails authentication"):
        store.get_public("keys/a/one")


def test_a_failed_write_leaves_the_old_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(tmp_path)
    store.put(PATH, b"old")

    def crash(*_args: object) -> None:
        raise OSError("disk on fire")

    # The crash lands between writing the temp file and renaming it over the entry.
    monkeypatch.setattr(keys_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        store.put(PATH, b"new")
    monkeypatch.undo()
    assert store.read(PATH).reveal() == b"old"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_concurrent_writers_never_tear_an_entry(tmp_path: Path) -> None:
    values = [bytes([65 + i]) * 4096 for i in range(8)]
    errors: list[BaseException] = []

    def writer(value: bytes) -> None:
        try:
            for _ in range(10):
                KeyStore(tmp_path).put(PATH, value)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert KeyStore(tmp_path).read(PATH).reveal() in values  # one whole value, never a mix
    assert len(list(tmp_path.glob("master.key"))) == 1


def test_paths_are_normalized_and_checked() -> None:
    assert normalize_path("project/p/aws-secret") == PATH
    assert normalize_path("/keys/project/p/aws-secret/") == PATH
    for bad in ["keys", "keys/../etc/passwd", "keys/a//b", "keys/a b", "keys/./x"]:
        with pytest.raises(KeyStoreError):
            normalize_path(bad)


def test_secret_never_shows_in_repr() -> None:
    secret = Secret(SECRET)
    assert SECRET.decode() not in repr(secret) and SECRET.decode() not in str(secret)
    assert f"{secret}" == f"Secret(<{len(SECRET)} bytes>)"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_a_segment_too_long_for_a_file_name_is_refused_up_front(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ks")
    long = "keys/project/" + "a" * 300
    for operation in (
        lambda: store.put(long, SECRET),
        lambda: store.exists(long),
        lambda: store.info(long),
    ):
        with pytest.raises(KeyStoreError, match="longer than 200 characters"):
            operation()
    assert normalize_path("keys/p/" + "a" * 200) == "keys/p/" + "a" * 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"n": 3}, "power of 2"),
        ({"n": 2**40}, "power of 2"),
        ({"n": 2**20, "r": 2**20}, "times the default"),
        ({"r": 0}, "bad scrypt parameters"),
        ({"p": -1}, "bad scrypt parameters"),
        ({"n": True}, "bad scrypt parameters"),
        ({"p": 10**6}, "times the default"),
    ],
)
def test_scrypt_parameters_from_the_header_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, object], reason: str
) -> None:
    monkeypatch.setattr(keys_module, "SCRYPT_N", 2**10)  # a cheap store to corrupt
    KeyStore(tmp_path / "ks", passphrase="pw").put(PATH, SECRET)
    header = tmp_path / "ks" / "keystore.json"
    header.write_text(json.dumps({**json.loads(header.read_text()), **change}))
    with pytest.raises(KeyStoreError, match=reason):
        KeyStore(tmp_path / "ks", passphrase="pw").read(PATH)


def test_entries_with_missing_or_invalid_fields_are_key_store_errors(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ks")
    store.put(PATH, SECRET)
    entry = tmp_path / "ks" / (PATH + ".entry")
    good = json.loads(entry.read_text())
    for broken in (
        {"type": "password"},
        {**good, "created": "yesterday"},
        {**good, "size": "big"},
        {**good, "modified": None},
    ):
        entry.write_text(json.dumps(broken))
        with pytest.raises(KeyStoreError, match="not a key entry"):
            store.info(PATH)
        assert store.list() == []  # listed entries skip it
        store.put(PATH, SECRET)  # and it can be replaced
        assert store.info(PATH).size == len(SECRET)
    entry.write_text("[" * 5000)
    with pytest.raises(KeyStoreError, match="unreadable key entry"):
        store.info(PATH)
    store.put(PATH, SECRET)
    (tmp_path / "ks" / "keystore.json").write_text("[" * 5000)
    with pytest.raises(KeyStoreError, match="nested too deeply"):
        KeyStore(tmp_path / "ks").read(PATH)


def test_a_key_file_that_cannot_be_read(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ks")
    store.put(PATH, SECRET)
    store.key_file.unlink()
    store.key_file.mkdir(mode=0o700)
    with pytest.raises(KeyStoreError, match="cannot be read"):
        KeyStore(tmp_path / "ks").read(PATH)
