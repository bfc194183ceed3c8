#!/usr/bin/env python3
"""Checks the Helm chart without a cluster (run by scripts/helm-check.sh, part of `make test`).

1. `helm lint --strict`.
2. `helm template` with several value sets; every rendered object is checked against the
   Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors), and the
   CRD kinds it has no schema for (ServiceMonitor, PrometheusRule) for the structure the
   Prometheus Operator needs. Each set's object kinds and key settings are asserted.
3. A simulated rollout: the rendered StatefulSet's pod template is run as N local processes
   of the real exporter against the fake Fastly API, each with the environment the kubelet
   would give it (downward-API fields, the Secret's value, $(VAR) expansion in args). Their
   /sd target sets must be disjoint and together cover every service; every probe path in the
   pod spec must answer 200. One more "pod" past the shard count must exit 2 with one line.
   With persistence, each pod's volume is a directory of its own: every pod must write its
   state file there, and a pod restarted after SIGTERM (a rollout) must restore from it.
4. When `prometheus` is installed, examples/prometheus-sharded.yml (the README's per-pod
   http_sd configuration) runs against those pods: one target per service, each scraped at
   the pod that listed it, all up.

Any failure exits 1 with a message naming what was wrong.
"""

import argparse
import base64
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

import yaml

K8S_VERSION = "1.33.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
RELEASE = "fx"
NAMESPACE = "monitoring"
TOKEN = "sim-token-0123456789abcdef"
EXISTING_SECRET = ("fastly-api", "api-token")
SERVICES = 30
WAIT = 30.0


def fail(msg):
    print(f"helm-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


# ---------------------------------------------------------------------------------------------
# Rendering and validation


def helm_template(helm, chart, sets):
    """Renders with `--set` for each "k=v" string and `-f` for each dict (a values file)."""
    cmd = [helm, "template", RELEASE, chart, "--namespace", NAMESPACE, "--kube-version", K8S_VERSION]
    for s in sets:
        if isinstance(s, dict):
            f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            yaml.safe_dump(s, f)
            f.close()
            cmd += ["-f", f.name]
        else:
            cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True)
    for i, arg in enumerate(cmd):
        if arg == "-f":
            os.unlink(cmd[i + 1])
    check(out.returncode == 0, f"helm template {sets}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate_schema(objs, label, kv):
    """kubernetes-validate against the K8S_VERSION schemas, strict. Returns the skipped kinds."""
    skipped = []
    for o in objs:
        if o["kind"] in CRD_KINDS:
            skipped.append(o["kind"])
            continue
        try:
            kv.validate(o, K8S_VERSION, strict=True)
        except Exception as e:  # ValidationError, SchemaNotFoundError, ...
            fail(f"[{label}] {o['kind']}/{o['metadata']['name']} does not validate against Kubernetes "
                 f"{K8S_VERSION}: {getattr(e, 'message', e)}")
    return skipped


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind):
    found = by_kind(objs, kind)
    check(len(found) == 1, f"want one {kind}, got {len(found)}")
    return found[0]


def check_crds(objs, label):
    """What the Prometheus Operator needs, for the kinds no schema covers."""
    service = one(objs, "Service")
    for sm in by_kind(objs, "ServiceMonitor"):
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", f"[{label}] ServiceMonitor apiVersion")
        spec = sm["spec"]
        ports = {p["name"] for p in service["spec"]["ports"]}
        for ep in spec["endpoints"]:
            check(ep["port"] in ports, f"[{label}] ServiceMonitor port {ep['port']} is not a Service port {ports}")
            check(ep.get("path", "/metrics").startswith("/"), f"[{label}] ServiceMonitor path")
        sel = spec["selector"]["matchLabels"]
        labels = service["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in sel.items()),
              f"[{label}] ServiceMonitor selector {sel} does not match the Service's labels {labels}")
        check(spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]],
              f"[{label}] ServiceMonitor namespaceSelector")
    for rule in by_kind(objs, "PrometheusRule"):
        check(rule["apiVersion"] == "monitoring.coreos.com/v1", f"[{label}] PrometheusRule apiVersion")
        groups = rule["spec"]["groups"]
        check(groups and all(g.get("name") and g.get("rules") for g in groups), f"[{label}] PrometheusRule groups")
        for g in groups:
            for r in g["rules"]:
                check(isinstance(r.get("expr"), str) and (r.get("alert") or r.get("record")),
                      f"[{label}] PrometheusRule rule {r}")
    for cm in by_kind(objs, "ConfigMap"):
        for name, text in cm["data"].items():
            if name.endswith(".json"):
                dash = json.loads(text)
                check(dash.get("panels"), f"[{label}] dashboard {name} has no panels")


