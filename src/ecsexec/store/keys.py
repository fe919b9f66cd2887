"""Key storage: Rundeck-style paths (``keys/project/<name>/aws-secret``), AES-GCM at rest.

Layout of the store directory::

    keystore.json                 how the master key is made (scrypt salt, or "keyfile"),
                                  plus a check value that tells a wrong passphrase apart
    master.key                    32 random bytes, mode 0600 (key-file mode only)
    keys/project/p/aws-secret.entry   one JSON file per key: type, times, nonce, ciphertext

Metadata (type, size, times) is stored in the clear so ``keys list``/``info`` need no key;
the value is AES-256-GCM with the entry's path, type and format version as associated
data, so an entry file moved to another path or retyped fails to decrypt. Every write is
temp file + fsync + ``os.replace`` + directory fsync: a crash leaves the old entry or the
new one, never a torn file.

As in Rundeck, ``password`` and ``private`` values are never handed to the user; only
ecsexec itself reads them (:meth:`KeyStore.read`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from ecsexec.errors import KeyStoreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _crypto() -> tuple[type[AESGCM], type[Exception]]:
    """AESGCM and InvalidTag, imported when a key is first used: ``ecsexec.config`` imports
    this module, and cryptography's import cost every start-up ~8 ms."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM, InvalidTag


KeyType = Literal["password", "private", "public"]
KEY_TYPES: Final[tuple[KeyType, ...]] = ("password", "private", "public")
READABLE_TYPES: Final = frozenset({"public"})  # what `keys get` may print (Rundeck's rule)

PASSPHRASE_ENV: Final = "ECSEXEC_KEYSTORE_PASSPHRASE"
DIR_ENV: Final = "ECSEXEC_KEYSTORE_DIR"
KEY_FILE_ENV: Final = "ECSEXEC_KEYSTORE_KEY_FILE"

FORMAT_VERSION: Final = 1
ENTRY_SUFFIX: Final = ".entry"
# scrypt cost: ~64 MiB and ~0.2 s once per process; OWASP's floor is N=2^17, r=8, p=1.
SCRYPT_N: Final = 2**16
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_CHECK_PLAINTEXT: Final = b"ecsexec key storage check v1"
_SEGMENT = re.compile(r"[A-Za-z0-9_.@+=-]+")
# A segment becomes a file or directory name (with ENTRY_SUFFIX): well under the 255 bytes
# file systems allow. The whole path stays far from PATH_MAX.
MAX_SEGMENT: Final = 200
MAX_PATH: Final = 1024
# scrypt parameters a key store header may ask for: up to 32 times the default work, and
# at most 512 MiB of memory (a corrupted or hostile header must not hang or exhaust us).
_SCRYPT_MAX_N: Final = 2**20
_SCRYPT_MAX_WORK: Final = 32 * SCRYPT_N * SCRYPT_R * SCRYPT_P
_SCRYPT_MAX_MEMORY: Final = 512 * 2**20


class Secret:
    """A value that must not leak: it never shows in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def reveal_text(self) -> str:
        return self._value.decode("utf-8")

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Secret(<{len(self._value)} bytes>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling a secret into a cache or a queue by accident
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class KeyInfo:
    """What ``keys list`` and ``keys info`` show: never the value."""

    path: str
    type: KeyType
    size: int
    created: datetime
    modified: datetime


def normalize_path(path: str) -> str:
    """``keys/a/b`` (the ``keys/`` prefix may be omitted); segments ``[A-Za-z0-9_.@+=-]``."""
    text = path.strip().strip("/")
    if text != "keys" and not text.startswith("keys/"):
        text = f"keys/{text}"
    segments = text.split("/")
    if len(segments) < 2:
        raise KeyStoreError(f"key path {path!r} names no key: use keys/project/<name>/<key>")
    if len(text) > MAX_PATH:
        raise KeyStoreError(f"key path {path[:60]!r}…: longer than {MAX_PATH} characters")
    for segment in segments:
        if len(segment) > MAX_SEGMENT:
            raise KeyStoreError(
                f"key path {path[:60]!r}…: a segment is longer than {MAX_SEGMENT} characters"
            )
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise KeyStoreError(
                f"key path {path!r}: segment {segment!r} is not allowed "
                "(letters, digits and _ . @ + = - only)"
            )
    return "/".join(segments)


def default_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$ECSEXEC_KEYSTORE_DIR``, else ``$XDG_DATA_HOME/ecsexec/keystore``."""
    env = os.environ if environ is None else environ
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV]).expanduser()
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ecsexec" / "keystore"


