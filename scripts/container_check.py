#!/usr/bin/env python3
"""The container image without a container engine (called by scripts/static-check.sh).

Reads packaging/Dockerfile's final stage, checks what the image promises (FROM scratch, a
numeric non-root USER, EXPOSE 8080, a JSON ENTRYPOINT, no RUN: there is no shell), lays out
exactly the files its COPY lines put there in an empty directory, and runs the ENTRYPOINT from
that root (chroot) as the USER, with only the image's ENV, against the fake Fastly API: the
process must run under that UID and serve real-time series on /metrics and 200 on /readyz.

Needs root for chroot; otherwise it skips loudly (exit 0), or fails when --require is given.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def fail(msg):
    print(f"container-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def parse(path, build_args):
    """The final stage's instructions, with ARG defaults (global and stage) substituted."""
    lines, cur = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#") and not cur:
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    args = dict(build_args)
    stages, final = [], None
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG":
            name, _, default = rest.partition("=")
            if name not in args and default:
                args[name] = default
            continue
        if word == "FROM":
            final = {"from": rest, "instructions": []}
            stages.append(final)
            continue
        check(final is not None, f"{path}: {word} before FROM")
        rest = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), rest)
        final["instructions"].append((word, rest))
    return stages


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dockerfile", required=True)
    ap.add_argument("--target", required=True, help="Rust target triple (the Dockerfile's TARGET)")
    ap.add_argument("--fake", required=True)
    ap.add_argument("--require", action="store_true")
    a = ap.parse_args()
    # A SIGTERM (Ctrl-C, make interrupted) unwinds through `finally`, which stops the processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    stages = parse(a.dockerfile, {"TARGET": a.target})
    image = stages[-1]
    check(image["from"].strip() == "scratch", f"the final stage is FROM {image['from']}, not scratch")
    ins = image["instructions"]
    check(not [i for i in ins if i[0] == "RUN"], "RUN in a scratch stage: there is no shell")
    user = [r for w, r in ins if w == "USER"]
    check(len(user) == 1 and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[0]), f"USER must be numeric uid:gid, not {user}")
    uid, gid = (int(x) for x in user[0].split(":"))
    check(("EXPOSE", "8080") in ins, "EXPOSE 8080 missing")
    entry = [json.loads(r) for w, r in ins if w == "ENTRYPOINT"]
    check(len(entry) == 1, "one JSON-form ENTRYPOINT expected")
    entry = entry[0]
    cmd = [json.loads(r) for w, r in ins if w == "CMD"]
    cmd = cmd[0] if cmd else []
    env = {}
    for w, r in ins:
        if w == "ENV":
            k, _, v = r.partition("=")
            env[k.strip()] = v.strip()

    if os.geteuid() != 0 or not shutil.which("chroot"):
        msg = "chroot needs root: the image's filesystem was not run"
        if a.require:
            fail(msg)
        print(f"container-check: SKIPPED: {msg}")
        return

    root = tempfile.mkdtemp(prefix="image-root-")
    os.chmod(root, 0o755)  # an image's / is world-readable; mkdtemp's 0700 would lock the USER out
    procs = []
    try:
        files = []
        for w, r in ins:
            if w != "COPY":
                continue
            parts = r.split()
            from_stage = [p for p in parts if p.startswith("--from=")]
            src, dst = [p for p in parts if not p.startswith("--")]
            # The build stage installs Debian's ca-certificates: the same file as on this Debian host.
            host_src = src if from_stage else os.path.join(os.path.dirname(a.dockerfile), "..", src)
            check(os.path.isfile(host_src), f"COPY source {host_src} missing (make static TARGET={a.target}?)")
            out = os.path.join(root, dst.lstrip("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copy2(host_src, out)
            files.append(dst)
        laid = sorted("/" + os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
        check(laid == sorted(files), f"unexpected files {laid}")
        check(not os.path.exists(os.path.join(root, "bin/sh")), "a shell in the image")
        print(f"container-check: image root holds only {', '.join(laid)}; USER {uid}:{gid}; ENTRYPOINT {entry}")

        api_port, port = free_port(), free_port()
        fake = subprocess.Popen([a.fake, "-listen", f"127.0.0.1:{api_port}", "-services", "2", "-token", "demo"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(fake)
        base = f"http://127.0.0.1:{api_port}"
        argv = [shutil.which("chroot"), f"--userspec={uid}:{gid}", root] + entry + cmd + [
            "-token", "demo", "-api-endpoint", base, "-rt-endpoint", base, "-listen", f"127.0.0.1:{port}"]
        log = tempfile.TemporaryFile()
        exporter = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
        procs.append(exporter)
        deadline = time.monotonic() + 30
        while True:
            if exporter.poll() is not None:
                log.seek(0)
                fail(f"the exporter exited with {exporter.returncode}: {log.read().decode(errors='replace')}")
            status, body = get(f"http://127.0.0.1:{port}/metrics")
            if status == 200 and "fastly_rt_requests_total{" in body and get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                break
            check(time.monotonic() < deadline, "no real-time series within 30 s")
            time.sleep(0.3)
        uids = [l.split()[1:] for l in open(f"/proc/{exporter.pid}/status") if l.startswith(("Uid:", "Gid:"))]
        check(uids == [[str(uid)] * 4, [str(gid)] * 4], f"the exporter runs as {uids}, not {uid}:{gid}")
        print(f"container-check: OK: the image's filesystem, run as {uid}:{gid} with only its ENV, served "
              f"{body.count(chr(10))} lines of /metrics and /readyz 200")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
