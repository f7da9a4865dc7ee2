"""Canary traffic through a service mesh: the generated set, its schemas and its cross-checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager.deploy.k8s import K8sOptions
from packager.deploy.mesh import ALL_FILES, ROUTE_FILES, MeshOptions, render_mesh, write_mesh
from packager.deploy.mesh_check import check_set
from packager.errors import PackagerError
from tests.support.deploy import (
    BUILT,
    CRD_SCHEMAS,
    mixed_repo,
    python_model,
    validate_resource,
)
from tests.support.tree import snapshot

STABLE, CANARY = "s3://bucket/models/v1", "s3://bucket/models/v2"
GATEWAY_ONLY = ("gateway_httproute_v1.schema.json", "gateway_grpcroute_v1.schema.json")


CONFIGS: dict[str, dict[str, Any]] = {
    "istio-10": {"mesh": "istio", "canary_weight": 10},
    "istio-header-ns": {
        "mesh": "istio",
        "canary_weight": 25,
        "canary_header": "x-canary=always",
        "k8s": {"namespace": "ml", "credentials_secret": "s3-creds"},
    },
    "istio-mirror": {"mesh": "istio", "mirror": 100, "canary_header": "x-canary=1"},
    "istio-all-canary-cpu": {
        "mesh": "istio",
        "canary_weight": 100,
        "canary_image": "registry.example.com/ml/triton-packager/model_repository:24.11-py3",
        "k8s": {"gpus_per_replica": 2, "scale_metric": "queue", "replicas": 3},
    },
    "gateway-50": {"mesh": "gateway", "canary_weight": 50, "canary_replicas": 2},
    "gateway-mirror-header": {
        "mesh": "gateway",
        "mirror": 20,
        "canary_header": "x-shadow=yes",
        "k8s": {"namespace": "serving"},
    },
    "linkerd-5-header": {"mesh": "linkerd", "canary_weight": 5, "canary_header": "x-canary=on"},
    "linkerd-0-pvc": {
        "mesh": "linkerd",
        "k8s": {"repository_uri": "pvc://models/v1", "gpus_per_replica": 0},
        "canary_uri": "pvc://models/v2",
    },
}


def options(config: dict[str, Any] | str, **changes: Any) -> MeshOptions:
    c = copy.deepcopy(CONFIGS[config] if isinstance(config, str) else config)
    c.update(changes)
    k8s = {"repository_uri": STABLE, "image": BUILT, **c.pop("k8s", {})}
    return MeshOptions(k8s=K8sOptions(**k8s), **{"canary_uri": CANARY, **c})


def by_kind(resources: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in resources:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def one(resources: Any, kind: str) -> dict[str, Any]:
    [doc] = by_kind(resources)[kind]
    return doc


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # No GPU-only model: the same repository serves the 0-GPU configurations.
    root = tmp_path_factory.mktemp("mesh")
    repo = root / "model_repository"
    python_model(repo, "pymlp", "model.onnx", "{ kind: KIND_CPU count: 2 }")
    return repo


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_resource_passes_its_schema_and_the_set_checks(
    repo: Path, tmp_path: Path, config: str
) -> None:
    manifests = render_mesh(repo, options(config), tmp_path / "out")
    mesh = CONFIGS[config]["mesh"]
    for name, text in manifests.files.items():
        [doc] = list(yaml.safe_load_all(text))  # one resource per file, parses back
        # Linkerd's bundled Gateway API (v1.1.1) has no mirror percent; Linkerd never gets one.
        mirrored = doc["kind"].endswith("Route") and CONFIGS[config].get("mirror")
        assert validate_resource(doc, GATEWAY_ONLY if mirrored else None) == [], name
    assert check_set(manifests.resources) == []
    kinds = sorted(doc["kind"] for doc in manifests.resources)
    base = ["Deployment", "Deployment", "HorizontalPodAutoscaler", "HorizontalPodAutoscaler"]
    if mesh == "istio":
        expected = [*base, "DestinationRule", "PeerAuthentication", "Service", "VirtualService"]
    else:
        expected = [*base, "GRPCRoute", "HTTPRoute", "Service", "Service", "Service"]
    assert kinds == sorted(expected)


def test_every_mesh_kind_has_a_vendored_schema(repo: Path, tmp_path: Path) -> None:
    """No mesh resource slips through to kubernetes-validate (which knows no CRDs)."""
    core = {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for config in CONFIGS:
        for doc in render_mesh(repo, options(config), tmp_path).resources:
            assert doc["kind"] in core or (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS


BROKEN = [
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 0, "wieght"], 90),
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 0, "weight"], "90"),
    ("istio-10", "DestinationRule", ["spec", "subsets", 0, "label"], {"track": "stable"}),
    ("istio-10", "PeerAuthentication", ["spec", "mtls", "mode"], "STRICTLY"),
    ("gateway-50", "HTTPRoute", ["spec", "rules", 0, "backendRefs", 0, "weight"], -1),
    ("gateway-50", "HTTPRoute", ["spec", "parentRefs", 0, "sectionname"], "http"),
    ("gateway-50", "GRPCRoute", ["spec", "rules", 0, "matches"], [{"path": {"value": "/"}}]),
    ("linkerd-5-header", "GRPCRoute", ["spec", "rules", 0, "matches", 0, "headers", 0, "type"], "Glob"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "kind", "path", "value"), BROKEN)
def test_validators_catch_a_broken_mesh_resource(
    repo: Path, tmp_path: Path, config: str, kind: str, path: list[Any], value: Any
) -> None:
    """The vendored schemas can fail: one wrong field (a typo, a wrong type) is reported."""
    doc = copy.deepcopy(one(render_mesh(repo, options(config), tmp_path).resources, kind))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert validate_resource(doc)


def test_linkerd_schema_has_no_mirror_percent(repo: Path, tmp_path: Path) -> None:
    """Why --mirror is refused with Linkerd: its Gateway API copy cannot even express a share."""
    route = one(
        render_mesh(repo, options("gateway-mirror-header"), tmp_path).resources, "HTTPRoute"
    )
    assert validate_resource(route, GATEWAY_ONLY[:1]) == []
    problems = validate_resource(route, ("linkerd_gateway_httproute_v1.schema.json",))
    assert any("'percent' was unexpected" in p for p in problems)


# --------------------------------------------------------------------------- content


def test_tracks_are_two_deployments_behind_one_service(repo: Path, tmp_path: Path) -> None:
    kinds = by_kind(render_mesh(repo, options("gateway-50"), tmp_path).resources)
    deployments = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    assert sorted(deployments) == ["model-repository-canary", "model-repository-stable"]
    stable, canary = deployments["model-repository-stable"], deployments["model-repository-canary"]
    assert stable["spec"]["selector"]["matchLabels"]["track"] == "stable"
    assert canary["spec"]["selector"]["matchLabels"]["track"] == "canary"
    args = [d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in (stable, canary)]
    assert args == [f"--model-repository={STABLE}", f"--model-repository={CANARY}"]
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (1, 2)
    services = {s["metadata"]["name"]: s["spec"]["selector"] for s in kinds["Service"]}
    assert "track" not in services["model-repository"]  # the shared Service: both tracks
    assert services["model-repository-canary"]["track"] == "canary"
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in kinds["HorizontalPodAutoscaler"]
    }
    assert set(hpas) == set(deployments)
    # Canary starts at its own floor but may grow to stable's ceiling once promoted.
    assert hpas["model-repository-canary"]["minReplicas"] == 2
    assert (
        hpas["model-repository-canary"]["maxReplicas"]
        == hpas["model-repository-stable"]["maxReplicas"]
    )


def test_istio_routes_http_and_grpc_with_header_first(repo: Path, tmp_path: Path) -> None:
    resources = render_mesh(repo, options("istio-header-ns"), tmp_path).resources
    vs = one(resources, "VirtualService")["spec"]
    assert vs["hosts"] == ["model-repository"]
    names = [r["name"] for r in vs["http"]]
    assert names == ["http-canary-header", "http", "grpc-canary-header", "grpc"]
    header, weighted = vs["http"][0], vs["http"][1]
    assert header["match"] == [{"port": 8000, "headers": {"x-canary": {"exact": "always"}}}]
    assert [r["destination"]["subset"] for r in header["route"]] == ["canary"]
    assert [(r["destination"]["subset"], r["weight"]) for r in weighted["route"]] == [
        ("stable", 75),
        ("canary", 25),
    ]
    assert vs["http"][3]["match"] == [{"port": 8001}]
    assert {r["destination"]["port"]["number"] for r in vs["http"][3]["route"]} == {8001}
    dr = one(resources, "DestinationRule")["spec"]
    assert dr["subsets"] == [
        {"name": "stable", "labels": {"track": "stable"}},
        {"name": "canary", "labels": {"track": "canary"}},
    ]
    assert dr["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
    pa = one(resources, "PeerAuthentication")["spec"]
    assert pa["mtls"] == {"mode": "STRICT"}
    assert pa["portLevelMtls"] == {"8002": {"mode": "PERMISSIVE"}}  # metrics only
    for d in by_kind(resources)["Deployment"]:
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["sidecar.istio.io/inject"] == "true"
        assert labels.items() >= pa["selector"]["matchLabels"].items()
    assert {d["metadata"]["namespace"] for d in resources} == {"ml"}


def test_istio_mirror_copies_stable_traffic_to_canary(repo: Path, tmp_path: Path) -> None:
    vs = one(render_mesh(repo, options("istio-mirror"), tmp_path).resources, "VirtualService")
    for route in vs["spec"]["http"]:
        if route["name"].endswith("canary-header"):
            assert "mirrors" not in route
            continue
        assert [r["weight"] for r in route["route"]] == [100, 0]
        [mirror] = route["mirrors"]
        assert mirror["destination"]["subset"] == "canary"
        assert mirror["percentage"] == {"value": 100.0}


@pytest.mark.parametrize("config", ["gateway-mirror-header", "linkerd-5-header"])
def test_gateway_routes_attach_to_the_service(repo: Path, tmp_path: Path, config: str) -> None:
    resources = render_mesh(repo, options(config), tmp_path).resources
    for kind, port in (("HTTPRoute", 8000), ("GRPCRoute", 8001)):
        spec = one(resources, kind)["spec"]
        assert spec["parentRefs"] == [
            {"group": "", "kind": "Service", "name": "model-repository", "port": port}
        ]
        header_rule, weighted = spec["rules"]
        [match] = header_rule["matches"]
        assert match["headers"][0]["type"] == "Exact"
        assert [b["name"] for b in header_rule["backendRefs"]] == ["model-repository-canary"]
        weights = {b["name"].rpartition("-")[2]: b["weight"] for b in weighted["backendRefs"]}
        assert sum(weights.values()) == 100
        assert {b["port"] for b in weighted["backendRefs"]} == {port}
        mirror = CONFIGS[config].get("mirror")
        if mirror:
            [f] = weighted["filters"]
            assert f["requestMirror"] == {
                "backendRef": {
                    "group": "",
                    "kind": "Service",
                    "name": "model-repository-canary",
                    "port": port,
                },
                "percent": mirror,
            }
        else:
            assert "filters" not in weighted


def test_linkerd_pods_are_injected_and_accept_mtls_only(repo: Path, tmp_path: Path) -> None:
    resources = render_mesh(repo, options("linkerd-5-header"), tmp_path).resources
    for d in by_kind(resources)["Deployment"]:
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["linkerd.io/inject"] == "enabled"
        assert annotations["config.linkerd.io/default-inbound-policy"] == "all-authenticated"
        assert annotations["config.linkerd.io/skip-inbound-ports"] == "8002"
        assert annotations["prometheus.io/port"] == "8002"  # the k8s builder's own, kept
    gateway = render_mesh(repo, options("gateway-50"), tmp_path).resources
    for d in by_kind(gateway)["Deployment"]:  # mesh-neutral: no injection of any mesh
        assert "linkerd.io/inject" not in d["spec"]["template"]["metadata"]["annotations"]
        assert "sidecar.istio.io/inject" not in d["spec"]["template"]["metadata"]["labels"]


def test_canary_repository_sizes_the_canary_pods(repo: Path, tmp_path: Path) -> None:
    big = tmp_path / "canary_repository"
    python_model(big, "pymlp", "model.onnx", "{ kind: KIND_CPU count: 4 }", size=300 << 20)
    o = options("linkerd-0-pvc", canary_repository=big)
    deployments = {
        d["metadata"]["labels"]["track"]: d["spec"]["template"]["spec"]["containers"][0]
        for d in by_kind(render_mesh(repo, o, tmp_path).resources)["Deployment"]
    }
    assert deployments["stable"]["resources"]["requests"] == {"cpu": "2500m", "memory": "1280Mi"}
    assert deployments["canary"]["resources"]["requests"] == {"cpu": "4500m", "memory": "3584Mi"}


# --------------------------------------------------------------------------- traffic shifts


def test_shifting_weight_changes_only_the_routes(repo: Path, tmp_path: Path) -> None:
    for config, routes in (("istio-10", {"VirtualService"}), ("gateway-50", {"HTTPRoute", "GRPCRoute"})):  # fmt: skip
        before = render_mesh(repo, options(config), tmp_path).resources
        after = render_mesh(repo, options(config, canary_weight=90), tmp_path).resources
        changed = {a["kind"] for a, b in zip(before, after, strict=True) if a != b}
        assert changed == routes


def test_output_is_deterministic_and_says_how_to_regenerate(repo: Path, tmp_path: Path) -> None:
    o = options("istio-header-ns")
    write_mesh(repo, o, tmp_path / "a")
    write_mesh(repo, o, tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    line = (tmp_path / "a" / "virtualservice.yaml").read_text().splitlines()[1]
    assert line.startswith("#   triton-packager mesh ../") and " --mesh istio " in line
    assert "--canary-weight 25" in line and "--canary-header x-canary=always" in line


def test_switching_mesh_removes_the_other_mesh_files(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "mesh"
    write_mesh(repo, options("gateway-50"), out)
    (out / "kustomization.yaml").write_text("resources: []\n")  # the user's, kept
    write_mesh(repo, options("istio-10"), out)
    names = sorted(p.name for p in out.iterdir())
    assert "httproute.yaml" not in names and "service-canary.yaml" not in names
    assert {"virtualservice.yaml", "kustomization.yaml"} <= set(names)
    assert set(names) - {"kustomization.yaml"} <= set(ALL_FILES)
    assert set(ROUTE_FILES) <= set(ALL_FILES)


# --------------------------------------------------------------------------- errors

BAD = [
    ({"canary_weight": 101}, "--canary-weight must be an integer percentage 0..100"),
    ({"canary_weight": -5}, "--canary-weight must be an integer percentage 0..100"),
    ({"canary_weight": 12.5}, "--canary-weight must be an integer percentage"),
    ({"canary_weight": True}, "--canary-weight must be an integer percentage"),
    ({"mesh": "consul"}, "--mesh must be one of istio, linkerd, gateway"),
    ({"mirror": 0}, "--mirror must be an integer percentage 1..100"),
    ({"mirror": 150}, "--mirror must be an integer percentage 1..100"),
    ({"mirror": 50, "canary_weight": 10}, "mirror first with --canary-weight 0"),
    ({"mirror": 50, "mesh": "linkerd"}, "Linkerd cannot mirror traffic"),
    ({"canary_header": "x-canary"}, "expected NAME=VALUE"),
    ({"canary_header": "=always"}, "expected NAME=VALUE"),
    ({"canary_header": "X-Canary=always"}, "write the name in lowercase (x-canary)"),
    ({"canary_header": "x canary=always"}, "is not a header name"),
    ({"canary_header": ":authority=x"}, "is not a header name"),
    ({"canary_header": "grpc-timeout=1S"}, "reserved by HTTP/2 or gRPC"),
    ({"canary_header": "connection=close"}, "reserved by HTTP/2 or gRPC"),
    ({"canary_header": "x-canary= yes"}, "visible ASCII without leading or trailing spaces"),
    ({"canary_header": "x-canary=caf\u00e9"}, "visible ASCII"),
    ({"canary_replicas": 0}, "--canary-replicas must be at least 1"),
    ({"canary_uri": "ftp://host/v2"}, "--canary-uri 'ftp://host/v2': unknown scheme"),
    ({"canary_repository": Path("/nonexistent/canary")}, "is not a folder"),
    ({"k8s": {"kserve": True}}, "canaryTrafficPercent"),
    ({"k8s": {"service_monitor": True}}, "scrape each pod twice"),
    ({"k8s": {"name": "9lives"}}, "Service names must start with a letter"),
    ({"k8s": {"name": "Model"}}, "--name 'Model' is not a DNS label"),
    ({"k8s": {"name": "m" * 57}}, "longer than 56 characters"),
    ({"k8s": {"replicas": 0}}, "--replicas must be at least 1"),
    ({"k8s": {"namespace": "ML"}}, "--namespace"),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_options_fail_clearly_and_write_nothing(
    repo: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    out = tmp_path / "deploy"
    config = {"mesh": "istio", "canary_weight": 10, **changes}
    with pytest.raises(PackagerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_mesh(repo, options(config), out)
    assert not out.exists()


def test_a_canary_image_alone_makes_a_canary(repo: Path, tmp_path: Path) -> None:
    newer = BUILT.replace(":24.10-py3", ":24.11-py3")
    o = options("istio-10", canary_uri=STABLE, canary_image=newer)
    manifests = render_mesh(repo, o, tmp_path)
    images = {
        d["metadata"]["labels"]["track"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in by_kind(manifests.resources)["Deployment"]
    }
    assert images == {"stable": BUILT, "canary": newer}
    assert any("24.11-py3 is not" in n for n in manifests.notes)


def test_a_stock_canary_image_is_refused_with_the_way_out(repo: Path, tmp_path: Path) -> None:
    """The Python-backend model needs packages: never on NVIDIA's stock image, either track."""
    stock = "nvcr.io/nvidia/tritonserver:24.11-py3"
    o = options("istio-10", canary_uri=STABLE, canary_image=stock)
    with pytest.raises(PackagerError) as info:
        render_mesh(repo, o, tmp_path / "out")
    message = str(info.value)
    assert f"need pip packages that {stock} lacks" in message
    assert 'docker push "$REGISTRY/triton-packager/model_repository:24.11-py3"' in message
    assert '--canary-image "$REGISTRY/triton-packager/model_repository:24.11-py3"' in message
    assert not (tmp_path / "out").exists()


