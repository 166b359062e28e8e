#!/usr/bin/env python3
"""Checks deploy/ without Docker or a cluster: every YAML file parses, the compose file has the
services, profiles, secrets and wiring deploy/README.md describes, the Kubernetes manifests
are complete and consistent with each other (and, with kubernetes-validate installed, valid
against the Kubernetes schemas), the monitoring profile's Prometheus and Grafana files are
wired to each other and to the bridges (and, with promtool installed, the dashboard's PromQL
parses), and the Dockerfile, Caddyfile, nginx and systemd files keep the settings the bridge
needs. Which SCIM_BRIDGE_* variables the binary knows is checked by
the Rust test tests/it/deploy.rs. Usage: check_deploy.py [REPO_ROOT]"""

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
DEPLOY = ROOT / "deploy"
failures = []


def check(cond, message):
    if not cond:
        failures.append(message)
    return cond


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# -- every YAML file parses ------------------------------------------------------------------
yaml_files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
check(yaml_files, "no YAML file under deploy/")
docs = {}
for path in yaml_files:
    try:
        docs[path] = load_all(path)
    except yaml.YAMLError as e:
        failures.append(f"{path.relative_to(ROOT)}: does not parse: {e}")
print(f"{len(docs)} of {len(yaml_files)} YAML files under deploy/ parse")

# -- compose.yaml ----------------------------------------------------------------------------
compose_path = DEPLOY / "compose.yaml"
compose = (docs.get(compose_path) or [{}])[0]
services = compose.get("services") or {}
bridges = {"bridge": ["sqlite"], "bridge-1": ["postgres"], "bridge-2": ["postgres"]}
expected = dict(
    bridges, caddy=None, postgres=["postgres"], prometheus=["monitoring"], grafana=["monitoring"]
)
check(
    set(services) == set(expected),
    f"compose.yaml: services {sorted(services)}, expected {sorted(expected)}",
)
for name, profiles in expected.items():
    svc = services.get(name) or {}
    check(
        svc.get("profiles") == profiles,
        f"compose.yaml: {name}: profiles {svc.get('profiles')}, expected {profiles}",
    )
declared_secrets = compose.get("secrets") or {}
for name, spec in declared_secrets.items():
    check(
        str(spec.get("file", "")).startswith("./secrets/"),
        f"compose.yaml: secret {name} is not a file under ./secrets/",
    )
for name, svc in services.items():
    for s in svc.get("secrets") or []:
        s = s if isinstance(s, str) else s.get("source")
        check(s in declared_secrets, f"compose.yaml: {name} uses undeclared secret {s}")
for name in bridges:
    svc = services.get(name) or {}
    env = svc.get("environment") or {}
    check(isinstance(env, dict), f"compose.yaml: {name}: environment is not a mapping")
    for var in (
        "SCIM_BRIDGE_PUBLIC_BASE_URL",
        "SCIM_BRIDGE_HTTP__TRUSTED_PROXIES",
        "SCIM_BRIDGE_API_KEY_FILE",
        "SCIM_BRIDGE_METRICS_LISTEN",
    ):
        check(var in env, f"compose.yaml: {name}: {var} is not set")
    # Every *_FILE under /run/secrets/ names a secret the service mounts.
    for var, value in env.items():
        m = re.fullmatch(r"/run/secrets/(.+)", str(value))
        if var.endswith("_FILE") and m:
            check(
                m.group(1) in (svc.get("secrets") or []),
                f"compose.yaml: {name}: {var} names secret {m.group(1)}, not mounted",
            )
    check(svc.get("env_file") == "scim-bridge.env", f"compose.yaml: {name}: env_file")
    check(svc.get("read_only") is True, f"compose.yaml: {name}: not read_only")
    aliases = ((svc.get("networks") or {}).get("backend") or {}).get("aliases") or []
    check("scim-bridge" in aliases, f"compose.yaml: {name}: no network alias scim-bridge")
    build = svc.get("build") or {}
    check(
        (DEPLOY / build.get("context", "") / build.get("dockerfile", "")).resolve()
        == (DEPLOY / "Dockerfile").resolve(),
        f"compose.yaml: {name}: does not build deploy/Dockerfile",
    )