def pod_template(objs):
    sts = one(objs, "StatefulSet")
    return sts, sts["spec"]["template"], sts["spec"]["template"]["spec"]["containers"][0]


def env_names(container):
    return [e["name"] for e in container.get("env", [])]


def check_pod_spec(objs, label, shards):
    sts, tmpl, c = pod_template(objs)
    check(sts["spec"]["replicas"] == shards, f"[{label}] replicas {sts['spec']['replicas']} != {shards}")
    check(sts["spec"]["serviceName"] == one(objs, "Service")["metadata"]["name"], f"[{label}] serviceName")
    check(one(objs, "Service")["spec"].get("clusterIP") == "None", f"[{label}] the Service must be headless")
    pod = tmpl["spec"]
    sc = pod["securityContext"]
    check(sc.get("runAsNonRoot") is True and isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0,
          f"[{label}] pod must run as a non-root numeric UID: {sc}")
    check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"[{label}] seccomp RuntimeDefault")
    csc = c["securityContext"]
    check(csc.get("readOnlyRootFilesystem") is True, f"[{label}] readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"[{label}] allowPrivilegeEscalation")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"[{label}] capabilities drop ALL")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"[{label}] liveness /healthz")
    # With basic auth on (webConfig.basicAuth) /readyz needs credentials: readiness asks /healthz.
    ready = "/healthz" if "webConfig" in label else "/readyz"
    check(c["readinessProbe"]["httpGet"]["path"] == ready, f"[{label}] readiness {ready}")
    check(c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], f"[{label}] resources")
    check(pod.get("automountServiceAccountToken") is False, f"[{label}] no service account token")
    check("-listen=:8080" in c["args"], f"[{label}] the pod must listen on every interface: {c['args']}")
    sharded = [a for a in c["args"] if a.startswith("-service-shard")]
    if shards > 1:
        check(len(sharded) == 1 and sharded[0].endswith(f"/{shards}"), f"[{label}] shard arg {sharded}")
    else:
        check(not sharded, f"[{label}] one shard needs no shard flag: {sharded}")


# ---------------------------------------------------------------------------------------------
# The kubelet's part


def expand(s, env):
    """Kubernetes' $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
    $(NAME) becomes NAME's value when NAME is defined, else stays as written; $$ is a literal $;
    a $ before anything else, or an unterminated $(, stays as written."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = s.find(")", i + 2)
                if end != -1:
                    name = s[i + 2:end]
                    out.append(env[name] if name in env else s[i:end + 1])
                    i = end + 1
                    continue
            out.append("$")
            i += 1
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


def self_test_expand():
    env = {"A": "x", "B": "$(A)"}
    cases = [("$(A)/3", "x/3"), ("$(NOPE)/3", "$(NOPE)/3"), ("$$(A)", "$(A)"), ("a$b", "a$b"),
             ("$(A", "$(A"), ("$", "$"), ("$(B)", "$(A)"), ("$$$(A)", "$x"), ("", "")]
    for given, want in cases:
        check(expand(given, env) == want, f"expand({given!r}) = {expand(given, env)!r}, want {want!r}")


FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def field_ref(path, pod):
    if path == "metadata.name":
        return pod["name"]
    if path == "metadata.namespace":
        return pod["namespace"]
    if path == "spec.serviceAccountName":
        return pod["serviceAccountName"]
    if path in ("status.podIP", "status.hostIP"):
        return "127.0.0.1"
    m = FIELD_LABEL.match(path)
    if m:
        return pod[m.group(1)].get(m.group(2), "")
    fail(f"the simulation does not know fieldRef {path!r}")


def secret_value(objs, ref, existing):
    name, key = ref["name"], ref["key"]
    for s in by_kind(objs, "Secret"):
        if s["metadata"]["name"] == name:
            if key in s.get("stringData", {}):
                return s["stringData"][key]
            check(key in s.get("data", {}), f"Secret {name} has no key {key}")
            return base64.b64decode(s["data"][key]).decode()
    check((name, key) in existing, f"secretKeyRef {name}/{key}: no such Secret rendered or provided")
    return existing[(name, key)]


def container_env(objs, container, pod, image_env, existing):
    """The container's environment as the kubelet builds it: image ENV, then the container's
    env in order, each value expanded against the variables defined before it."""
    env = dict(image_env)
    env["HOSTNAME"] = pod["name"]  # the runtime sets it; $(HOSTNAME) cannot see it (not in `env`)
    defined = {}
    for e in container.get("env", []):
        if "value" in e:
            v = expand(e["value"], defined)
        elif "fieldRef" in e.get("valueFrom", {}):
            v = field_ref(e["valueFrom"]["fieldRef"]["fieldPath"], pod)
        elif "secretKeyRef" in e.get("valueFrom", {}):
            v = secret_value(objs, e["valueFrom"]["secretKeyRef"], existing)
        else:
            fail(f"the simulation does not know env source {e}")
        defined[e["name"]] = v
        env[e["name"]] = v
    return env, defined


def dockerfile_image():
    """ENTRYPOINT, CMD and ENV of packaging/Dockerfile's final stage (what the pod runs)."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "packaging", "Dockerfile")).read()
    final = text.split("\nFROM ")[-1]
    entry, cmd, env = None, [], {}
    for line in final.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "ENV":
            k, _, v = rest.partition("=")
            env[k.strip()] = v.strip()
    check(entry, "packaging/Dockerfile has no JSON-form ENTRYPOINT")
    return entry, cmd, env


