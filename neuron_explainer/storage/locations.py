"""``open_store``: a location string (``--data_root``) → the ``BlobStore`` it names.

Forms:
- a folder path, or ``file:///abs/path`` → ``LocalStore``;
- ``az://<account>/<container>/<prefix>``;
- ``https://<account>.blob.core.windows.net/<container>/<prefix>`` (a ``?<sas>`` query is kept as the
  credential);
- ``http(s)://<host>:<port>/<account>/<container>/<prefix>`` (path style, as Azurite serves);
- a connection string (``UseDevelopmentStorage=true`` or ``...;AccountName=...``) with our own extra
  keys ``Container=<name>`` and optionally ``Prefix=<path>`` naming where in the account.

Credentials: when the connection string (argument, else ``AZURE_STORAGE_CONNECTION_STRING``) names the
same account as the URL, its key is used (and for ``az://``, its endpoint), so Azurite works as
``AZURE_STORAGE_CONNECTION_STRING=... --data_root az://devstoreaccount1/<container>/<prefix>``.
Otherwise access is anonymous, which is how the original public datasets are read.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from neuron_explainer.errors import BadInput
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.local import LocalStore

log = logging.getLogger(__name__)
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
_CONNECTION_STRING_START = re.compile(r"^[A-Za-z][A-Za-z0-9]*=")
_PUBLIC_SUFFIX = ".blob.core.windows.net"
_DEVSTORE_ACCOUNT = "devstoreaccount1"
_DEVSTORE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True, slots=True)
class _ConnectionString:
    text: str
    """With our own ``Container``/``Prefix`` keys removed: what the SDK gets."""
    account: str
    key: str | None
    container: str | None
    prefix: str


def _parse_connection_string(text: str) -> _ConnectionString:
    pairs: list[tuple[str, str]] = []
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BadInput("connection string is malformed: expected 'Key=value;Key=value'")
        pairs.append((key.strip(), value.strip()))
    settings = {k.lower(): v for k, v in pairs}
    sdk_text = ";".join(f"{k}={v}" for k, v in pairs if k.lower() not in ("container", "prefix"))
    account: str = settings.get("accountname", "")
    account_key: str | None = settings.get("accountkey")
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        account, account_key = _DEVSTORE_ACCOUNT, _DEVSTORE_KEY
        sdk_text = "UseDevelopmentStorage=true"
    if not account:
        raise BadInput("connection string names no AccountName (and is not UseDevelopmentStorage=true)")
    container, prefix = settings.get("container"), settings.get("prefix", "")
    return _ConnectionString(sdk_text, account, account_key, container, prefix)


def _split_container(path: str, location: str) -> tuple[str, str]:
    container, _, prefix = unquote(path).strip("/").partition("/")
    if not container:
        raise BadInput(f"storage location {location!r} names no container", location=location)
    return container, prefix


def redact(location: str) -> str:
    """``location`` fit to show: no password in a URL's user part, no SAS token."""
    if "://" not in location:
        return location if not _CONNECTION_STRING_START.match(location) else "<connection string>"
    parts = urlsplit(location)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "<sas>" if parts.query else "", ""))


def open_store(location: str, *, connection_string: str | None = None) -> BlobStore:
    """Open the store a location names; ``BadInput`` if it cannot be parsed. Does no I/O."""
    location = location.strip()
    if not location:
        raise BadInput("storage location is empty", location=location)
    if _CONNECTION_STRING_START.match(location):
        own = _parse_connection_string(location)
        if not own.container:
            raise BadInput(
                "a connection-string location needs ';Container=<name>' (and optionally ';Prefix=<path>')",
                location="<connection string>",
            )
        return AzureStore(own.container, own.prefix, connection_string=own.text)

    if "://" not in location:
        return LocalStore(location)

    env = connection_string if connection_string is not None else os.environ.get(ENV_CONNECTION_STRING)
    conn = _parse_connection_string(env) if env else None  # parsed only when a URL may need it
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadInput(f"file location {location!r} must be file:///absolute/path", location=location)
        return LocalStore(unquote(parts.path))

    if scheme == "az":
        account = parts.netloc
        if not account:
            raise BadInput(f"{location!r} must look like az://<account>/<container>/<prefix>", location=location)
        container, prefix = _split_container(parts.path, location)
        if conn is not None and conn.account == account:
            return AzureStore(container, prefix, connection_string=conn.text)
        return AzureStore(container, prefix, account_url=f"https://{account}{_PUBLIC_SUFFIX}")

    if scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        if not host:
            raise BadInput(f"{redact(location)!r} has no host", location=redact(location))
        if parts.username is not None or parts.password is not None:
            # Blob storage takes no user:password: dropped here, so it is never sent, logged or shown.
            log.warning(
                "ignoring the user and password in %s (use a SAS or %s)", redact(location), ENV_CONNECTION_STRING
            )
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
            location = urlunsplit(parts)
        sas = f"?{parts.query}" if parts.query else ""
        if host.endswith(_PUBLIC_SUFFIX):
            account = host[: -len(_PUBLIC_SUFFIX)]
            endpoint = f"{scheme}://{parts.netloc}"
            container, prefix = _split_container(parts.path, location)
        else:  # path style: http://host:port/<account>/<container>/<prefix>
            account, _, rest = unquote(parts.path).strip("/").partition("/")
            if not account:
                raise BadInput(
                    f"{location!r}: path-style URLs look like http://host:port/<account>/<container>/<prefix>",
                    location=location,
                )
            endpoint = f"{scheme}://{parts.netloc}/{account}"
            container, prefix = _split_container(rest, location)
        credential = None
        if conn is not None and conn.account == account and conn.key and not sas:
            credential = {"account_name": account, "account_key": conn.key}
        return AzureStore(container, prefix, account_url=endpoint + sas, credential=credential)

    raise BadInput(
        f"storage location {redact(location)!r}: unsupported scheme {parts.scheme!r} "
        "(use a folder, file://, az://, http(s):// or a connection string)",
        location=location,
    )
