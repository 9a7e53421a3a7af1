"""Storage and tracking URLs as cnnlab shows and saves them: with their secrets masked.

One rule everywhere a URL is printed or written (search.json, experiment.html, config.yaml,
checkpoints, MLflow params, console and error lines): the password of the user part becomes
***, and so does every query value whose name looks secret (?password=, ?token=, ?api_key=,
...). The user part is split at its *last* "@", as urllib does, so a password holding a raw "@"
is masked whole instead of half; on http(s) a user part without a password is a token and is
masked whole. Host, port, path and the other query values stay, so the line still says where.

`with_installed_driver` picks the SQLAlchemy driver that is installed for a plain
postgresql:// or mysql:// URL (SQLAlchemy's default driver changes between versions).
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cnnlab.errors import CnnlabError

MASK = "***"
# Query parameter names whose value is a secret (matched anywhere in the name, any case).
SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|cred|sig", re.IGNORECASE)
# A URL inside free text (an error message): scheme://, then up to a blank or a quote.
URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
TOKEN_SCHEMES = {"http", "https"}
# Plain scheme -> (driver, module) in order of preference, for with_installed_driver.
DRIVERS = {"postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
           "mysql": (("mysqldb", "MySQLdb"), ("pymysql", "pymysql"))}
PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary",
            "mysqldb": "mysqlclient", "pymysql": "pymysql"}


def mask_url(url: str) -> str:
    """`url` with its password and secret-looking query values replaced by ***."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return url  # a plain path: nothing secret to hide
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: hide everything past the scheme
        return f"{scheme}://{MASK}"
    netloc = _mask_netloc(parts.netloc, scheme.lower())
    query = _mask_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url  # rebuilt only when needed: urlunsplit would drop sqlite:///'s slashes
    return (f"{scheme}://{netloc}{parts.path}{'?' if query else ''}{query}"
            f"{'#' + parts.fragment if parts.fragment else ''}")


def _mask_netloc(netloc: str, scheme: str) -> str:
    user_info, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _ = user_info.partition(":")
    if colon:
        return f"{user}:{MASK}@{host}"
    return f"{MASK}@{host}" if scheme in TOKEN_SCHEMES else netloc


def _mask_query(query: str) -> str:
    pairs = []
    for pair in query.split("&") if query else []:
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if eq and SECRET_NAME.search(unquote(name)) else pair)
    return "&".join(pairs)


def is_masked(url: str) -> bool:
    """Whether `url` is a masked one (its secret is gone: it cannot be used to connect)."""
    return MASK in url


def mask_text(text: str) -> str:
    """Free text (an error message) with every URL in it masked."""
    return URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def mask_values(value: Any) -> Any:
    """A copy of a settings document (dicts, lists) with every URL string in it masked."""
    if isinstance(value, dict):
        return {k: mask_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_values(v) for v in value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def encode_password(url: str) -> str:
    """`url` with a raw "@" in its password percent-encoded, so that SQLAlchemy (which splits at
    the first "@") connects to the host urllib and the masking see, not to "rest@host"."""
    scheme, sep, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    if not sep or netloc.count("@") < 2:
        return url
    user_info, _, host = netloc.rpartition("@")
    user, colon, password = user_info.partition(":")
    if not colon:
        return url
    fixed = f"{user}:{quote(unquote(password), safe='')}@{host}"
    return f"{scheme}://{fixed}{rest[len(netloc):]}"


def installed(module: str) -> bool:
    """Whether a Python module can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def with_installed_driver(url: str, option: str) -> str:
    """A plain postgresql:// or mysql:// URL with a driver that is installed named in it.

    SQLAlchemy maps the plain scheme to its default driver (psycopg 3 for PostgreSQL since
    SQLAlchemy 2.1, psycopg2 before), which need not be the one installed. A URL that names its
    driver is kept; no driver installed at all is one line naming what to install."""
    scheme, sep, rest = url.partition("://")
    plain = "postgresql" if scheme.lower() == "postgres" else scheme.lower()
    if not sep or plain not in DRIVERS:
        return url
    default = _default_driver(plain)
    if default is not None and installed(dict(DRIVERS[plain]).get(default, default)):
        return f"{plain}://{rest}"
    for driver, module in DRIVERS[plain]:
        if installed(module):
            return f"{plain}+{driver}://{rest}"
    raise CnnlabError(f"{option} {mask_url(url)}: no {plain} driver is installed; run "
                      f"{driver_hint(plain)}")


def _default_driver(plain: str) -> str | None:
    """SQLAlchemy's driver for a plain scheme (None when SQLAlchemy is not installed)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(f"{plain}://").get_dialect().driver
    except Exception:  # noqa: BLE001 - no SQLAlchemy, or a dialect it does not know
        return None


def driver_hint(plain: str) -> str:
    """What to install for a database, and the scheme that then names its driver."""
    return " or ".join(f"pip install {PACKAGES[d]} ({plain}+{d}://...)"
                       for d, _ in DRIVERS.get(plain, ()))
