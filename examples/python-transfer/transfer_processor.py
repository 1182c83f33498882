#!/usr/bin/env python3
"""A `transfer` ext-processor in Python, speaking vc-processors protocol v1.

Usage: transfer_processor.py [--disable_link]

The parent writes one request per line on stdin:
    {"id": 1, "task": {"stores": {...}, "routes": [...]}}
and this program answers one line per request on stdout:
    {"id":1,"err_msg":null,"output":true}
or, on failure,
    {"id":1,"err_msg":"transfer route 0: source /x: No such file or directory","output":null}

stdout carries nothing but the ready line and responses; logs go to stderr.
Requests run concurrently, one thread each, and may be answered in any order.
The program exits 0 when stdin closes, after the running requests have answered.

Standard library only; Python 3.9 or newer.
"""

import json
import logging
import os
import re
import shutil
import stat
import sys
import threading

STAGE = "transfer"
MAX_ID = 2**64 - 1

log = logging.getLogger("transfer-processor")

# The protocol stream. Anything else printed by mistake goes to stderr.
_proto_out = sys.stdout.buffer
sys.stdout = sys.stderr
_out_lock = threading.Lock()


class TransferError(Exception):
    """A failure reported to the parent as err_msg."""


def send(obj):
    """Writes one protocol line and flushes it, under the output lock."""
    line = json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n"
    with _out_lock:
        try:
            _proto_out.write(line)
            _proto_out.flush()
        except (BrokenPipeError, ValueError) as e:
            log.error("cannot write to the parent: %s", e)


def respond_ok(req_id, output):
    send({"id": req_id, "err_msg": None, "output": output})


def respond_err(req_id, message):
    send({"id": req_id, "err_msg": message, "output": None})


# ---------------------------------------------------------------------------
# The transfer task.


def _kind(is_dir):
    return "a directory" if is_dir else "a file"


def _decode_task(task):
    """Checks the task's shape the way the Rust decoder would; returns (stores, routes)."""
    if not isinstance(task, dict):
        raise TransferError("cannot decode transfer task: expected an object")
    for field in ("stores", "routes"):
        if field not in task:
            raise TransferError("cannot decode transfer task: missing field `%s`" % field)
    stores, routes = task["stores"], task["routes"]
    if not isinstance(stores, dict):
        raise TransferError("cannot decode transfer task: `stores` is not an object")
    if not isinstance(routes, list):
        raise TransferError("cannot decode transfer task: `routes` is not an array")
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            raise TransferError("cannot decode transfer task: route %d is not an object" % i)
        for end in ("src", "dest"):
            item = route.get(end)
            if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
                raise TransferError("cannot decode transfer task: route %d: `%s.uri` is missing or not a string" % (i, end))
            name = item.get("store_name")
            if name is not None and not isinstance(name, str):
                raise TransferError("cannot decode transfer task: route %d: `%s.store_name` is not a string" % (i, end))
        opt = route.get("opt")
        if opt is not None:
            if not isinstance(opt, dict) or not all(isinstance(opt.get(k), bool) for k in ("is_dir", "allow_link")):
                raise TransferError("cannot decode transfer task: route %d: `opt` needs booleans `is_dir` and `allow_link`" % i)
    return stores, routes


def _resolve(stores, item):
    """A route end as a local path: an absolute path, or a path inside a store."""
    uri = item["uri"]
    name = item.get("store_name")
    if name is None:
        if not os.path.isabs(uri):
            raise TransferError("%s is not an absolute path" % uri)
        return uri
    store = stores.get(name)
    if not isinstance(store, dict):
        raise TransferError("store %r is not in the task's stores" % name)
    meta = store.get("meta") or {}
    root = meta.get("path") if isinstance(meta, dict) else None
    if not isinstance(root, str) or not root:
        raise TransferError("store %r has no local `path` in its meta" % name)
    rel = uri.lstrip("/")
    if ".." in rel.split("/"):
        raise TransferError("%s leaves store %r" % (uri, name))
    return os.path.join(root, rel) if rel else root


