"""Service-mesh resources for a stable/canary pair, as plain dicts (see :mod:`packager.deploy.mesh`).

Istio: a VirtualService (weighted routes to DestinationRule subsets, a header route, mirroring) and
a PeerAuthentication. Gateway API (GAMMA: routes attached to a Service, as Linkerd and Istio read
them): an HTTPRoute and a GRPCRoute whose weighted backendRefs are per-track Services. Both send
HTTP (port 8000) and gRPC (port 8001) the same way; metrics (8002) are scraped per pod, not routed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packager.deploy.k8s_resources import TRACK_LABEL, Plan
from packager.releases import TRITON_PORTS

ISTIO_NETWORKING = "networking.istio.io/v1"
ISTIO_SECURITY = "security.istio.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
TRACKS = ("stable", "canary")
ROUTED = ("http", "grpc")  # the TRITON_PORTS keys a route carries
# Pod annotations that mesh a pod with Linkerd and admit only mTLS (meshed, authenticated)
# clients; the metrics port skips the proxy so a Prometheus outside the mesh can still scrape.
LINKERD_POD_ANNOTATIONS = {
    "linkerd.io/inject": "enabled",
    "config.linkerd.io/default-inbound-policy": "all-authenticated",
    "config.linkerd.io/skip-inbound-ports": str(TRITON_PORTS["metrics"]),
}
# Istio's per-pod injection switch (a label since 1.16; a namespace label works too).
ISTIO_POD_LABELS = {"sidecar.istio.io/inject": "true"}


@dataclass(frozen=True)
class Traffic:
    """How requests split between the tracks (checked by :mod:`packager.deploy.mesh`)."""

    canary_weight: int  # percent of requests sent to canary; the rest go to stable
    header: tuple[str, str] | None = None  # (lowercase name, value): these requests go to canary
    mirror: int | None = None  # percent of stable requests copied to canary (responses dropped)

    @property
    def weights(self) -> dict[str, int]:
        return {"stable": 100 - self.canary_weight, "canary": self.canary_weight}


# --------------------------------------------------------------------------- Istio


def virtual_service(plan: Plan, traffic: Traffic) -> dict[str, Any]:
    """Routes for the shared Service's host: the header route first (Istio takes the first match)."""
    host = plan.name

    def to(track: str, port: int) -> dict[str, Any]:
        return {"host": host, "subset": track, "port": {"number": port}}

    http: list[dict[str, Any]] = []
    for key, port in routed_ports(plan).items():
        if traffic.header:
            name, value = traffic.header
            http.append(
                {
                    "name": f"{key}-canary-header",
                    "match": [{"port": port, "headers": {name: {"exact": value}}}],
                    "route": [{"destination": to("canary", port), "weight": 100}],
                }
            )
        route: dict[str, Any] = {
            "name": key,
            "match": [{"port": port}],
            "route": [
                {"destination": to(track, port), "weight": traffic.weights[track]}
                for track in TRACKS
            ],
        }
        if traffic.mirror:
            # `mirrors` (Istio 1.19+) replaces the deprecated mirror + mirrorPercentage pair.
            route["mirrors"] = [
                {"destination": to("canary", port), "percentage": {"value": float(traffic.mirror)}}
            ]
        http.append(route)
    return {
        "apiVersion": ISTIO_NETWORKING,
        "kind": "VirtualService",
        "metadata": plan.metadata(),
        "spec": {"hosts": [host], "http": http},
    }


def routed_ports(plan: Plan) -> dict[str, int]:
    """The ports a route carries: Triton's HTTP and gRPC, and the OpenAI sidecar's if any."""
    ports = {key: TRITON_PORTS[key] for key in ROUTED}
    if plan.openai:
        ports["openai"] = plan.openai[0]
    return ports


def destination_rule(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": ISTIO_NETWORKING,
        "kind": "DestinationRule",
        "metadata": plan.metadata(),
        "spec": {
            "host": plan.name,
            # Clients speak Istio mTLS to these pods even where auto-mTLS is switched off.
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [{"name": track, "labels": {TRACK_LABEL: track}} for track in TRACKS],
        },
    }


def peer_authentication(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": ISTIO_SECURITY,
        "kind": "PeerAuthentication",
        "metadata": plan.metadata(),
        "spec": {
            "selector": {"matchLabels": plan.selector()},
            "mtls": {"mode": "STRICT"},
            # Metrics are read-only counters scraped by a Prometheus that may sit outside the
            # mesh; inference ports accept mTLS only. Keys are strings: JSON has no int keys.
            "portLevelMtls": {str(TRITON_PORTS["metrics"]): {"mode": "PERMISSIVE"}},
        },
    }


# --------------------------------------------------------------------------- Gateway API (GAMMA)


def http_route(plan: Plan, traffic: Traffic) -> dict[str, Any]:
    return _route(plan, traffic, "HTTPRoute", "http")


def grpc_route(plan: Plan, traffic: Traffic) -> dict[str, Any]:
    return _route(plan, traffic, "GRPCRoute", "grpc")


def openai_route(plan: Plan, traffic: Traffic) -> dict[str, Any]:
    """The OpenAI sidecar's port, split like Triton's (:func:`routed_ports`)."""
    return _route(plan, traffic, "HTTPRoute", "openai")


def _route(plan: Plan, traffic: Traffic, kind: str, key: str) -> dict[str, Any]:
    port = routed_ports(plan)[key]

    def backend(track: str) -> dict[str, Any]:
        return {"group": "", "kind": "Service", "name": f"{plan.name}-{track}", "port": port}

    rules: list[dict[str, Any]] = []
    if traffic.header:
        # A rule with a header match outranks one without (Gateway API match precedence).
        name, value = traffic.header
        rules.append(
            {
                "matches": [{"headers": [{"type": "Exact", "name": name, "value": value}]}],
                "backendRefs": [{**backend("canary"), "weight": 100}],
            }
        )
    rule: dict[str, Any] = {
        "backendRefs": [{**backend(t), "weight": traffic.weights[t]} for t in TRACKS],
    }
    if traffic.mirror:
        mirror = {"backendRef": backend("canary"), "percent": traffic.mirror}
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
    rules.append(rule)
    return {
        "apiVersion": GATEWAY_API,
        "kind": kind,
        "metadata": plan.metadata(f"{plan.name}-{key}"),
        "spec": {
            # GAMMA: attached to the shared Service, the route applies to every meshed client
            # that calls it on this port.
            "parentRefs": [{"group": "", "kind": "Service", "name": plan.name, "port": port}],
            "rules": rules,
        },
    }