for name in ("bridge-1", "bridge-2"):
    svc = services.get(name) or {}
    check(
        (svc.get("environment") or {}).get("SCIM_BRIDGE_STORE__URL_FILE")
        == "/run/secrets/store-url",
        f"compose.yaml: {name}: SCIM_BRIDGE_STORE__URL_FILE is not the store-url secret",
    )
    dep = (svc.get("depends_on") or {}).get("postgres") or {}
    check(
        dep.get("condition") == "service_healthy",
        f"compose.yaml: {name}: does not wait for a healthy postgres",
    )
check(
    "SCIM_BRIDGE_STORE__URL_FILE" not in ((services.get("bridge") or {}).get("environment") or {}),
    "compose.yaml: the sqlite bridge has a store URL",
)
check(
    "bridge-data:/data" in ((services.get("bridge") or {}).get("volumes") or []),
    "compose.yaml: the sqlite bridge does not keep /data on a volume",
)
caddy = services.get("caddy") or {}
check("443:443" in (caddy.get("ports") or []), "compose.yaml: caddy does not publish 443")
check(
    "./Caddyfile:/etc/caddy/Caddyfile:ro" in (caddy.get("volumes") or []),
    "compose.yaml: caddy does not mount ./Caddyfile",
)
check(
    not any("ports" in (services.get(n) or {}) for n in list(bridges) + ["postgres"]),
    "compose.yaml: only caddy publishes ports (and the monitoring profile, on loopback)",
)
# Interpolated variables: defaulted, or given in compose.env.example.
env_example = {
    line.split("=", 1)[0]
    for line in (DEPLOY / "compose.env.example").read_text().splitlines()
    if "=" in line and not line.lstrip().startswith("#")
}
interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)(:?[-?])?", compose_path.read_text()))
for var, op in sorted(interpolated):
    check(
        "-" in op or var in env_example,
        f"compose.yaml: ${{{var}}} has no default and is not in compose.env.example",
    )
check("COMPOSE_PROFILES" in env_example, "compose.env.example: no COMPOSE_PROFILES")
check((DEPLOY / "scim-bridge.env.example").is_file(), "deploy/scim-bridge.env.example missing")

# -- monitoring (profile "monitoring") -------------------------------------------------------------
MON = DEPLOY / "monitoring"
prom_svc, grafana_svc = services.get("prometheus") or {}, services.get("grafana") or {}
for name, svc in (("prometheus", prom_svc), ("grafana", grafana_svc)):
    check(
        "backend" in (svc.get("networks") or []),
        f"compose.yaml: {name} is not on the backend network",
    )
    for port in svc.get("ports") or []:
        check(
            str(port).startswith("127.0.0.1:"),
            f"compose.yaml: {name} publishes {port} beyond the host's loopback",
        )
check(
    "./monitoring/prometheus:/etc/prometheus:ro" in (prom_svc.get("volumes") or []),
    "compose.yaml: prometheus does not mount ./monitoring/prometheus at /etc/prometheus",
)
check(
    "--config.file=/etc/prometheus/prometheus.yml" in (prom_svc.get("command") or []),
    "compose.yaml: prometheus does not read /etc/prometheus/prometheus.yml",
)
prom_config = (docs.get(MON / "prometheus" / "prometheus.yml") or [{}])[0]
for rule_file in prom_config.get("rule_files") or []:
    check(
        (MON / "prometheus" / rule_file).is_file(),
        f"monitoring/prometheus/prometheus.yml: rule file {rule_file} is not beside it",
    )