def _remove_existing(dest, is_dir):
    """Removes an existing destination of the route's kind; refuses the other kind."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        # A link left by an earlier linked route: judge it by what it points to
        # (a dangling link is simply replaced), and remove only the link itself.
        if os.path.exists(dest) and os.path.isdir(dest) != is_dir:
            raise TransferError("destination %s exists and links to %s" % (dest, _kind(not is_dir)))
        os.unlink(dest)
        return
    existing_dir = stat.S_ISDIR(st.st_mode)
    if existing_dir != is_dir:
        raise TransferError("destination %s exists and is %s" % (dest, _kind(existing_dir)))
    try:
        if existing_dir:
            shutil.rmtree(dest)
        else:
            os.unlink(dest)
    except OSError as e:
        raise TransferError("remove old %s: %s" % (dest, e.strerror or e)) from e


def _copy_file(src, dest):
    """Copies to a temporary name beside dest, syncs, then renames into place."""
    tmp = os.path.join(os.path.dirname(dest), ".%s.partial" % os.path.basename(dest))
    try:
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise TransferError("copy %s to %s: %s" % (src, dest, e.strerror or e)) from e


def _copy_dir(src, dest):
    try:
        os.makedirs(dest, exist_ok=True)
        entries = list(os.scandir(src))
    except OSError as e:
        raise TransferError("copy directory %s to %s: %s" % (src, dest, e.strerror or e)) from e
    for entry in entries:
        to = os.path.join(dest, entry.name)
        if entry.is_dir():
            _copy_dir(entry.path, to)
        else:
            _copy_file(entry.path, to)


def _one_route(src, dest, is_dir, link):
    try:
        st = os.stat(src)
    except OSError as e:
        raise TransferError("source %s: %s" % (src, e.strerror or e)) from e
    src_dir = stat.S_ISDIR(st.st_mode)
    if src_dir != is_dir:
        raise TransferError("source %s is %s, the route says %s" % (src, _kind(src_dir), _kind(is_dir)))
    _remove_existing(dest, is_dir)
    parent = os.path.dirname(dest)
    if parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise TransferError("create %s: %s" % (parent, e.strerror or e)) from e
    if link:
        try:
            os.symlink(src, dest)
        except OSError as e:
            raise TransferError("link %s: %s" % (dest, e.strerror or e)) from e
    elif is_dir:
        _copy_dir(src, dest)
    else:
        _copy_file(src, dest)


def transfer(task, disable_link):
    stores, routes = _decode_task(task)
    for i, route in enumerate(routes):
        try:
            src = _resolve(stores, route["src"])
        except TransferError as e:
            raise TransferError("transfer route %d: source: %s" % (i, e)) from e
        try:
            dest = _resolve(stores, route["dest"])
        except TransferError as e:
            raise TransferError("transfer route %d: destination: %s" % (i, e)) from e
        opt = route.get("opt") or {"is_dir": False, "allow_link": False}
        link = opt["allow_link"] and not disable_link
        try:
            _one_route(src, dest, opt["is_dir"], link)
        except TransferError as e:
            raise TransferError("transfer route %d: %s -> %s: %s" % (i, src, dest, e)) from e
        log.info("route %d: %s %s -> %s", i, "linked" if link else "copied", src, dest)
    return True


# ---------------------------------------------------------------------------
# The protocol loop.


def _valid_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def run_request(req_id, task, disable_link):
    try:
        output = transfer(task, disable_link)
    except TransferError as e:
        log.warning("request %d failed: %s", req_id, e)
        respond_err(req_id, str(e))
        return
    except Exception as e:  # a bug here must still answer the request
        log.exception("request %d: unexpected error", req_id)
        respond_err(req_id, "transfer: unexpected error: %r" % (e,))
        return
    respond_ok(req_id, output)


def handle_line(line, disable_link, threads):
    try:
        req = json.loads(line)
    except ValueError as e:
        # Answer if an id can still be found, so the parent does not wait for it.
        m = re.search(r'"id"\s*:\s*(\d+)', line)
        if m and _valid_id(int(m.group(1))):
            respond_err(int(m.group(1)), "cannot parse request line: %s" % e)
        else:
            log.error("skipping unreadable request line: %.200s", line)
        return
    if not isinstance(req, dict) or not _valid_id(req.get("id")):
        log.error("skipping a line that is not a request: %.200s", line)
        return
    req_id = req["id"]
    if "task" not in req:
        respond_err(req_id, "bad request: missing field `task`")
        return
    t = threading.Thread(target=run_request, args=(req_id, req["task"], disable_link), name="request-%d" % req_id)
    t.start()
    threads.append(t)


def main(argv):
    level = getattr(logging, os.environ.get("LOG_LEVEL", "INFO").upper(), None)
    if not isinstance(level, int):
        level = logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    disable_link = any(a in ("--disable_link", "--disable-link") for a in argv[1:])
    disable_link = disable_link or os.environ.get("DISABLE_LINK", "").lower() in ("1", "true", "yes", "on")

    ready = ("%s processor ready\n" % STAGE).encode("ascii")
    with _out_lock:
        _proto_out.write(ready)
        _proto_out.flush()
    log.info("serving %s (disable_link=%s)", STAGE, disable_link)

    threads = []
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        handle_line(line, disable_link, threads)
        threads[:] = [t for t in threads if t.is_alive()]

    # stdin closed: no more requests. Let the running ones answer, then exit.
    for t in threads:
        t.join()
    log.info("stdin closed; exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