def test_canary_identical_to_stable_is_noted_for_promotion(repo: Path, tmp_path: Path) -> None:
    """After a promotion both tracks serve the new repository: allowed, but said."""
    manifests = render_mesh(repo, options("istio-10", canary_uri=STABLE), tmp_path)
    assert any("canary serves exactly what stable serves" in n for n in manifests.notes)
    other = render_mesh(repo, options("istio-10"), tmp_path)
    assert not any("exactly what stable serves" in n for n in other.notes)


def test_foreign_file_is_not_overwritten(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "virtualservice.yaml").write_text("kind: VirtualService\n")
    before = snapshot(out)
    with pytest.raises(PackagerError, match="not generated by triton-packager"):
        write_mesh(repo, options("istio-10"), out)
    assert snapshot(out) == before


# --------------------------------------------------------------------------- set checks


def _break(resources: Any, kind: str, path: list[Any], value: Any, index: int = 0) -> list[Any]:
    docs = copy.deepcopy(list(resources))
    node = by_kind(docs)[kind][index]
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return docs


_DELETE = object()
SET_BREAKS = [
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 0, "weight"], 80, "sum to 90, not 100"),
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 1, "weight"], 10.0, "integers 0..100"),
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 1, "weight"], _DELETE, "integers 0..100"),
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 1, "weight"], True, "integers 0..100"),
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 0, "destination", "subset"], "blue", "subset 'blue'"),
    ("istio-10", "VirtualService", ["spec", "http", 0, "route", 0, "destination", "host"], "other", "Service 'other' is not in the generated set"),
    ("istio-10", "VirtualService", ["spec", "http", 1, "route", 0, "destination", "port", "number"], 9000, "has no port 9000"),
    ("istio-10", "VirtualService", ["spec", "hosts", 0], "model", "host 'model' is not a Service"),
    ("istio-10", "DestinationRule", ["spec", "subsets", 1, "labels", "track"], "canery", "subset 'canary' selects no pod"),
    ("istio-10", "DestinationRule", ["spec", "host"], "elsewhere", "host 'elsewhere'"),
    ("istio-10", "PeerAuthentication", ["spec", "selector", "matchLabels", "app.kubernetes.io/instance"], "x", "matches no pod"),
    ("istio-mirror", "VirtualService", ["spec", "http", 1, "mirrors", 0, "destination", "subset"], "shadow", "subset 'shadow'"),
    ("istio-mirror", "VirtualService", ["spec", "http", 1, "mirrors", 0, "percentage", "value"], 0, "mirror percentage 0"),
    ("gateway-50", "HTTPRoute", ["spec", "rules", 0, "backendRefs", 1, "weight"], 60, "sum to 110"),
    ("gateway-50", "HTTPRoute", ["spec", "rules", 0, "backendRefs", 1, "name"], "model-repository-canery", "'model-repository-canery' is not in the generated set"),
    ("gateway-50", "GRPCRoute", ["spec", "rules", 0, "backendRefs", 0, "port"], 9000, "model-repository-stable' has no port 9000"),
    ("gateway-50", "GRPCRoute", ["spec", "parentRefs", 0, "name"], "gone", "parent Service 'gone'"),
    ("gateway-50", "HTTPRoute", ["spec", "parentRefs", 0, "kind"], "Gateway", "is not a Service (GAMMA)"),
    ("gateway-mirror-header", "HTTPRoute", ["spec", "rules", 1, "filters", 0, "requestMirror", "backendRef", "name"], "shadow", "mirror: backend Service 'shadow'"),
    ("gateway-50", "Service", ["spec", "selector", "track"], "blue", "selector matches no pod"),
    ("gateway-50", "HorizontalPodAutoscaler", ["spec", "scaleTargetRef", "name"], "gone", "scales Deployment 'gone'"),
    ("gateway-50", "Deployment", ["metadata", "namespace"], "other", "resources span namespaces"),
    ("gateway-50", "Deployment", ["spec", "selector", "matchLabels", "track"], "x", "does not match its own pod labels"),
    ("gateway-50", "HTTPRoute", ["metadata", "name"], "Model_Route", "not a DNS label"),
    ("gateway-50", "Service", ["metadata", "name"], "1-model", "must be a label that starts with a letter"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "kind", "path", "value", "message"), SET_BREAKS)
