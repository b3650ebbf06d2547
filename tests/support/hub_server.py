"""A hub-compatible HTTP server on 127.0.0.1 for tests.

It implements the part of the HuggingFace hub API that ``huggingface_hub``
uses to create a dataset repository, commit files (regular uploads, base64 in
the NDJSON commit), read repository info, list trees and paths, and download
files by ``resolve`` URLs (with Range), so publish and pull run through the
real client. Tokens: ``Authorization: Bearer <token>`` must name a user in
``tokens``; a user may write only to its own namespace.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


class HubState:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens  # token -> user name
        self.repos: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []


def _sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, *a):  # quiet
        pass

    # -- helpers --------------------------------------------------------------
    def _user(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.state.tokens.get(auth[7:])
        return None

    def _send(self, code, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code, msg):
        self._send(code, {"error": msg}, headers={"X-Error-Message": msg})

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _repo(self, repo_id, write=False):
        repo = self.state.repos.get(repo_id)
        user = self._user()
        if repo is None or (repo["private"] and user != repo_id.split("/")[0]):
            self._send(404, {"error": "Repository not found"},
                       headers={"X-Error-Code": "RepoNotFound",
                                "X-Error-Message": "Repository not found"})
            return None
        if write:
            if user is None:
                self._error(401, "Invalid credentials in Authorization header")
                return None
            if user != repo_id.split("/")[0]:
                self._error(403, "You don't have the rights to write to this repository")
                return None
        return repo

    # -- routing ----------------------------------------------------------------
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        u = urlparse(self.path)
        path = unquote(u.path)
        self.state.requests.append((self.command, path))
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", path)
        if m:
            repo = self._repo(m.group(1))
            if repo is None:
                return
            return self._send(200, self._info(m.group(1), repo))
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/tree/([^/]+)/?(.*)$", path)
        if m:
            repo = self._repo(m.group(1))
            if repo is None:
                return
            q = parse_qs(u.query)
            recursive = q.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._send(200, self._tree(repo, m.group(3).strip("/"), recursive))
        m = re.match(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            repo = self._repo(m.group(1))
            if repo is None:
                return
            data = repo["files"].get(m.group(3))
            if data is None:
                return self._send(404, {"error": "Entry not found"},
                                  headers={"X-Error-Code": "EntryNotFound"})
            headers = {"ETag": f'"{_sha(data)}"', "X-Repo-Commit": repo["sha"],
                       "Accept-Ranges": "bytes"}
            rng = self.headers.get("Range")
            if rng and self.command == "GET":
                a, _, b = rng.replace("bytes=", "").partition("-")
                a = int(a) if a else max(0, len(data) - int(b))
                b = int(b) if (b and rng.replace("bytes=", "")[0] != "-") else len(data) - 1
                b = min(b, len(data) - 1)
                part = data[a:b + 1]
                headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
                return self._send(206, part, "application/octet-stream", headers)
            if self.command == "HEAD":
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return
            return self._send(200, data, "application/octet-stream", headers)
        self._error(404, f"no route for GET {path}")

    def do_POST(self):
        u = urlparse(self.path)
        path = unquote(u.path)
        self.state.requests.append((self.command, path))
        body = self._body()
        if path == "/api/repos/create":
            user = self._user()
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            req = json.loads(body or b"{}")
            org = req.get("organization") or user
            if org != user:
                return self._error(403, "You don't have the rights to create a repository here")
            repo_id = f"{org}/{req['name']}"
            with self.state.lock:
                if repo_id in self.state.repos:
                    return self._send(409, {"error": "You already created this dataset repo",
                                            "url": f"http://{self.headers['Host']}/datasets/{repo_id}"})
                private = req.get("private") or req.get("visibility") == "private"
                self.state.repos[repo_id] = {"private": bool(private), "files": {},
                                             "sha": "0" * 40, "commits": []}
            return self._send(200, {"url": f"http://{self.headers['Host']}/datasets/{repo_id}",
                                    "name": repo_id})
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}"))
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/preupload/([^/]+)$", path)
        if m:
            repo = self._repo(m.group(1), write=True)
            if repo is None:
                return
            files = json.loads(body)["files"]
            return self._send(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                for f in files]})
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/commit/([^/]+)$", path)
        if m:
            repo = self._repo(m.group(1), write=True)
            if repo is None:
                return
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            with self.state.lock:
                summary = ""
                for item in lines:
                    key, value = item["key"], item["value"]
                    if key == "header":
                        summary = value.get("summary", "")
                    elif key == "file":
                        data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                            else value["content"].encode()
                        repo["files"][value["path"]] = data
                    elif key in ("deletedFile", "deletedFolder"):
                        p = value["path"]
                        for f in [f for f in repo["files"] if f == p or f.startswith(p.rstrip("/") + "/")]:
                            del repo["files"][f]
                    else:
                        return self._error(400, f"commit operation {key!r} not supported here")
                repo["sha"] = hashlib.sha1(f"{time.time()}{summary}{len(repo['commits'])}".encode()).hexdigest()
                repo["commits"].append((repo["sha"], summary))
            host = self.headers["Host"]
            return self._send(200, {"commitUrl": f"http://{host}/datasets/{m.group(1)}/commit/{repo['sha']}",
                                    "commitOid": repo["sha"], "pullRequestUrl": None})
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/paths-info/([^/]+)$", path)
        if m:
            repo = self._repo(m.group(1))
            if repo is None:
                return
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                paths = json.loads(body).get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            out = []
            for p in paths:
                p = p.strip("/")
                if p in repo["files"]:
                    out.append(self._entry(p, repo["files"][p]))
                elif any(f.startswith(p + "/") for f in repo["files"]) or p == "":
                    out.append({"type": "directory", "path": p, "oid": "0" * 40, "size": 0})
            return self._send(200, out)
        self._error(404, f"no route for POST {path}")

    def _validate_yaml(self, req):
        """Check a card's YAML block the way the hub does for the fields we use."""
        import yaml

        text = req.get("content", "")
        m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
        try:
            meta = yaml.safe_load(m.group(1) if m else "") or {}
        except yaml.YAMLError as e:
            return self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}]})
        errors = []
        if not isinstance(meta, dict):
            errors.append("metadata must be a mapping")
        else:
            for key in ("tags", "task_categories", "size_categories"):
                if key in meta and not isinstance(meta[key], list):
                    errors.append(f"{key} must be a list")
            for cfg in meta.get("configs", []):
                if "config_name" not in cfg or "data_files" not in cfg:
                    errors.append("each config needs config_name and data_files")
        if errors:
            return self._send(400, {"errors": [{"message": e} for e in errors]})
        return self._send(200, {"errors": [], "warnings": []})

    # -- views --------------------------------------------------------------------
    def _entry(self, p, data):
        return {"type": "file", "path": p, "size": len(data), "oid": _sha(data)}

    def _tree(self, repo, prefix, recursive):
        out, dirs = [], set()
        for p, data in sorted(repo["files"].items()):
            if prefix and not p.startswith(prefix + "/"):
                continue
            rest = p[len(prefix) + 1:] if prefix else p
            if recursive or "/" not in rest:
                out.append(self._entry(p, data))
            if "/" in rest:
                parts = rest.split("/")
                for k in range(1, len(parts) if recursive else 2):
                    d = "/".join(([prefix] if prefix else []) + parts[:k])
                    dirs.add(d)
        out += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        return out

    def _info(self, repo_id, repo):
        return {"id": repo_id, "_id": repo_id, "sha": repo["sha"], "private": repo["private"],
                "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(repo["files"].items())],
                "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
                "author": repo_id.split("/")[0], "disabled": False, "gated": False,
                "cardData": {}, "createdAt": "2026-01-01T00:00:00.000Z"}


class HubServer:
    """Run the server in a thread: ``with HubServer({"tok": "alice"}) as hub: hub.url``."""

    def __init__(self, tokens: dict[str, str]):
        self.state = HubState(tokens)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