# ---------------------------------------------------------------------------------------------
# Processes and HTTP


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return None, ""


def wait_for(what, fn, timeout=WAIT):
    """Polls fn until it returns a truthy value; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


class Procs:
    """Started processes, all killed on exit (also on failure)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, env, log, **kw):
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------------------------
# The simulated rollout


def start_fake(procs, fake_bin, tmp):
    port = free_port()
    log = open(os.path.join(tmp, "fake.log"), "w")
    procs.start([fake_bin, "-listen", f"127.0.0.1:{port}", "-services", str(SERVICES), "-token", TOKEN,
                 "-origins", "0", "-domains", "0", "-datacenters", "3"], {"PATH": os.environ.get("PATH", "")}, log)
    base = f"http://127.0.0.1:{port}"
    body = wait_for("fake-fastly answers", lambda: http_get(f"{base}/service?page=1&per_page=1000",
                                                             headers={"Fastly-Key": TOKEN})[1])
    ids = {s["id"] for s in json.loads(body)}
    check(len(ids) == SERVICES, f"the fake lists {len(ids)} services, want {SERVICES}")
    return base, ids


def simulate(objs, label, exporter_bin, fake, procs, tmp, existing, extra_pods=0):
    """Runs every pod of the rendered StatefulSet; returns [(pod, port, targets)]."""
    base, all_ids = fake
    sts, tmpl, c = pod_template(objs)
    replicas = sts["spec"]["replicas"]
    entry, image_cmd, image_env = dockerfile_image()
    check(entry == ["/fastly-exporter"], f"unexpected ENTRYPOINT {entry}")
    command = c.get("command") or entry
    args = c["args"] if "args" in c else image_cmd
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    probes = [(kind, c[kind]["httpGet"]) for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in c]
    check(probes, "the pod has no HTTP probes")
    pods = []
    for ordinal in range(replicas + extra_pods):
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = {
            "name": name,
            "namespace": sts["metadata"]["namespace"],
            "serviceAccountName": tmpl["spec"].get("serviceAccountName", "default"),
            # The StatefulSet controller adds these to the template's labels.
            "labels": {**tmpl["metadata"].get("labels", {}), "apps.kubernetes.io/pod-index": str(ordinal),
                       "statefulset.kubernetes.io/pod-name": name},
            "annotations": tmpl["metadata"].get("annotations", {}),
        }
        env, defined = container_env(objs, c, pod, image_env, existing)
        argv = [expand(a, defined) for a in command + args]
        check(argv[0] == "/fastly-exporter", f"the pod runs {argv[0]}, not the image's binary")
        # All "pods" share this host's network: each gets its own port instead of 8080 (the last
        # -listen wins), and the Fastly endpoints point at the fake.
        port = free_port()
        argv = [exporter_bin] + [volume_path(a, c, name, tmp) for a in argv[1:]] + [
            f"-listen=127.0.0.1:{port}", f"-api-endpoint={base}", f"-rt-endpoint={base}"]
        log_path = os.path.join(tmp, f"{name}.log")
        p = procs.start(argv, env, open(log_path, "w"))
        if ordinal >= replicas:
            # A pod the StatefulSet should not have (scaled past the shard count).
            try:
                code = p.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                fail(f"[{label}] {name} (ordinal {ordinal} of {replicas} shards) kept running")
            err = open(log_path).read().strip().splitlines()
            check(code == 2 and len(err) == 1, f"[{label}] {name}: exit {code}, stderr {err}")
            print(f"  {name}: exit 2: {err[0]}")
            continue
        pods.append((name, port, p, log_path, argv, env))
    results = []
    for name, port, p, log_path, argv, env in pods:
        for kind, get in probes:
            target = get["port"]
            container_port = ports[target] if isinstance(target, str) else target
            check(container_port == 8080, f"{kind} port {target} is not the listen port")
            url = f"http://127.0.0.1:{port}{get['path']}"
            wait_for(f"[{label}] {name} {kind} {get['path']} answers 200 (log: {log_path})",
                     lambda: p.poll() is None and http_get(url)[0] == 200 or fail_if_dead(p, name, log_path))
        status, body = http_get(f"http://127.0.0.1:{port}/sd")
        check(status == 200, f"[{label}] {name} /sd: {status}")
        groups = json.loads(body)
        targets = set(t for g in groups for t in g["targets"])
        results.append((name, port, targets, argv, env, log_path))
    # Disjoint and complete.
    seen = {}
    for name, _, targets, *_ in results:
        for t in targets:
            check(t not in seen, f"[{label}] service {t} is exported by both {seen.get(t)} and {name}")
            seen[t] = name
    missing = all_ids - set(seen)
    check(not missing, f"[{label}] no pod exports {sorted(missing)}")
    check(set(seen) <= all_ids, f"[{label}] unknown services {sorted(set(seen) - all_ids)}")
    for i, (name, _, targets, _, _, log_path) in enumerate(results):
        if replicas > 1:
            log = open(log_path).read()
            check(f"exporting shard {i + 1} of {replicas}" in log, f"[{label}] {name} log lacks its shard: {log}")
    return results


