"""The secret that seals a study's checkpoints: an HMAC-SHA-256 key per study, kept off the store.

A plain SHA-256 beside a checkpoint catches bit rot and cut-off uploads, but whoever can
replace the checkpoint can replace its digest too, and a swapped checkpoint runs whatever it
holds when it is loaded. So every checkpoint's sidecar holds an **HMAC-SHA-256** of its name
and bytes under a key the store never sees:

* **Workers** get the key in ``SEER_CHECKPOINT_KEY`` from the backend that starts them
  (:func:`optuna_seer.backends.launch_env.launch_env`; a SkyPilot *secret* on cloud nodes,
  redacted in every task YAML SkyPilot keeps). :func:`key_from_env` reads it.
* **The driver** takes the key from its own ``SEER_CHECKPOINT_KEY`` if the user set one (the
  same key for every study; set it where the driver may move to another machine, e.g. a
  managed job, or resumed studies lose their checkpoints), else from a per-study key file it
  creates with mode 0600 in its keyring, ``$XDG_STATE_HOME/optuna-seer/checkpoint-keys/``
  (default ``~/.local/state/…``): :func:`study_key`. Neither the study's storage nor the
  checkpoint store ever holds it.
* A process with no key of its own (a user script reading a finished study's checkpoints on
  the driver machine) finds the key a sidecar names, by its fingerprint, in that keyring:
  :func:`find_key`.

With no key at all (``SEER_CHECKPOINT_KEY`` unset and outside a backend's launch), stores fall
back to the **plain SHA-256**, which detects corruption but not tampering, and log a warning
once. A process that has a key refuses checkpoints sealed without it.

Example:
    >>> key = CheckpointKey("correct horse battery staple")
    >>> seal = key.seal("rung-0.ckpt", [b"weights"])
    >>> seal.startswith(f"{SEAL_PREFIX}:{key.fingerprint}:")
    True
    >>> key.seal("rung-1.ckpt", [b"weights"]) == seal   # the name is sealed too
    False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import hashlib
import hmac
import os
from pathlib import Path
import secrets

from optuna_seer._logging import get_logger

_logger = get_logger(__name__)

ENV_CHECKPOINT_KEY = "SEER_CHECKPOINT_KEY"
SEAL_PREFIX = "hmac-sha256"
_KEY_CONTEXT = b"optuna-seer checkpoint key v1\0"
_ID_CONTEXT = b"optuna-seer checkpoint key id\0"
_KEY_SUFFIX = ".key"


@dataclass(frozen=True)
class CheckpointKey:
    """A checkpoint key, from its text (any string; the driver makes 64 random hex digits).

    ``text`` travels in ``SEER_CHECKPOINT_KEY``; it never appears in a ``repr``.
    """

    text: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or len(self.text) < 16:
            raise ValueError(
                f"{ENV_CHECKPOINT_KEY} must be a string of at least 16 characters (got "
                f"{type(self.text).__name__} of length {len(str(self.text))}); e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`."
            )

    @property
    def secret(self) -> bytes:
        """The HMAC key: SHA-256 of the text (so any text gives a full-length key)."""
        return hashlib.sha256(_KEY_CONTEXT + self.text.encode()).digest()

    @property
    def fingerprint(self) -> str:
        """16 hex digits that name the key in a sidecar without revealing it."""
        return hashlib.sha256(_ID_CONTEXT + self.secret).hexdigest()[:16]

    def seal(self, name: str, blocks: Iterable[bytes]) -> str:
        """The sidecar text of checkpoint ``name`` with content ``blocks``."""
        mac = hmac.new(self.secret, name.encode() + b"\0", hashlib.sha256)
        for block in blocks:
            mac.update(block)
        return f"{SEAL_PREFIX}:{self.fingerprint}:{mac.hexdigest()}"


def parse_seal(recorded: str) -> tuple[str, str] | None:
    """``(fingerprint, mac)`` of a keyed sidecar; ``None`` for a plain SHA-256 (or junk).

    Example:
        >>> parse_seal("hmac-sha256:0123456789abcdef:" + "0" * 64)
        ('0123456789abcdef', '0000000000000000000000000000000000000000000000000000000000000000')
        >>> parse_seal("ab" * 32) is None
        True
    """
    prefix, _, rest = recorded.strip().partition(":")
    fingerprint, _, mac = rest.partition(":")
    if prefix != SEAL_PREFIX or not fingerprint or not mac:
        return None
    return fingerprint, mac


def key_from_env(environ: Mapping[str, str] | None = None) -> CheckpointKey | None:
    """The key in ``SEER_CHECKPOINT_KEY`` of ``environ`` (default ``os.environ``), or ``None``.

    Raises:
        ValueError: It is set but shorter than 16 characters.
    """
    env = os.environ if environ is None else environ
    text = env.get(ENV_CHECKPOINT_KEY)
    return CheckpointKey(text) if text else None


def keyring_dir() -> Path:
    """Where the driver keeps its generated per-study keys (mode 0700, files 0600)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "optuna-seer" / "checkpoint-keys"


def study_key(study_name: str) -> CheckpointKey | None:
    """The driver's key for ``study_name``: its own ``SEER_CHECKPOINT_KEY``, else the study's
    key file in :func:`keyring_dir` (created, 0600, on first use).

    ``None`` (and a warning) when no key file can be written: checkpoints then get a plain
    SHA-256.
    """
    given = key_from_env()
    if given is not None:
        return given
    name = hashlib.sha256(study_name.encode()).hexdigest()[:24] + _KEY_SUFFIX
    path = keyring_dir() / name
    try:
        if not path.exists():
            _create_key_file(path)
        return _read_key_file(path)
    except (OSError, ValueError) as exc:
        _logger.warning(
            "no checkpoint key for study %r (%s): its checkpoints get a plain SHA-256, which "
            "does not stop whoever can write the checkpoint store from swapping them; set %s",
            study_name,
            exc,
            ENV_CHECKPOINT_KEY,
        )
        return None


def _create_key_file(path: Path) -> None:
    """Write a new random key at ``path`` (0600), unless another process just did."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(32))
        os.link(temporary, path)  # atomic, and never replaces a key already there
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


def _read_key_file(path: Path) -> CheckpointKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        _logger.warning("checkpoint key %s had mode %o; set to 0600", path, mode)
        path.chmod(0o600)
    return CheckpointKey(path.read_text().strip())


def find_key(fingerprint: str) -> CheckpointKey | None:
    """The key named ``fingerprint``: this process's own, else one in the driver's keyring."""
    own = key_from_env()
    if own is not None and own.fingerprint == fingerprint:
        return own
    directory = keyring_dir()
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob(f"*{_KEY_SUFFIX}")):
        try:
            key = _read_key_file(path)
        except (OSError, ValueError):
            continue
        if key.fingerprint == fingerprint:
            return key
    return None
