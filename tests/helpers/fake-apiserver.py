#!/usr/bin/env python3
"""A tiny Kubernetes API server for the daemon's tests: list and watch of
Services, EndpointSlices and Nodes over HTTPS, from objects the test feeds it,
with the faults a real watch meets (dropped streams, 410 Gone, bookmarks,
garbage). Python's standard library only.

  fake-apiserver.py --cert C --key K --port P --control-port Q [--token T]
                    [--client-ca CA] [--page-size N] [OBJECTS.json ...]

The control port (plain HTTP on 127.0.0.1) takes:
  POST /apply      body: one object or a v1 List  -> ADDED / MODIFIED events
  POST /delete     body: {"kind","namespace","name"} -> DELETED event
  POST /drop       close every watch stream abruptly (no final chunk)
  POST /garbage    write a line that is not JSON on every watch stream
  POST /gone       compact history: every watch gets ERROR 410 and ends
  POST /bookmark   send a BOOKMARK with the current resourceVersion
  POST /fail?n=N   answer the next N API requests with HTTP 500
  GET  /stats      {"lists": {...}, "watches": {...}, "auth_failures": n,
                    "selectors": [...], "open_watches": n}
"""
import argparse
import json
import queue
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

RESOURCES = {
    "/api/v1/services": ("Service", "v1", "ServiceList"),
    "/apis/discovery.k8s.io/v1/endpointslices": (
        "EndpointSlice", "discovery.k8s.io/v1", "EndpointSliceList"),
    "/api/v1/nodes": ("Node", "v1", "NodeList"),
}
KIND_PATH = {v[0]: k for k, v in RESOURCES.items()}


def _res(name, kind, namespaced):
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}


# Just enough legacy discovery for `kubectl apply --dry-run=client` to map
# the kinds the deploy/ manifests use.
DISCOVERY = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0-svcproxy-test"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": g + "/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": g + "/v1", "version": "v1"}}
        for g in ("apps", "rbac.authorization.k8s.io", "discovery.k8s.io")]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        _res("services", "Service", True), _res("nodes", "Node", False),
        _res("serviceaccounts", "ServiceAccount", True),
        _res("configmaps", "ConfigMap", True), _res("namespaces", "Namespace", False)]},
    "/apis/apps/v1": {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
        _res("daemonsets", "DaemonSet", True)]},
    "/apis/rbac.authorization.k8s.io/v1": {
        "kind": "APIResourceList", "groupVersion": "rbac.authorization.k8s.io/v1",
        "resources": [_res("clusterroles", "ClusterRole", False),
                      _res("clusterrolebindings", "ClusterRoleBinding", False)]},
    "/apis/discovery.k8s.io/v1": {
        "kind": "APIResourceList", "groupVersion": "discovery.k8s.io/v1",
        "resources": [_res("endpointslices", "EndpointSlice", True)]},
}


class State:
    def __init__(self, page_size):
        self.lock = threading.Lock()
        self.rv = 100
        self.compacted = 0
        self.objects = {}  # (kind, ns, name) -> object
        self.history = []  # (rv, type, object)
        self.watchers = set()
        self.page_size = page_size
        self.fail_next = 0
        self.stats = {"lists": {}, "watches": {}, "auth_failures": 0,
                      "selectors": [], "requests": 0, "client_cert_requests": 0,
                      "last_watch_rv": {}}

    def key(self, obj):
        md = obj.get("metadata", {})
        return (obj.get("kind"), md.get("namespace", ""), md.get("name", ""))

    def broadcast(self, kind, item):
        for w in list(self.watchers):
            if w.kind == kind or item[0] in ("drop", "garbage", "gone", "bookmark"):
                w.q.put(item)

    def apply(self, obj):
        with self.lock:
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
            k = self.key(obj)
            typ = "MODIFIED" if k in self.objects else "ADDED"
            self.objects[k] = obj
            self.history.append((self.rv, typ, obj))
            self.broadcast(obj["kind"], ("event", typ, obj))

    def delete(self, kind, ns, name):
        with self.lock:
            obj = self.objects.pop((kind, ns, name), None)
            if obj is None:
                return False
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, "DELETED", obj))
            self.broadcast(kind, ("event", "DELETED", obj))
            return True


def selector_match(obj, label_sel, field_sel):
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for req in filter(None, (label_sel or "").split(",")):
        if req.startswith("!"):
            if req[1:] in labels:
                return False
        elif "=" in req:
            k, v = req.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif req not in labels:
            return False
    for req in filter(None, (field_sel or "").split(",")):
        k, v = req.split("=", 1)
        if k == "metadata.name" and obj.get("metadata", {}).get("name") != v:
            return False
    return True


class Watcher:
    def __init__(self, kind):
        self.kind = kind
        self.q = queue.Queue()