def volume_path(arg, container, pod, tmp):
    """Points an argument under one of the container's writable volume mounts (the state
    volume of a volumeClaimTemplate) at a directory of this "pod" instead."""
    for m in container.get("volumeMounts", []):
        mount = m["mountPath"].rstrip("/")
        if m.get("readOnly") or f"={mount}/" not in arg:
            continue
        local = os.path.join(tmp, f"{pod}-{m['name']}")
        os.makedirs(local, exist_ok=True)
        return arg.replace(f"={mount}/", f"={local}/")
    return arg


def restart_keeps_state(label, results, procs, tmp):
    """Every pod writes its state file on its own volume; pod 0, stopped with SIGTERM (as a
    rollout does) and started again, restores from it and becomes ready."""
    for name, port, targets, argv, env, log_path in results:
        path = next(a.split("=", 1)[1] for a in argv if a.startswith("-state-file="))
        check(path.startswith(tmp), f"[{label}] {name}: -state-file {path} is not on its volume")
        wait_for(f"[{label}] {name} writes {path}", lambda: os.path.exists(path))
    name, port, _, argv, env, log_path = results[0]
    p = next(q for q in procs.procs if q.args == argv)
    p.send_signal(signal.SIGTERM)
    check(p.wait(timeout=10) == 0, f"[{label}] {name} did not exit 0 on SIGTERM")
    log2 = log_path + ".restarted"
    p2 = procs.start(argv, env, open(log2, "w"))
    wait_for(f"[{label}] {name} ready again after a restart (log: {log2})",
             lambda: p2.poll() is None and http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
             or fail_if_dead(p2, name, log2))
    restored = [line for line in open(log2).read().splitlines() if "restored" in line]
    check(restored, f"[{label}] {name} did not restore its state: {open(log2).read()}")
    print(f"  {name} restarted: {restored[0].split('state file ', 1)[-1]}")


def fail_if_dead(p, name, log_path):
    if p.poll() is not None:
        fail(f"{name} exited with {p.returncode}: {open(log_path).read().strip()}")
    return False