check(
    "scim-bridge-rules.yml" in (prom_config.get("rule_files") or []),
    "monitoring/prometheus/prometheus.yml: does not load scim-bridge-rules.yml",
)
bridge_job = next(
    (j for j in prom_config.get("scrape_configs") or [] if j.get("job_name") == "scim-bridge"), {}
)
sd = (bridge_job.get("dns_sd_configs") or [{}])[0]
metrics_port = int(
    str((services.get("bridge") or {}).get("environment", {}).get("SCIM_BRIDGE_METRICS_LISTEN", ":0"))
    .rsplit(":", 1)[1]
)
check(
    sd.get("names") == ["scim-bridge"] and sd.get("port") == metrics_port,
    "monitoring/prometheus/prometheus.yml: job scim-bridge does not discover the alias "
    f"scim-bridge on the bridges' metrics port {metrics_port}",
)
rules = (docs.get(MON / "prometheus" / "scim-bridge-rules.yml") or [{}])[0]
deploy_readme = (DEPLOY / "README.md").read_text()
anchors = {
    re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
    for line in deploy_readme.splitlines()
    if line.startswith("#")
}
alert_names = []
for group in rules.get("groups") or []:
    for rule in group.get("rules") or []:
        if "alert" not in rule:
            continue
        name = rule["alert"]
        alert_names.append(name)
        labels, notes = rule.get("labels") or {}, rule.get("annotations") or {}
        check(
            labels.get("severity") in ("critical", "warning"),
            f"scim-bridge-rules.yml: {name}: severity is not critical or warning",
        )
        check(notes.get("summary"), f"scim-bridge-rules.yml: {name}: no summary")
        url = notes.get("runbook_url", "")
        check(
            url == f"deploy/README.md#{name.lower()}" and name.lower() in anchors,
            f"scim-bridge-rules.yml: {name}: runbook_url {url!r} is not a heading of deploy/README.md",
        )
check(len(alert_names) >= 8, f"scim-bridge-rules.yml: only {len(alert_names)} alerts")
rule_tests = (docs.get(MON / "prometheus" / "scim-bridge-rules.test.yml") or [{}])[0]
tested = {
    t.get("alertname")
    for group in rule_tests.get("tests") or []
    for t in group.get("alert_rule_test") or []
    if t.get("exp_alerts")
}
for name in alert_names:
    check(name in tested, f"scim-bridge-rules.test.yml: no test fires {name}")
datasources = (docs.get(MON / "grafana" / "provisioning" / "datasources" / "prometheus.yaml") or [{}])[0]
ds = (datasources.get("datasources") or [{}])[0]
check(
    ds.get("type") == "prometheus" and ds.get("url") == "http://prometheus:9090",
    "grafana datasource: not the compose service prometheus on 9090",
)
providers = (docs.get(MON / "grafana" / "provisioning" / "dashboards" / "scim-bridge.yaml") or [{}])[0]
provider_path = ((providers.get("providers") or [{}])[0].get("options") or {}).get("path")
grafana_volumes = grafana_svc.get("volumes") or []
check(
    "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes,
    "compose.yaml: grafana does not mount ./monitoring/grafana/provisioning",
)
check(
    f"./monitoring/grafana/scim-bridge.json:{provider_path}/scim-bridge.json:ro" in grafana_volumes,
    f"compose.yaml: grafana does not mount the dashboard where its provider reads ({provider_path})",
)
grafana_env = grafana_svc.get("environment") or {}
check(
    re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:-[^}]*\}", str(grafana_env.get("GF_SECURITY_ADMIN_PASSWORD"))),
    "compose.yaml: grafana's admin password does not come from ${GRAFANA_ADMIN_PASSWORD}",
)
dashboard_exprs = []
try:
    dashboard = json.loads((MON / "grafana" / "scim-bridge.json").read_text())
    check(dashboard.get("uid"), "grafana/scim-bridge.json: no uid")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    for var in ("datasource", "tenant", "site"):
        check(var in variables, f"grafana/scim-bridge.json: no template variable {var}")
    check(
        (variables.get("datasource") or {}).get("query") == "prometheus",
        "grafana/scim-bridge.json: the datasource variable is not of type prometheus",
    )
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            continue
        check(
            (panel.get("datasource") or {}).get("uid") == "${datasource}",
            f"grafana/scim-bridge.json: panel {panel.get('title')!r} does not use ${{datasource}}",
        )
        check(panel.get("targets"), f"grafana/scim-bridge.json: panel {panel.get('title')!r} has no query")
        dashboard_exprs += [t.get("expr", "") for t in panel.get("targets") or []]