def make_api_handler(state, token):
    class Api(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def send_json(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def status(self, code, reason, message):
            self.send_json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": reason, "message": message, "code": code})

        def chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def do_GET(self):
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with state.lock:
                state.stats["requests"] += 1
                if self.connection.getpeercert():
                    state.stats["client_cert_requests"] += 1
                failing = state.fail_next > 0
                if failing:
                    state.fail_next -= 1
            if token and self.headers.get("Authorization") != "Bearer " + token:
                with state.lock:
                    state.stats["auth_failures"] += 1
                return self.status(401, "Unauthorized", "Unauthorized")
            if url.path in DISCOVERY:
                return self.send_json(200, DISCOVERY[url.path])
            if url.path not in RESOURCES:
                return self.status(404, "NotFound", "no such resource")
            if failing:
                return self.status(500, "InternalError", "injected failure")
            kind, api_version, list_kind = RESOURCES[url.path]
            with state.lock:
                sel = q.get("labelSelector") or q.get("fieldSelector") or ""
                if sel not in state.stats["selectors"]:
                    state.stats["selectors"].append(sel)
            if q.get("watch") in ("true", "1"):
                return self.watch(kind, q)
            return self.list(kind, api_version, list_kind, q)

        def list(self, kind, api_version, list_kind, q):
            with state.lock:
                state.stats["lists"][kind] = state.stats["lists"].get(kind, 0) + 1
                items = [o for k, o in sorted(state.objects.items())
                         if k[0] == kind and selector_match(
                             o, q.get("labelSelector"), q.get("fieldSelector"))]
                rv = state.rv
            start = int(q.get("continue", "0") or 0)
            limit = min(int(q.get("limit", "0") or 0) or 10**9, state.page_size or 10**9)
            page = items[start:start + limit]
            cont = str(start + limit) if start + limit < len(items) else ""
            # Lists carry no kind/apiVersion in their items, as the real API.
            page = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                    for o in page]
            self.send_json(200, {"kind": list_kind, "apiVersion": api_version,
                                 "metadata": {"resourceVersion": str(rv), "continue": cont},
                                 "items": page})

        def watch(self, kind, q):
            w = Watcher(kind)
            since = int(q.get("resourceVersion", "0") or 0)
            with state.lock:
                state.stats["watches"][kind] = state.stats["watches"].get(kind, 0) + 1
                state.stats["last_watch_rv"][kind] = q.get("resourceVersion", "")
                too_old = since < state.compacted
                backlog = [] if too_old else [
                    ("event", t, o) for rv, t, o in state.history
                    if rv > since and o["kind"] == kind]
                state.watchers.add(w)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                if too_old:
                    self.chunk(self.gone_line())
                    self.chunk(b"")
                    return
                for item in backlog:
                    w.q.put(item)
                timeout = float(q.get("timeoutSeconds", "300"))
                while True:
                    try:
                        item = w.q.get(timeout=timeout)
                    except queue.Empty:
                        self.chunk(b"")
                        return
                    if item[0] == "event":
                        if selector_match(item[2], q.get("labelSelector"),
                                          q.get("fieldSelector")):
                            self.chunk(json.dumps({"type": item[1], "object": item[2]})
                                       .encode() + b"\n")
                    elif item[0] == "bookmark":
                        self.chunk(json.dumps({"type": "BOOKMARK", "object": {
                            "kind": kind, "metadata": {"resourceVersion": str(item[1])}}})
                            .encode() + b"\n")
                    elif item[0] == "garbage":
                        self.chunk(b"<html>proxy error: this is not JSON</html>\n")
                    elif item[0] == "gone":
                        self.chunk(self.gone_line())
                        self.chunk(b"")
                        return
                    elif item[0] == "drop":
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                return
            finally:
                with state.lock:
                    state.watchers.discard(w)

        def gone_line(self):
            return json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "too old resource version", "reason": "Expired",
                "code": 410}}).encode() + b"\n"

    return Api


def make_control_handler(state):
    class Control(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/stats":
                with state.lock:
                    body = dict(state.stats, open_watches=len(state.watchers), rv=state.rv)
                return self.reply(200, body)
            self.reply(404, {})

        def do_POST(self):
            url = urlparse(self.path)
            n = int(self.headers.get("Content-Length", "0") or 0)
            body = json.loads(self.rfile.read(n) or b"null")
            if url.path == "/apply":
                for obj in body.get("items", [body]) if body.get("kind", "").endswith(
                        "List") else [body]:
                    state.apply(obj)
            elif url.path == "/delete":
                if not state.delete(body["kind"], body.get("namespace", ""), body["name"]):
                    return self.reply(404, {})
            elif url.path in ("/drop", "/garbage"):
                with state.lock:
                    state.broadcast(None, (url.path[1:],))
            elif url.path == "/gone":
                with state.lock:
                    state.rv += 1
                    state.compacted = state.rv
                    state.history = []
                    state.broadcast(None, ("gone",))
            elif url.path == "/bookmark":
                with state.lock:
                    state.rv += 1
                    state.broadcast(None, ("bookmark", state.rv))
            elif url.path == "/fail":
                with state.lock:
                    state.fail_next = int(parse_qs(url.query).get("n", ["1"])[0])
            else:
                return self.reply(404, {})
            self.reply(200, {"ok": True})

    return Control


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--token")
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("objects", nargs="*")
    args = ap.parse_args()

    state = State(args.page_size)
    for path in args.objects:
        with open(path) as f:
            doc = json.load(f)
        for obj in doc.get("items", [doc]) if "items" in doc else [doc]:
            state.apply(obj)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        # Optional: the in-cluster path authenticates by token alone; the
        # stats tell whether a certificate was presented.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ThreadingHTTPServer.daemon_threads = True
    api = ThreadingHTTPServer((args.listen, args.port), make_api_handler(state, args.token))
    api.socket = ctx.wrap_socket(api.socket, server_side=True)
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), make_control_handler(state))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print("fake-apiserver ready", flush=True)
    api.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