def show_rollout(label, results, probes_paths):
    print(f"simulated rollout [{label}]: {len(results)} pods against fake-fastly ({SERVICES} services)")
    for name, port, targets, argv, env, _ in results:
        shown = [a for a in argv[1:] if not a.startswith(("-api-endpoint", "-rt-endpoint"))]
        ordinal_env = {k: env[k] for k in ("POD_NAME", "POD_INDEX") if k in env}
        print(f"  {name}: env {ordinal_env} FASTLY_API_TOKEN={'set' if env.get('FASTLY_API_TOKEN') else 'MISSING'}")
        print(f"    args {' '.join(shown)}")
        print(f"    /sd: {len(targets)} services; probes {', '.join(p + ' 200' for p in probes_paths)}")
    total = sum(len(t) for _, _, t, *_ in results)
    print(f"  disjoint: yes; union: {total} of {SERVICES} services")


# ---------------------------------------------------------------------------------------------
# Prometheus with the README's per-pod http_sd configuration


def prometheus_check(results, tmp, procs, example, require):
    if not shutil.which("prometheus"):
        msg = "prometheus not installed: the per-pod http_sd example was not run"
        if require:
            fail(msg)
        print(f"helm-check: SKIPPED: {msg}")
        return
    conf = yaml.safe_load(open(example))
    job = conf["scrape_configs"][0]
    urls = [sd["url"] for sd in job["http_sd_configs"]]
    check(len(urls) == len(results), f"{example} lists {len(urls)} pods, the rollout has {len(results)}")
    # The example's pod DNS names stand for this host's per-pod ports, in ordinal order.
    for sd, (name, port, *_) in zip(job["http_sd_configs"], results):
        check(re.match(r"^http://[^/]+-(\d+)\.[^/]+/sd$", sd["url"]), f"{example}: unexpected url {sd['url']}")
        check(sd["url"].split("://")[1].split(".")[0].endswith(name.rsplit("-", 1)[1]), f"{sd['url']} vs {name}")
        sd["url"] = f"http://127.0.0.1:{port}/sd"
        sd["refresh_interval"] = "1s"
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    path = os.path.join(tmp, "prometheus.yml")
    yaml.safe_dump(conf, open(path, "w"))
    port = free_port()
    procs.start(["prometheus", f"--config.file={path}", f"--storage.tsdb.path={tmp}/tsdb",
                 f"--web.listen-address=127.0.0.1:{port}"], {"PATH": os.environ.get("PATH", "")},
                open(os.path.join(tmp, "prometheus.log"), "w"))
    owner = {t: f"127.0.0.1:{p}" for _, p, targets, *_ in results for t in targets}

    def all_up():
        status, body = http_get(f"http://127.0.0.1:{port}/api/v1/targets?state=active")
        if status != 200:
            return None
        active = json.loads(body)["data"]["activeTargets"]
        got = {t["labels"].get("instance"): t for t in active}
        if set(got) != set(owner) or any(t["health"] != "up" for t in active):
            return None
        return got

    got = wait_for("Prometheus discovers every service through the pods' /sd and scrapes them up", all_up, 60)
    for sid, t in got.items():
        check(t["scrapeUrl"].startswith(f"http://{owner[sid]}/metrics?target={sid}"),
              f"{sid} is scraped at {t['scrapeUrl']}, but {owner[sid]} exports it")
    print(f"prometheus (per-pod http_sd, {os.path.relpath(example)}): {len(got)} targets, all up, each at the "
          f"pod that listed it")


