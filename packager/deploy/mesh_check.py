"""Cross-resource checks of a generated Kubernetes + mesh set: what schemas cannot see.

A schema checks one resource; these check that the resources fit together: every Service, subset,
parent and backend a route names exists in the set with that port, every selector selects pods of
a generated Deployment, route weights are integer percentages that sum to 100, names are DNS
labels, and everything lives in one namespace. :func:`check_set` runs on every render.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from packager.deploy.k8s_resources import DNS_LABEL

_DNS_1035 = "starts with a letter"  # Service names are RFC 1035 labels


def check_set(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every problem of the set, as ``Kind/name: what is wrong``; empty when it is consistent."""
    return _Checker(list(resources)).run()


class _Checker:
    def __init__(self, docs: list[Mapping[str, Any]]) -> None:
        self.docs = docs
        self.problems: list[str] = []
        self.services: dict[str, Mapping[str, Any]] = {}
        self.pods: dict[str, dict[str, str]] = {}  # Deployment -> pod template labels
        self.subsets: dict[str, dict[str, dict[str, str]]] = {}  # host -> subset -> labels
        self.namespace: str | None = None

    def run(self) -> list[str]:
        self._index()
        checks = {
            "Deployment": self._deployment,
            "Service": self._service,
            "HorizontalPodAutoscaler": self._hpa,
            "DestinationRule": self._destination_rule,
            "VirtualService": self._virtual_service,
            "PeerAuthentication": self._peer_authentication,
            "HTTPRoute": self._route,
            "GRPCRoute": self._route,
        }
        for doc in self.docs:
            check = checks.get(doc.get("kind", ""))
            if check is not None:
                check(_where(doc), doc.get("spec") or {})
        return self.problems

    def _index(self) -> None:
        seen: set[tuple[str, str]] = set()
        namespaces = {d.get("metadata", {}).get("namespace") for d in self.docs}
        if len(namespaces) > 1:
            found = ", ".join(sorted(str(n) for n in namespaces))
            self.problems.append(f"resources span namespaces ({found}); references stay in one")
        self.namespace = next(iter(namespaces), None)
        for doc in self.docs:
            kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "")
            where = f"{kind}/{name}"
            if (kind, name) in seen:
                self.problems.append(f"{where}: defined twice")
            seen.add((kind, name))
            if not (isinstance(name, str) and DNS_LABEL.match(name) and len(name) <= 63):
                self.problems.append(f"{where}: name is not a DNS label (a-z, 0-9, '-', <= 63)")
            spec = doc.get("spec") or {}
            if kind == "Service":
                if not str(name)[:1].isalpha():
                    self.problems.append(
                        f"{where}: a Service name must be a label that {_DNS_1035}"
                    )
                self.services[name] = spec
            elif kind == "Deployment":
                self.pods[name] = dict(
                    spec.get("template", {}).get("metadata", {}).get("labels", {})
                )
            elif kind == "DestinationRule":
                host = self._service_name(spec.get("host", ""))
                subsets = self.subsets.setdefault(host, {})
                for subset in spec.get("subsets", []):
                    if subset.get("name") in subsets:
                        self.problems.append(f"{where}: subset {subset.get('name')!r} twice")
                    subsets[subset.get("name")] = dict(subset.get("labels", {}))

    # ----------------------------------------------------------------- helpers

    def _service_name(self, host: str) -> str:
        """A short host (``svc``) or its in-cluster FQDN, as the Service name."""
        suffix = f".{self.namespace}.svc.cluster.local" if self.namespace else None
        if suffix and host.endswith(suffix):
            return host.removesuffix(suffix)
        return host

    def _selects(self, labels: Mapping[str, str]) -> bool:
        return bool(labels) and any(pod.items() >= labels.items() for pod in self.pods.values())

    def _service_port(self, where: str, what: str, name: str, port: int | None) -> None:
        service = self.services.get(name)
        if service is None:
            self.problems.append(f"{where}: {what} Service {name!r} is not in the generated set")
        elif port is None:
            self.problems.append(f"{where}: {what} Service {name!r} names no port")
        elif port not in {p.get("port") for p in service.get("ports", [])}:
            self.problems.append(f"{where}: {what} Service {name!r} has no port {port}")

    def _weights(self, where: str, weights: list[Any]) -> None:
        # Explicit integer percentages only: an omitted weight means 100 to Istio but 1 to the
        # Gateway API, and fractions would make the split read differently on each mesh.
        bad = [w for w in weights if isinstance(w, bool) or not isinstance(w, int)]
        bad += [w for w in weights if isinstance(w, int) and not 0 <= w <= 100]
        if bad:
            self.problems.append(f"{where}: weights must be integers 0..100 (got {weights})")
        elif sum(weights) != 100:
            self.problems.append(f"{where}: weights {weights} sum to {sum(weights)}, not 100")

    # ----------------------------------------------------------------- core kinds

    def _deployment(self, where: str, spec: Mapping[str, Any]) -> None:
        selector = spec.get("selector", {}).get("matchLabels", {})
        pod = spec.get("template", {}).get("metadata", {}).get("labels", {})
        if not selector or not pod.items() >= selector.items():
            self.problems.append(f"{where}: selector does not match its own pod labels")

    def _service(self, where: str, spec: Mapping[str, Any]) -> None:
        if not self._selects(spec.get("selector", {})):
            self.problems.append(f"{where}: selector matches no pod of the generated Deployments")

    def _hpa(self, where: str, spec: Mapping[str, Any]) -> None:
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in self.pods:
            self.problems.append(f"{where}: scales Deployment {target!r}, not in the set")

    # ----------------------------------------------------------------- Istio

    def _destination_rule(self, where: str, spec: Mapping[str, Any]) -> None:
        host = self._service_name(spec.get("host", ""))
        if host not in self.services:
            self.problems.append(f"{where}: host {host!r} is not a Service in the generated set")
            return
        selector = self.services[host].get("selector", {})
        for subset in spec.get("subsets", []):
            if not self._selects({**selector, **subset.get("labels", {})}):
                self.problems.append(f"{where}: subset {subset.get('name')!r} selects no pod")

    def _virtual_service(self, where: str, spec: Mapping[str, Any]) -> None:
        hosts = [self._service_name(h) for h in spec.get("hosts", [])]
        for host in hosts:
            if host not in self.services:
                self.problems.append(f"{where}: host {host!r} is not a Service in the set")
        for i, route in enumerate(spec.get("http", [])):
            at = f"{where} http[{route.get('name', i)}]"
            for match in route.get("match", []):
                for host in hosts:
                    if host in self.services and "port" in match:
                        self._service_port(at, "matched", host, match["port"])
            for entry in route.get("route", []):
                self._destination(at, entry.get("destination", {}))
            self._weights(at, [entry.get("weight") for entry in route.get("route", [])])
            for mirror in route.get("mirrors", []):
                self._destination(f"{at} mirror", mirror.get("destination", {}))
                value = mirror.get("percentage", {}).get("value", 100)
                if not 0 < value <= 100:
                    self.problems.append(f"{at}: mirror percentage {value} is not in (0, 100]")

    def _destination(self, where: str, dest: Mapping[str, Any]) -> None:
        host = self._service_name(dest.get("host", ""))
        self._service_port(where, "destination", host, dest.get("port", {}).get("number"))
        subset = dest.get("subset")
        if subset is not None and subset not in self.subsets.get(host, {}):
            self.problems.append(
                f"{where}: subset {subset!r} of {host!r} is defined by no DestinationRule"
            )

    def _peer_authentication(self, where: str, spec: Mapping[str, Any]) -> None:
        if not self._selects(spec.get("selector", {}).get("matchLabels", {})):
            self.problems.append(f"{where}: selector matches no pod of the generated Deployments")

    # ----------------------------------------------------------------- Gateway API

    def _route(self, where: str, spec: Mapping[str, Any]) -> None:
        for parent in spec.get("parentRefs", []):
            if parent.get("kind") == "Service" and parent.get("group", "") == "":
                self._service_port(where, "parent", parent.get("name", ""), parent.get("port"))
            else:
                self.problems.append(f"{where}: parent {parent} is not a Service (GAMMA)")
        for i, rule in enumerate(spec.get("rules", [])):
            at = f"{where} rules[{i}]"
            refs = rule.get("backendRefs", [])
            for ref in refs:
                self._backend(at, ref)
            self._weights(at, [ref.get("weight") for ref in refs])
            for f in rule.get("filters", []):
                if f.get("type") == "RequestMirror":
                    self._backend(f"{at} mirror", f.get("requestMirror", {}).get("backendRef", {}))

    def _backend(self, where: str, ref: Mapping[str, Any]) -> None:
        if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
            self.problems.append(f"{where}: backend {ref.get('name')!r} is not a Service")
            return
        self._service_port(where, "backend", ref.get("name", ""), ref.get("port"))


def _where(doc: Mapping[str, Any]) -> str:
    return f"{doc.get('kind', '?')}/{doc.get('metadata', {}).get('name', '?')}"
