"""HTTP plumbing the connectome query loaders (neuPrint, CAVE) share.

Both services authenticate with a bearer token and answer JSON (CAVE also
Arrow IPC); this module turns their failure modes (no token, 401/403, 404,
refused connections, malformed bodies) into one-line
:class:`~neurodata.errors.DownloadError` messages naming the URL.
"""
from __future__ import annotations

import json
import os

from neurodata.errors import DownloadError

#: Seconds to wait for a connection / for one page of results.
TIMEOUT = (10.0, 300.0)


def bearer_token(token: str | None, env: str, url: str) -> str:
    """The token to send: ``token``, else the environment variable ``env``.

    A token pasted as its whole JSON document (``{"token": "..."}``, as
    neuPrint's account page and CAVE's secret files hold it) is unwrapped.
    """
    token = token or os.environ.get(env)
    if not token:
        raise DownloadError(f"no API token given (pass token= or set {env})", url)
    token = token.strip()
    if token.startswith("{"):
        try:
            token = json.loads(token)["token"]
        except (ValueError, KeyError, TypeError):
            raise DownloadError("token looks like JSON but has no 'token' entry", url) from None
    return token.strip().strip('"')


def normalise_server(server: str) -> str:
    """``host[:port]`` or a URL -> ``scheme://host[:port]`` without a trailing slash."""
    server = str(server).strip()
    if "://" not in server:
        server = "https://" + server
    return server.rstrip("/")


def session(token: str, cookie: str | None = None):
    """A :class:`requests.Session` sending the bearer token (and a cookie copy of it)."""
    import requests

    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {token}",
                      "User-Agent": "neurodata"})
    if cookie:
        s.cookies.set(cookie, token)
    return s


def request(sess, method: str, url: str, *, what: str, missing: str | None = None,
            **kw):
    """Send one request and return the response, or raise a :class:`DownloadError`.

    ``what`` names the thing asked for in messages; ``missing`` is the
    message for a 404 (e.g. ``"no dataset 'x' on this server"``).
    """
    import requests

    try:
        r = sess.request(method, url, timeout=TIMEOUT, **kw)
    except requests.exceptions.SSLError as e:
        raise DownloadError(f"TLS failure fetching {what} ({e.__class__.__name__})", url) from None
    except requests.exceptions.Timeout:
        raise DownloadError(f"server timed out fetching {what}", url) from None
    except requests.exceptions.ConnectionError:
        raise DownloadError(f"server unreachable fetching {what}", url) from None
    if r.status_code in (401, 403):
        raise DownloadError(f"HTTP {r.status_code} fetching {what}: token rejected "
                            f"({_server_message(r)})", url)
    if r.status_code == 404:
        raise DownloadError(missing or f"HTTP 404 fetching {what} ({_server_message(r)})", url)
    if r.status_code >= 400:
        raise DownloadError(f"HTTP {r.status_code} fetching {what}: {_server_message(r)}", url)
    return r


def json_body(r, url: str, what: str):
    """The decoded JSON body of a response, or a :class:`DownloadError`."""
    try:
        return r.json()
    except ValueError:
        raise DownloadError(f"server sent a non-JSON answer for {what}", url) from None


def _server_message(r) -> str:
    """The server's own error text (``{"error": ...}`` / ``{"message": ...}``), shortened."""
    try:
        body = r.json()
        if isinstance(body, dict):
            msg = body.get("error") or body.get("message") or body.get("detail") or body
        else:
            msg = body
    except ValueError:
        msg = r.text
    msg = " ".join(str(msg).split())
    return (msg[:200] + "...") if len(msg) > 200 else (msg or r.reason or "no message")


#: URL schemes naming a query source: ``neuprint://HOST/DATASET``,
#: ``cave://HOST/DATASTACK/TABLE``; ``+http`` selects plain http (local servers).
QUERY_SCHEMES = {"neuprint": 1, "neuprint+http": 1, "cave": 2, "cave+http": 2}


def is_query_url(src) -> bool:
    """True for ``neuprint://...`` / ``cave://...`` sources."""
    return isinstance(src, str) and src.split("://", 1)[0].lower() in QUERY_SCHEMES


def convert_query_url(url: str, out, *, overwrite: bool = False, attrs=None, **kw):
    """Dispatch a ``neuprint://`` or ``cave://`` URL to its loader; returns the store path."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    host, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not host or len(parts) != QUERY_SCHEMES[scheme]:
        shape = "HOST/DATASET" if scheme.startswith("neuprint") else "HOST/DATASTACK/TABLE"
        raise DownloadError(f"expected {scheme}://{shape}", url)
    server = ("http://" if scheme.endswith("+http") else "https://") + host
    if scheme.startswith("neuprint"):
        from neurodata.loaders.connectome_neuprint import convert_neuprint

        return convert_neuprint(server, parts[0], out, overwrite=overwrite, attrs=attrs, **kw)
    from neurodata.loaders.connectome_cave import convert_cave

    return convert_cave(parts[0], parts[1], out, server=server, overwrite=overwrite,
                        attrs=attrs, **kw)