def notes_match_example(helm, chart, example):
    """`helm install` prints the per-pod http_sd job for the release: for release fx in
    namespace monitoring with 3 shards it must be the README's example, which Prometheus runs."""
    out = subprocess.run([helm, "install", RELEASE, chart, "--namespace", NAMESPACE, "--dry-run=client",
                          "--set", "shards=3"], capture_output=True, text=True)
    check(out.returncode == 0, f"helm install --dry-run: {out.stderr.strip()}")
    notes = out.stdout.split("NOTES:", 1)[-1]
    check("scrape_configs:" in notes, f"NOTES lacks the scrape config: {notes}")
    printed = yaml.safe_load("scrape_configs:" + notes.split("scrape_configs:", 1)[1])["scrape_configs"]
    want = yaml.safe_load(open(example))["scrape_configs"]
    for job in want:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    check(printed == want, f"NOTES.txt prints {printed}, {example} has {want}")
    print(f"helm install NOTES: the per-pod http_sd job equals {os.path.relpath(example)}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helm", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--fake", required=True)
    ap.add_argument("--prometheus-example", required=True)
    ap.add_argument("--require", action="store_true", help="missing kubernetes-validate fails (CI)")
    ap.add_argument("--require-prometheus", action="store_true", help="missing prometheus fails (CI)")
    a = ap.parse_args()
    self_test_expand()
    # A SIGTERM (Ctrl-C, make interrupted) unwinds through `finally`, which stops the processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    try:
        import kubernetes_validate as kv
    except ImportError:
        if a.require:
            fail("kubernetes-validate is not installed")
        print("helm-check: SKIPPED: schema validation (kubernetes-validate not installed; scripts/fetch-tools.sh)")
        kv = None
    if kv is not None:
        versions = sorted(set(kv.utils.all_versions()))
        check(K8S_VERSION in versions, f"kubernetes-validate has no {K8S_VERSION} schemas: {versions}")

    lint = subprocess.run([a.helm, "lint", "--strict", a.chart, "--kube-version", K8S_VERSION],
                          capture_output=True, text=True)
    check(lint.returncode == 0, f"helm lint: {lint.stdout}{lint.stderr}")
    print("helm lint --strict: ok")

    existing_name, existing_key = EXISTING_SECRET
    value_sets = [
        ("defaults", [], 1),
        ("shards=3 token", ["shards=3", f"token={TOKEN}"], 3),
        ("serviceMonitor existingSecret", ["serviceMonitor.enabled=true", f"existingSecret.name={existing_name}",
                                           f"existingSecret.key={existing_key}"], 1),
        ("rules dashboards podIndexLabel", ["prometheusRule.enabled=true", "dashboards.enabled=true",
                                            "shards=2", "shardOrdinalFrom=podIndexLabel", f"fastly.token={TOKEN}"], 2),
        ("sizing", ["sizing.services=10000", "shards=4", f"token={TOKEN}"], 4),
        ("options", [{"options": {"rt-max-body": 1048576, "rt-timeout": 1.5, "aggregate-only": True, "debug": False,
                                  "service-allowlist": ["^Prod", "^Stag"], "metric-blocklist": None}}], 1),
        ("webConfig tls basicAuth", ["webConfig.existingSecret=fx-web", "webConfig.tls=true", "webConfig.basicAuth=true",
                                     "serviceMonitor.enabled=true", "serviceMonitor.scheme=https",
                                     f"token={TOKEN}"], 1),
        ("persistence", ["persistence.enabled=true", "persistence.size=128Mi", "persistence.storageClassName=fast",
                         "shards=2", "webConfig.existingSecret=fx-web", f"token={TOKEN}"], 2),
    ]
    # Rendered for the simulated rollout only (its pods speak plain HTTP).
    value_sets.append(("persistence plain", ["persistence.enabled=true", "shards=2", f"token={TOKEN}"], 2))
    rendered = {}
    for label, sets, shards in value_sets:
        objs = helm_template(a.helm, a.chart, sets)
        skipped = validate_schema(objs, label, kv) if kv else []
        check_crds(objs, label)
        check_pod_spec(objs, label, shards)
        kinds = sorted(o["kind"] for o in objs)
        note = f"; schema-checked against Kubernetes {K8S_VERSION}" if kv else ""
        note += f" ({', '.join(skipped)}: CRD, structure checked)" if skipped else ""
        print(f"helm template [{label}]: {', '.join(kinds)}{note}")
        rendered[label] = objs

    kinds = lambda label: sorted(o["kind"] for o in rendered[label])  # noqa: E731
    check(kinds("defaults") == ["PodDisruptionBudget", "Service", "ServiceAccount", "StatefulSet"], kinds("defaults"))
    check("Secret" in kinds("shards=3 token"), "token= creates a Secret")
    check("Secret" not in kinds("serviceMonitor existingSecret"), "existingSecret creates no Secret")
    check("ServiceMonitor" in kinds("serviceMonitor existingSecret"), "serviceMonitor.enabled")
    check({"PrometheusRule", "ConfigMap", "Secret"} <= set(kinds("rules dashboards podIndexLabel")),
          kinds("rules dashboards podIndexLabel"))
    _, _, c = pod_template(rendered["defaults"])
    check("FASTLY_API_TOKEN" not in env_names(c), "no token, no token env")
    # values.yaml's formula: 2,500 services per pod x 2,880 series x 32 B x 1.05 = 230.7 MiB,
    # and 2,500 x 0.4 millicores.
    _, _, c = pod_template(rendered["sizing"])
    want = {"requests": {"cpu": "1000m", "memory": "231Mi"}, "limits": {"memory": "462Mi"}}
    check(c["resources"] == want, f"sizing: {c['resources']} != {want}")
    _, _, c = pod_template(rendered["defaults"])
    check(c["resources"]["requests"]["memory"] == "32Mi", f"default sizing: {c['resources']}")
    _, _, c = pod_template(rendered["options"])
    want = ["-listen=:8080", "-aggregate-only", "-debug=false", "-rt-max-body=1048576", "-rt-timeout=1.5",
            "-service-allowlist=^Prod", "-service-allowlist=^Stag"]
    check(c["args"] == want, f"options rendered as {c['args']}, want {want}")
    _, _, c = pod_template(rendered["serviceMonitor existingSecret"])
    refs = [e["valueFrom"]["secretKeyRef"] for e in c["env"] if e["name"] == "FASTLY_API_TOKEN"]
    check(refs == [{"name": existing_name, "key": existing_key}], f"existingSecret reference: {refs}")

    # webConfig: the file is mounted from its Secret and passed as -web-config-file; probes
    # use HTTPS, and readiness asks /healthz (the one path open without credentials).
    _, tmpl, c = pod_template(rendered["webConfig tls basicAuth"])
    check("-web-config-file=/etc/fastly-exporter/web/web-config.yml" in c["args"], f"webConfig args: {c['args']}")
    check(c.get("volumeMounts") == [{"name": "web-config", "mountPath": "/etc/fastly-exporter/web", "readOnly": True}],
          f"webConfig mount: {c.get('volumeMounts')}")
    check(tmpl["spec"].get("volumes") == [{"name": "web-config", "secret": {"secretName": "fx-web"}}],
          f"webConfig volume: {tmpl['spec'].get('volumes')}")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}, c["livenessProbe"])
    check(c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}, c["readinessProbe"])
    sm = [o for o in rendered["webConfig tls basicAuth"] if o["kind"] == "ServiceMonitor"][0]
    check(sm["spec"]["endpoints"][0].get("scheme") == "https", sm["spec"]["endpoints"][0])
    _, _, c = pod_template(rendered["defaults"])
    check("volumeMounts" not in c and c["readinessProbe"]["httpGet"]["path"] == "/readyz", "no webConfig: unchanged")

    # persistence: a claim template per pod, mounted where -state-file points; the pod's group
    # may write it (the exporter is not root).
    sts, tmpl, c = pod_template(rendered["persistence"])
    claims = sts["spec"].get("volumeClaimTemplates", [])
    want_claim = {"metadata": {"name": "state"},
                  "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                           "resources": {"requests": {"storage": "128Mi"}}}}
    check(claims == [want_claim], f"persistence: volumeClaimTemplates {claims}")
    check({"name": "state", "mountPath": "/var/lib/fastly-exporter"} in c.get("volumeMounts", []),
          f"persistence mount: {c.get('volumeMounts')}")
    check("-state-file=/var/lib/fastly-exporter/state" in c["args"], f"persistence args: {c['args']}")
    check(tmpl["spec"]["securityContext"].get("fsGroup") == 65534, tmpl["spec"]["securityContext"])
    check(not any(a.startswith("-state-file") for a in pod_template(rendered["defaults"])[2]["args"]),
          "no persistence, no -state-file")
    check("volumeClaimTemplates" not in pod_template(rendered["defaults"])[0]["spec"], "no persistence, no claims")

    notes_match_example(a.helm, a.chart, a.prometheus_example)

    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="helm-check-")
    try:
        fake = start_fake(procs, a.fake, tmp)
        existing = {EXISTING_SECRET: TOKEN}
        for label, extra in (("shards=3 token", 1), ("rules dashboards podIndexLabel", 0),
                             ("serviceMonitor existingSecret", 0), ("persistence plain", 0)):
            print(f"simulating [{label}]" + (f" plus {extra} pod past the shard count:" if extra else ":"))
            results = simulate(rendered[label], label, a.exporter, fake, procs, tmp, existing, extra)
            _, _, c = pod_template(rendered[label])
            paths = [c[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c]
            show_rollout(label, results, paths)
            if label == "shards=3 token":
                prometheus_check(results, tmp, procs, a.prometheus_example, a.require_prometheus)
            if label == "persistence plain":
                restart_keeps_state(label, results, procs, tmp)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print("helm-check: OK")


if __name__ == "__main__":
    main()