except ValueError as e:
    failures.append(f"monitoring/grafana/scim-bridge.json: does not parse: {e}")
promtool = shutil.which("promtool")
if promtool and dashboard_exprs:
    # promtool parses PromQL only in rule files: one recording rule per panel query, with the
    # dashboard's variables replaced by what Grafana sends for "All".
    def concrete(expr):
        expr = expr.replace("$__rate_interval", "2m").replace("$__interval", "1m")
        return re.sub(r"\$(job|tenant|site)\b", ".*", expr)

    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [
                            {"record": f"dashboard:query_{i}", "expr": concrete(e)}
                            for i, e in enumerate(dashboard_exprs)
                        ],
                    }
                ]
            },
            f,
        )
    run = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    pathlib.Path(f.name).unlink()
    check(run.returncode == 0, f"grafana/scim-bridge.json: a query does not parse:\n{run.stdout}{run.stderr}")
    print(
        f"grafana dashboard: {len(dashboard_exprs)} queries "
        + ("parse (promtool)" if run.returncode == 0 else "FAIL to parse (promtool)")
    )
else:
    print("grafana dashboard: promtool is not installed; its PromQL is not parsed")

# -- Kubernetes --------------------------------------------------------------------------------
K8S = DEPLOY / "k8s"
kustomization = (docs.get(K8S / "kustomization.yaml") or [{}])[0]
listed = kustomization.get("resources") or []
manifest_files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
check(
    sorted(listed) == manifest_files,
    f"k8s/kustomization.yaml: resources {sorted(listed)} != files {manifest_files}",
)
objects = {}
for name in manifest_files:
    for d in docs.get(K8S / name, []):
        ok = all(
            check(d.get(k), f"k8s/{name}: a document has no {k}")
            for k in ("apiVersion", "kind", "metadata")
        )
        if ok and check((d["metadata"] or {}).get("name"), f"k8s/{name}: no metadata.name"):
            objects[(d["kind"], d["metadata"]["name"])] = d
kinds = {k for k, _ in objects}
for kind in (
    "Namespace",
    "Secret",
    "ConfigMap",
    "Deployment",
    "Service",
    "Ingress",
    "PodDisruptionBudget",
):
    check(kind in kinds, f"k8s: no {kind}")


def one(kind):
    found = [d for (k, _), d in objects.items() if k == kind]
    return found[0] if found else {}


