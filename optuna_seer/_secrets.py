"""Which values are credentials, and text with them masked: one classifier for every layer.

:func:`is_secret` says whether an environment variable holds a credential, by its **name**
(``DB_PASS``, ``MYSQL_PWD``, ``OPENAI_KEY``, ``GITHUB_AUTH``, ``SLACK_WEBHOOK_URL``,
``PRIVATE_KEY_PEM``, ``AWS_SECRET_ACCESS_KEY`` …) or by its **value** (a URL with a password,
``DATABASE_URL=postgresql://app:pw@db/app``; a token of a well-known format).
:func:`scrub` masks credentials in free text (an exception, a worker's log tail, a note)
before it is stored or logged: URL passwords, ``NAME=value`` pairs whose name says
credential, ``Bearer``/``Basic`` headers, private-key PEM blocks, and tokens by format:

=====================  =====================================================
AWS access key ids     ``AKIA…``, ``ASIA…`` (20 characters)
GitHub                 ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``, ``github_pat_``
GitLab                 ``glpat-``
Slack                  ``xoxb-``/``xoxp-``/…, ``https://hooks.slack.com/…`` webhooks
OpenAI, Anthropic      ``sk-…``, ``sk-proj-…``, ``sk-ant-…``
Stripe                 ``sk_live_``/``rk_test_``…
Hugging Face           ``hf_…``
Google API keys        ``AIza…``
JSON Web Tokens        ``eyJ….eyJ….…``
=====================  =====================================================

By default :func:`scrub` also masks the values of this process's own credential variables
(``os.environ``, by :func:`is_secret`, 8 characters or more), so a secret echoed alone (an
AWS secret key has no recognisable format) is masked too.

Standard library only: importable from every layer.

Example:
    >>> is_secret("DB_PASS", "hunter22"), is_secret("DATABASE_URL", "postgresql://a:pw@db/x")
    (True, True)
    >>> is_secret("SEER_TRIAL", "3"), is_secret("TOKENIZER", "bert-base")
    (False, False)
    >>> scrub("cannot connect to postgresql://app:pw@db:5432/x (token=abc123)", known=())
    'cannot connect to postgresql://app:***@db:5432/x (token=***)'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import functools
import os
import re

MASK = "***"

# Words that make a variable name a credential's (the name split at '_', '-', '.', camelCase).
_SECRET_WORDS = frozenset(
    {
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWORDS",
        "PASSWD",
        "PASS",
        "PASSPHRASE",
        "PWD",
        "TOKEN",
        "TOKENS",
        "CREDENTIAL",
        "CREDENTIALS",
        "CREDS",
        "KEY",
        "KEYS",
        "APIKEY",
        "ACCESSKEY",
        "SECRETKEY",
        "PRIVATEKEY",
        "AUTH",
        "AUTHORIZATION",
        "COOKIE",
        "WEBHOOK",
        "PEM",
        "PAT",
        "SIGNATURE",
        "SIG",
        "SAS",
    }
)
# The ones that mean a credential even alone in free text ("password: x", not "key: x").
_STRONG_WORDS = frozenset(
    {
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "PWD",
        "TOKEN",
        "APIKEY",
        "ACCESSKEY",
        "SECRETKEY",
        "PRIVATEKEY",
        "AUTHORIZATION",
        "SIGNATURE",
        "CREDENTIALS",
    }
)
# A word of ``PWD`` is the working directory (the shell's $PWD, $OLDPWD), not a password.
_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_TOKEN_PATTERNS = (
    # A private key in PEM (or OpenSSH/PGP) armour, whole or cut off after its BEGIN line.
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])",
    r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{30,}",
    r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{20,}",
    r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}",
    r"(?<![A-Za-z0-9_-])xox[abposr]-[A-Za-z0-9-]{10,}",
    r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}",
    r"(?<![A-Za-z0-9_])[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}",
    r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}",
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
)
_TOKENS = re.compile("|".join(f"(?:{p})" for p in _TOKEN_PATTERNS), re.DOTALL)
# scheme://user:password@host → the password (up to the last '@' before the host);
# also scheme://:password@host.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<pw>[^\s/]+?)(?=@[^\s@/]+(?:[:/?#\s]|$))"
)
_HEADER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")
# NAME=value, NAME: value, 'NAME': 'value', "NAME": "value", ?name=value&...
_LABEL = re.compile(r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z][A-Za-z0-9_.-]*)[\"']?\s*[=:]\s*[\"']?")
_VALUE = re.compile(r"(?:(?:Bearer|Basic|Token)\s+)?[^\s\"',;&}\])]+")


def _words(name: str) -> list[str]:
    return [w.upper() for w in _WORD.findall(name)]


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a credential.

    Example:
        >>> [is_secret_name(n) for n in ("MYSQL_PWD", "OPENAI_KEY", "GITHUB_AUTH", "PWD")]
        [True, True, True, False]
    """
    if name.upper() in _NOT_SECRET_NAMES:
        return False
    return any(word in _SECRET_WORDS for word in _words(name))