def test_set_check_finds_a_deliberately_broken_set(
    repo: Path, tmp_path: Path, config: str, kind: str, path: list[Any], value: Any, message: str
) -> None:
    resources = render_mesh(repo, options(config), tmp_path).resources
    assert check_set(resources) == []
    problems = check_set(_break(resources, kind, path, value))
    assert any(message in p for p in problems), problems


def test_set_check_finds_duplicates_and_missing_pieces(repo: Path, tmp_path: Path) -> None:
    resources = list(render_mesh(repo, options("istio-10"), tmp_path).resources)
    no_rule = [d for d in resources if d["kind"] != "DestinationRule"]
    assert any("defined by no DestinationRule" in p for p in check_set(no_rule))
    no_service = [d for d in resources if d["kind"] != "Service"]
    assert any("is not a Service in the" in p for p in check_set(no_service))
    no_pods = [d for d in resources if d["kind"] != "Deployment"]
    assert any("selects no pod" in p for p in check_set(no_pods))
    doubled = [*resources, copy.deepcopy(one(resources, "VirtualService"))]
    assert any("VirtualService/model-repository: defined twice" in p for p in check_set(doubled))


def test_render_refuses_an_inconsistent_set(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set check runs on every render: a builder bug surfaces as an error, not a file."""
    from packager.deploy import mesh_resources

    real = mesh_resources.destination_rule

    def wrong_subsets(plan: Any) -> dict[str, Any]:
        doc = real(plan)
        doc["spec"]["subsets"] = doc["spec"]["subsets"][:1]
        return doc

    monkeypatch.setattr(mesh_resources, "destination_rule", wrong_subsets)
    out = tmp_path / "out"
    with pytest.raises(PackagerError, match=r"generated set is inconsistent: .*subset 'canary'"):
        write_mesh(repo, options("istio-10"), out)
    assert not out.exists()


def test_mixed_gpu_repository_needs_gpus_on_both_tracks(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    with pytest.raises(PackagerError, match="--gpus-per-replica gives no GPU"):
        render_mesh(repo, options("linkerd-0-pvc"), tmp_path)
    assert render_mesh(repo, options("istio-10"), tmp_path).resources