def _positive_int(value: object) -> int:
    """A count from a header: an int (or its decimal text), at least 1."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not a number: {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"not positive: {number}")
    return number


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(directory: Path) -> None:
    """Like ``mkdir -p`` but every directory it creates is 0700 (not just the last)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` (mode 0600) so a crash leaves the old file or the new one.

    With ``exclusive`` the file is only created, never replaced (``os.link`` fails when it
    exists): returns False if another writer got there first.
    """
    _makedirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return True


class KeyStore:
    """One key-storage directory. The master key is derived at most once per instance."""

    def __init__(
        self,
        directory: Path | str,
        *,
        passphrase: str | None = None,
        key_file: Path | str | None = None,
    ) -> None:
        self.directory = Path(directory).expanduser()
        self._passphrase = passphrase or None
        self.key_file = Path(key_file).expanduser() if key_file else self.directory / "master.key"
        self._aead: AESGCM | None = None

    @classmethod
    def from_env(
        cls, directory: Path | str | None = None, environ: Mapping[str, str] | None = None
    ) -> KeyStore:
        env = os.environ if environ is None else environ
        return cls(
            directory if directory is not None else default_dir(env),
            passphrase=env.get(PASSPHRASE_ENV) or None,
            key_file=env.get(KEY_FILE_ENV) or None,
        )

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r})"

    # -- the master key ---------------------------------------------------------------------

    @property
    def meta_file(self) -> Path:
        return self.directory / "keystore.json"

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.meta_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise KeyStoreError(
                f"{self.meta_file}: unreadable key store header ({reason})"
            ) from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise KeyStoreError(f"{self.meta_file}: not an ecsexec key store (version 1)")
        return data

    def _derive(self, meta: Mapping[str, Any]) -> bytes:
        kdf = meta.get("kdf")
        if kdf == "scrypt":
            if self._passphrase is None:
                raise KeyStoreError(
                    f"the key store {self.directory} is protected by a passphrase: "
                    f"set {PASSPHRASE_ENV}"
                )
            try:
                salt = _unb64(meta["salt"])
                n, r, p = (_positive_int(meta[name]) for name in ("n", "r", "p"))
            except (KeyError, ValueError, TypeError):
                raise KeyStoreError(f"{self.meta_file}: bad scrypt parameters") from None
            if (
                n < 2
                or n & (n - 1)
                or n > _SCRYPT_MAX_N
                or n * r * p > _SCRYPT_MAX_WORK
                or 128 * r * n > _SCRYPT_MAX_MEMORY
            ):
                raise KeyStoreError(
                    f"{self.meta_file}: bad scrypt parameters (n={n}, r={r}, p={p}): n must "
                    f"be a power of 2 up to {_SCRYPT_MAX_N}, and the work at most "
                    f"{_SCRYPT_MAX_WORK // (SCRYPT_N * SCRYPT_R * SCRYPT_P)} times the default"
                )
            try:
                return hashlib.scrypt(
                    self._passphrase.encode("utf-8", "surrogatepass"),
                    salt=salt,
                    n=n,
                    r=r,
                    p=p,
                    maxmem=256 * r * n + 2**20,
                    dklen=32,
                )
            except (ValueError, MemoryError) as exc:
                raise KeyStoreError(f"{self.meta_file}: bad scrypt parameters ({exc})") from None
        if kdf == "keyfile":
            if self._passphrase is not None:
                raise KeyStoreError(
                    f"the key store {self.directory} uses the key file {self.key_file}, "
                    f"not a passphrase: unset {PASSPHRASE_ENV}"
                )
            return self._read_key_file()
        raise KeyStoreError(f"{self.meta_file}: unknown key derivation {kdf!r}")

    def _read_key_file(self) -> bytes:
        try:
            st = os.stat(self.key_file)
            if st.st_mode & 0o077:
                raise KeyStoreError(
                    f"the key file {self.key_file} is readable by others "
                    f"(mode {st.st_mode & 0o777:o}): chmod 600 it"
                )
            key = self.key_file.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(
                f"the key file {self.key_file} is missing: without it the stored keys "
                "cannot be decrypted"
            ) from None
        except OSError as exc:
            raise KeyStoreError(
                f"the key file {self.key_file} cannot be read: {exc.strerror or exc}"
            ) from None
        if len(key) != 32:
            raise KeyStoreError(f"the key file {self.key_file} is not a 32-byte key")
        return key

    def _create(self) -> dict[str, Any]:
        """First use: choose scrypt (passphrase set) or a generated key file."""
        _makedirs(self.directory)
        meta: dict[str, Any] = {"version": FORMAT_VERSION}
        if self._passphrase is not None:
            meta.update(
                kdf="scrypt", salt=_b64(secrets.token_bytes(16)), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P
            )
        else:
            meta["kdf"] = "keyfile"
            # Losing the race to another process is fine: its key file is used instead.
            atomic_write(self.key_file, secrets.token_bytes(32), exclusive=True)
        key = self._derive(meta)
        nonce = secrets.token_bytes(12)
        aesgcm, _ = _crypto()
        meta["check"] = _b64(nonce + aesgcm(key).encrypt(nonce, _CHECK_PLAINTEXT, b"check"))
        atomic_write(self.meta_file, json.dumps(meta, indent=2).encode(), exclusive=True)
        return self._read_meta() or meta

    def _cipher(self, *, create: bool) -> AESGCM:
        if self._aead is not None:
            return self._aead
        meta = self._read_meta()
        if meta is None:
            if not create:
                raise KeyStoreError(f"the key store {self.directory} is empty")
            meta = self._create()
        aesgcm, invalid_tag = _crypto()
        aead = aesgcm(self._derive(meta))
        try:
            blob = _unb64(meta.get("check"))
            aead.decrypt(blob[:12], blob[12:], b"check")
        except (invalid_tag, ValueError):
            what = "passphrase" if meta.get("kdf") == "scrypt" else f"key file {self.key_file}"
            raise KeyStoreError(f"wrong {what} for the key store {self.directory}") from None
        self._aead = aead
        return aead

    # -- entries ----------------------------------------------------------------------------

    def _entry_file(self, path: str) -> Path:
        return self.directory / (path + ENTRY_SUFFIX)

    @staticmethod
    def _aad(path: str, key_type: str) -> bytes:
        return json.dumps([FORMAT_VERSION, path, key_type], separators=(",", ":")).encode()

    def _load_entry(self, path: str) -> dict[str, Any]:
        file = self._entry_file(path)
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError:
            raise KeyStoreError(f"no key at {path} in {self.directory}") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise KeyStoreError(f"{file}: unreadable key entry ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("type") not in KEY_TYPES:
            raise KeyStoreError(f"{file}: not a key entry")
        return data

    def _info(self, path: str, data: Mapping[str, Any]) -> KeyInfo:
        try:
            size = data.get("size", 0)
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError("size")
            return KeyInfo(
                path=path,
                type=cast(KeyType, data["type"]),
                size=size,
                created=datetime.fromisoformat(str(data["created"])),
                modified=datetime.fromisoformat(str(data["modified"])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyStoreError(
                f"{self._entry_file(path)}: not a key entry (a field is missing or invalid: {exc})"
            ) from None

    def put(self, path: str, value: bytes | Secret, key_type: KeyType = "password") -> KeyInfo:
        """Store (or replace) a value. The write is atomic."""
        path = normalize_path(path)
        if key_type not in KEY_TYPES:
            raise KeyStoreError(f"unknown key type {key_type!r}; choose one of {KEY_TYPES}")
        raw = value.reveal() if isinstance(value, Secret) else value
        aead = self._cipher(create=True)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        created = now
        with contextlib.suppress(KeyStoreError, ValueError):
            previous = str(self._load_entry(path).get("created"))
            datetime.fromisoformat(previous)  # a corrupted entry's date is not kept
            created = previous
        nonce = secrets.token_bytes(12)
        entry = {
            "version": FORMAT_VERSION,
            "type": key_type,
            "size": len(raw),
            "created": created,
            "modified": now,
            "nonce": _b64(nonce),
            "ciphertext": _b64(aead.encrypt(nonce, raw, self._aad(path, key_type))),
        }
        atomic_write(self._entry_file(path), json.dumps(entry, indent=2).encode())
        return self._info(path, entry)

    def info(self, path: str) -> KeyInfo:
        path = normalize_path(path)
        return self._info(path, self._load_entry(path))

    def exists(self, path: str) -> bool:
        try:
            return self._entry_file(normalize_path(path)).is_file()
        except OSError as exc:
            raise KeyStoreError(f"cannot look up {path}: {exc.strerror or exc}") from None

    def read(self, path: str) -> Secret:
        """The value, for ecsexec's own use (credentials). Any type."""
        path = normalize_path(path)
        data = self._load_entry(path)
        aead = self._cipher(create=False)
        _, invalid_tag = _crypto()
        try:
            raw = aead.decrypt(
                _unb64(data["nonce"]),
                _unb64(data["ciphertext"]),
                self._aad(path, str(data["type"])),
            )
        except (invalid_tag, ValueError, KeyError):
            raise KeyStoreError(
                f"the key at {path} fails authentication: it was altered or moved"
            ) from None
        return Secret(raw)

    def get_public(self, path: str) -> bytes:
        """What ``keys get`` prints: public values only, as Rundeck allows."""
        info = self.info(path)
        if info.type not in READABLE_TYPES:
            raise KeyStoreError(
                f"{info.path} is a {info.type} key: its value cannot be read back "
                "(only ecsexec itself uses it, as in Rundeck)"
            )
        return self.read(info.path).reveal()

    def remove(self, path: str) -> None:
        path = normalize_path(path)
        file = self._entry_file(path)
        try:
            file.unlink()
        except FileNotFoundError:
            raise KeyStoreError(f"no key at {path} in {self.directory}") from None
        except OSError as exc:
            raise KeyStoreError(f"cannot remove {path}: {exc.strerror or exc}") from None
        _fsync_dir(file.parent)
        # Drop directories this removal emptied, up to the store root.
        parent = file.parent
        root = self.directory / "keys"
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str = "keys") -> list[KeyInfo]:
        """Every key under ``prefix``, sorted by path. Temp files of interrupted writes are
        skipped."""
        prefix = prefix.strip().strip("/") or "keys"
        if prefix != "keys":
            prefix = normalize_path(prefix)
        return sorted(self._walk(prefix), key=lambda info: info.path)

    def _walk(self, prefix: str) -> Iterator[KeyInfo]:
        root = self.directory / "keys"
        if not root.is_dir():
            return
        for file in root.rglob("*" + ENTRY_SUFFIX):
            if file.name.startswith(".tmp-"):
                continue
            path = file.relative_to(self.directory).as_posix()[: -len(ENTRY_SUFFIX)]
            if path != prefix and not path.startswith(prefix + "/"):
                continue
            try:
                yield self._info(path, self._load_entry(path))
            except (KeyStoreError, KeyError, ValueError):
                continue