def _is_secret_label(name: str) -> bool:
    """Whether ``name=`` in free text labels a credential: stricter than a variable name.

    The last word must be a credential word, and a weak one (``key``, ``pass``, ``auth``)
    needs a word before it: ``api_key=`` and ``DB_PASS=`` label one, ``KeyError:``, ``key:``,
    ``PASS:``, ``token_type=`` and ``tokenizer=`` do not.
    """
    words = _words(name)
    if not words or name.upper() in _NOT_SECRET_NAMES or words[-1] not in _SECRET_WORDS:
        return False
    return len(words) > 1 or words[-1] in _STRONG_WORDS


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds a URL password or a token of a known format.

    Example:
        >>> contains_secret("ghp_" + "a" * 36), contains_secret("https://example.com/x")
        (True, False)
    """
    return scrub(text, known=()) != text


def is_secret(name: str, value: str = "") -> bool:
    """Whether the variable ``name=value`` holds a credential, by its name or its value.

    Example:
        >>> is_secret("SLACK_WEBHOOK_URL"), is_secret("HOOK", "https://hooks.slack.com/services/T/B/x")
        (True, True)
        >>> is_secret("MODEL_URL", "https://huggingface.co/bert")
        False
    """
    return is_secret_name(name) or contains_secret(value)


def secret_values(environ: Mapping[str, str] | None = None, min_length: int = 8) -> list[str]:
    """The values of the credential variables in ``environ`` (default ``os.environ``),
    longest first, those shorter than ``min_length`` left out (too likely to occur by chance).

    Example:
        >>> secret_values({"DB_PASSWORD": "s3cr3t-value", "HOME": "/home/me", "PWD": "/tmp/x"})
        ['s3cr3t-value']
    """
    env = os.environ if environ is None else environ
    found = {
        value for name, value in env.items() if len(value) >= min_length and is_secret(name, value)
    }
    return sorted(found, key=len, reverse=True)


@functools.lru_cache(maxsize=4)
def _own_secret_values(items: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """:func:`secret_values` of an environment snapshot (it seldom changes: cached)."""
    return tuple(secret_values(dict(items)))


def scrub(text: str, known: Iterable[str] | None = None) -> str:
    """``text`` with every credential in it replaced by ``***``.

    Args:
        text: Free text: an exception, a log tail, a note.
        known: Exact values to mask as well (default: :func:`secret_values` of this process's
            environment); ``()`` for none.

    Example:
        >>> scrub("Authorization: Bearer abcdef123456 key AKIAABCDEFGHIJKLMNOP", known=())
        'Authorization: Bearer *** key ***'
        >>> scrub("{'password': 'hunter2', 'user': 'me'} KeyError: 'x'", known=())
        "{'password': '***', 'user': 'me'} KeyError: 'x'"
        >>> scrub("login failed for s3cr3t-value", known=["s3cr3t-value"])
        'login failed for ***'
    """
    if not text:
        return text
    if known is None:
        values: Iterable[str] = _own_secret_values(tuple(sorted(os.environ.items())))
    else:
        values = sorted(known, key=len, reverse=True)
    for value in values:
        if value:
            text = text.replace(value, MASK)
    text = _TOKENS.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _HEADER.sub(lambda m: m.group("head") + MASK, text)
    return _mask_labelled(text)


def _mask_labelled(text: str) -> str:
    """``text`` with the value after every credential label (``password=``…) masked."""
    parts: list[str] = []
    pos = 0
    for label in _LABEL.finditer(text):
        if label.start() < pos or not _is_secret_label(label.group("name")):
            continue
        value = _VALUE.match(text, label.end())
        if value is None or value.group(0).endswith(MASK):
            continue
        parts += [text[pos : label.end()], MASK]
        pos = value.end()
    return "".join(parts) + text[pos:]