deployment, secret, configmap = one("Deployment"), one("Secret"), one("ConfigMap")
service, ingress, pdb = one("Service"), one("Ingress"), one("PodDisruptionBudget")
spec = deployment.get("spec") or {}
pod = (spec.get("template") or {}).get("spec") or {}
containers = pod.get("containers") or [{}]
c = containers[0]
check(spec.get("replicas") == 2, "k8s/deployment.yaml: replicas is not 2")
check(
    ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path") == "/readyz",
    "k8s/deployment.yaml: readinessProbe is not GET /readyz",
)
check(
    ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path") == "/healthz",
    "k8s/deployment.yaml: livenessProbe is not GET /healthz",
)
res = c.get("resources") or {}
check(res.get("requests") and res.get("limits"), "k8s/deployment.yaml: resources")
csc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
check(psc.get("runAsNonRoot") is True, "k8s/deployment.yaml: runAsNonRoot")
check(csc.get("readOnlyRootFilesystem") is True, "k8s/deployment.yaml: readOnlyRootFilesystem")
check(csc.get("allowPrivilegeEscalation") is False, "k8s/deployment.yaml: allowPrivilegeEscalation")
env = {e["name"]: e.get("value") for e in c.get("env") or []}
check(
    env.get("SCIM_BRIDGE_METRICS_LISTEN") == "0.0.0.0:9090",
    "k8s/deployment.yaml: SCIM_BRIDGE_METRICS_LISTEN is not 0.0.0.0:9090",
)
check(
    "SCIM_BRIDGE_STORE__URL_FILE" in env, "k8s/deployment.yaml: no SCIM_BRIDGE_STORE__URL_FILE"
)
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
check(ports.get("http") == 8080 and ports.get("metrics") == 9090, "k8s: container ports")
mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
volumes = {v["name"]: v for v in pod.get("volumes") or []}
check(set(mounts) <= set(volumes), "k8s/deployment.yaml: a mount has no volume")
cm_name = ((volumes.get("config") or {}).get("configMap") or {}).get("name")
secret_name = ((volumes.get("secrets") or {}).get("secret") or {}).get("secretName")
check(("ConfigMap", cm_name) in objects, f"k8s: the Deployment mounts ConfigMap {cm_name}")
check(("Secret", secret_name) in objects, f"k8s: the Deployment mounts Secret {secret_name}")
config_toml = (configmap.get("data") or {}).get("config.toml", "")
check(config_toml, "k8s/configmap.yaml: no config.toml")
check(
    env.get("SCIM_BRIDGE_CONFIG") == mounts.get("config", "") + "/config.toml",
    "k8s/deployment.yaml: SCIM_BRIDGE_CONFIG is not the mounted config.toml",
)
secrets_dir = mounts.get("secrets", "/nonexistent")
secret_keys = set((secret.get("stringData") or {}) | (secret.get("data") or {}))
referenced = set()
for text in [config_toml] + [v or "" for v in env.values()]:
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        referenced |= set(re.findall(re.escape(secrets_dir) + r"/([A-Za-z0-9._-]+)", line))
check(referenced, "k8s: no secret file is referenced")
for key in referenced:
    check(key in secret_keys, f"k8s: {secrets_dir}/{key} is not a key of the Secret")
labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
for obj, sel in (
    ("Service", (service.get("spec") or {}).get("selector")),
    ("PodDisruptionBudget", ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels")),
    ("Deployment", (spec.get("selector") or {}).get("matchLabels")),
):
    check(
        sel and all(labels.get(k) == v for k, v in sel.items()),
        f"k8s: the {obj} selector does not match the pods",
    )
for p in (service.get("spec") or {}).get("ports") or []:
    check(p.get("targetPort") in ports, f"k8s/service.yaml: targetPort {p.get('targetPort')}")
check((pdb.get("spec") or {}).get("minAvailable") == 1, "k8s/pdb.yaml: minAvailable is not 1")
ing = ingress.get("spec") or {}
check(ing.get("tls"), "k8s/ingress.yaml: no tls")
annotations = (ingress.get("metadata") or {}).get("annotations") or {}
check(
    int(annotations.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "0")) > 60,
    "k8s/ingress.yaml: proxy-read-timeout is not above 60 s",
)
for rule in ing.get("rules") or []:
    for path in (rule.get("http") or {}).get("paths") or []:
        svc = ((path.get("backend") or {}).get("service") or {}).get("name")
        check(("Service", svc) in objects, f"k8s/ingress.yaml: backend service {svc}")
validator = shutil.which("kubernetes-validate") or (
    str(pathlib.Path(sys.executable).parent / "kubernetes-validate")
    if (pathlib.Path(sys.executable).parent / "kubernetes-validate").exists()
    else None
)
if validator:
    run = subprocess.run(
        [validator, "--strict", "--quiet", *[str(K8S / n) for n in manifest_files]],
        capture_output=True,
        text=True,
    )
    check(run.returncode == 0, f"kubernetes-validate --strict:\n{run.stdout}{run.stderr}")
    print("k8s manifests: kubernetes-validate --strict " + ("passed" if run.returncode == 0 else "FAILED"))
else:
    print("k8s manifests: kubernetes-validate is not installed; schema validation skipped")

# -- Dockerfile, Caddyfile, nginx, systemd (text) ------------------------------------------------
dockerfile = (DEPLOY / "Dockerfile").read_text()
for needle in (
    "FROM rust:",
    "AS build",
    "cargo build --release --locked",
    "USER 65532",
    "VOLUME /data",
    "ENV SCIM_BRIDGE_DATA_DIR=/data",
    "ENV SCIM_BRIDGE_LISTEN=0.0.0.0:8080",
    "EXPOSE 8080 9090",
    'CMD ["scim-bridge", "healthcheck"]',
    'ENTRYPOINT ["scim-bridge"]',
    'CMD ["serve"]',
):
    check(needle in dockerfile, f"deploy/Dockerfile: no `{needle}`")
check(dockerfile.count("\nFROM ") >= 2, "deploy/Dockerfile: not multi-stage")
dockerignore = (ROOT / ".dockerignore").read_text().split()
for entry in ("target/", ".git", "data/"):
    check(entry in dockerignore, f".dockerignore: no {entry}")

caddyfile = (DEPLOY / "Caddyfile").read_text()
check("reverse_proxy" in caddyfile and "{$SCIM_DOMAIN}" in caddyfile, "deploy/Caddyfile")

nginx = (DEPLOY / "nginx" / "scim-bridge.conf").read_text()
check(nginx.count("{") == nginx.count("}"), "nginx/scim-bridge.conf: unbalanced braces")
size = re.search(r"^\s*client_max_body_size\s+(\d+)([mk]?);", nginx, re.M)
check(
    size and int(size.group(1)) * {"m": 1 << 20, "k": 1 << 10, "": 1}[size.group(2)] >= 4 << 20,
    "nginx/scim-bridge.conf: client_max_body_size below the bridge's 4 MiB bulk limit",
)
for directive in ("proxy_read_timeout", "proxy_send_timeout"):
    m = re.search(rf"^\s*{directive}\s+(\d+)s;", nginx, re.M)
    check(m and int(m.group(1)) > 60, f"nginx/scim-bridge.conf: {directive} is not above 60 s")
for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
    check(f"proxy_set_header {header}" in nginx, f"nginx/scim-bridge.conf: no {header}")
check(re.search(r"^\s*listen 443 ssl", nginx, re.M), "nginx/scim-bridge.conf: no TLS listener")

unit = (DEPLOY / "systemd" / "scim-bridge.service").read_text()
for needle in (
    "EnvironmentFile=/etc/scim-bridge/scim-bridge.env",
    "LoadCredential=periscope-api-key:",
    "Environment=SCIM_BRIDGE_API_KEY_FILE=%d/periscope-api-key",
    "DynamicUser=yes",
    "StateDirectory=scim-bridge",
    "Environment=SCIM_BRIDGE_DATA_DIR=%S/scim-bridge",
    "ProtectSystem=strict",
    "NoNewPrivileges=yes",
    "Restart=on-failure",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=",
):
    check(needle in unit, f"systemd/scim-bridge.service: no `{needle}`")
systemd_env = (DEPLOY / "systemd" / "scim-bridge.env.example").read_text()
check(
    not re.search(r"^SCIM_BRIDGE_[A-Z0-9_]*_FILE=", systemd_env, re.M),
    "systemd/scim-bridge.env.example sets a *_FILE variable (it would override the unit's)",
)

if failures:
    print("deploy/ checks failed:")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("deploy/ checks passed")
