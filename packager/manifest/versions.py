"""Model versions: list them with the version policy and checksums, set the policy, remove some.

Adding a version is a build (``build --version N`` or ``version:`` in a manifest). Every edit
here goes through :func:`packager.repository.rewrite_model`: the model folder is changed in a
staged copy and swapped in whole, so an interrupted edit leaves the old model intact.

Triton serves the versions its ``version_policy`` selects; without one it serves only the
newest (``latest:1``). Changes that would leave Triton nothing to load, or that would drop a
version an ensemble pins, are refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import PackagerError, RepositoryError
from packager.render import parse_config, render_config, spec_from_config
from packager.repository import (
    CHECKSUMS,
    CONFIG,
    bytecode_problems,
    list_models,
    read_config,
    read_record,
    rewrite_model,
    verify_checksums,
    verify_model_checksums,
    versions,
)
from packager.spec import VersionPolicy

DEFAULT_POLICY = VersionPolicy("latest", 1)  # Triton's default when the config names none


@dataclass(frozen=True)
class VersionInfo:
    version: int
    served: bool  # selected by the version policy, and it would load
    checksums_ok: bool
    problems: tuple[str, ...]  # checksum problems, if any
    files: tuple[tuple[str, str], ...]  # (path in the version folder, sha256) from SHA256SUMS
    record: dict[str, Any]
    selected: bool = False  # the version policy names it (served unless it would not load)
    load_problems: tuple[str, ...] = ()  # why it would not load under the model's config


@dataclass(frozen=True)
class VersionsReport:
    model: str
    model_dir: Path
    runtime: str
    policy: VersionPolicy
    policy_is_default: bool
    versions: tuple[VersionInfo, ...]
    # The model-level SHA256SUMS (config.pbtxt, label files) and compiled Python anywhere in the
    # model: the config serves every version, so a change there concerns them all.
    model_problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_dir": str(self.model_dir),
            "runtime": self.runtime,
            "version_policy": str(self.policy),
            "policy_is_default": self.policy_is_default,
            "served": [v.version for v in self.versions if v.served],
            "model_checksums_ok": not self.model_problems,
            "model_problems": list(self.model_problems),
            "versions": [
                {
                    "version": v.version,
                    "served": v.served,
                    "selected": v.selected,
                    "load_problems": list(v.load_problems),
                    "checksums_ok": v.checksums_ok,
                    "problems": list(v.problems),
                    "files": {name: digest for name, digest in v.files},
                    "record": v.record,
                }
                for v in self.versions
            ],
        }


def served_versions(policy: VersionPolicy | None, available: Sequence[int]) -> list[int]:
    """The versions Triton loads under ``policy`` (None = Triton's default, latest:1)."""
    return (policy or DEFAULT_POLICY).served(available)


def _model_dir(repo: Path | str, name: str) -> Path:
    root = Path(repo)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise RepositoryError(
            f"model {name!r} is not a model name (a folder directly inside {root}): names hold "
            "no path separators and are not '.' or '..'"
        )
    model_dir = root / name
    if not (model_dir / CONFIG).is_file():
        have = ", ".join(p.name for p in list_models(root)) or "none"
        raise RepositoryError(f"model {name!r} not found in {root}; models there: {have}")
    return model_dir


def list_versions(repo: Path | str, name: str) -> VersionsReport:
    """Versions of model ``name`` with what Triton serves and the state of their checksums.

    A version the policy selects but that would not load under the model's config (its artifact
    contradicts the config, or the target container's runtime refuses it) is not served.
    """
    from packager.validation import version_problems

    model_dir = _model_dir(repo, name)
    spec = spec_from_config(read_config(model_dir))
    available = versions(model_dir)
    served = set(served_versions(spec.version_policy, available))
    infos = []
    for v in available:
        vdir = model_dir / str(v)
        problems = tuple(verify_checksums(vdir))
        files: tuple[tuple[str, str], ...] = ()
        sums = vdir / CHECKSUMS
        if sums.is_file():
            pairs = [line.partition("  ") for line in sums.read_text(encoding="utf-8").splitlines()]
            files = tuple((rel, digest) for digest, _, rel in pairs if rel)
        loads = tuple(version_problems(spec, vdir)[0])
        selected = v in served
        infos.append(
            VersionInfo(
                v, selected and not loads, not problems, problems, files, read_record(vdir),
                selected, loads,
            )
        )  # fmt: skip
    return VersionsReport(
        name,
        model_dir,
        spec.runtime,
        spec.version_policy or DEFAULT_POLICY,
        spec.version_policy is None,
        tuple(infos),
        tuple(bytecode_problems(model_dir) + verify_model_checksums(model_dir)),
    )


def _pinned(repo: Path, name: str) -> list[tuple[str, int]]:
    """(ensemble, version) for every ensemble step that pins a version of ``name``."""
    out = []
    for d in list_models(repo):
        try:
            config = read_config(d)
        except PackagerError:  # a broken config elsewhere is validate's business, not ours
            continue
        for step in config.ensemble_scheduling.step:
            if step.model_name == name and step.model_version > 0:
                out.append((d.name, int(step.model_version)))
    return out


def update_versions(
    repo: Path | str,
    name: str,
    *,
    policy: VersionPolicy | str | None = None,
    remove: Sequence[int] = (),
) -> VersionsReport:
    """Set the version policy and/or remove versions of ``name`` in ONE atomic edit."""
    root = Path(repo)
    model_dir = _model_dir(root, name)
    if isinstance(policy, str):
        policy = VersionPolicy.parse(policy)
    available = versions(model_dir)
    problems = []
    missing = sorted(set(remove) - set(available))
    if missing:
        problems.append(
            f"cannot remove version(s) {', '.join(map(str, missing))} of {name!r}: no such "
            f"version; versions are: {', '.join(map(str, available)) or 'none'}"
        )
    left = [v for v in available if v not in set(remove)]
    if remove and not left:
        problems.append(
            f"removing {', '.join(map(str, sorted(set(remove))))} would leave {name!r} with no "
            "version, and Triton cannot load a model without one; build a new version first, "
            "or delete the model folder"
        )
    config = read_config(model_dir)
    current = spec_from_config(config)
    new_policy = policy if policy is not None else current.version_policy
    if new_policy is not None and new_policy.kind == "specific":
        absent = [v for v in new_policy.versions if v not in left]
        if absent:
            problems.append(
                f"version policy {new_policy} names version(s) {', '.join(map(str, absent))}, "
                f"which {name!r} does not have (it will have: {', '.join(map(str, left)) or 'none'})"
            )
    served = served_versions(new_policy, left)
    if left and not served:
        problems.append(f"version policy {new_policy} would serve no version of {name!r}")
    for ensemble, v in _pinned(root, name):
        if v not in served:
            problems.append(
                f"ensemble {ensemble!r} pins {name!r} version {v}, which would no longer be "
                "served; change the ensemble step's version first"
            )
    if problems:
        raise RepositoryError("; ".join(problems))
    if policy is None and not remove:
        return list_versions(root, name)

    def mutate(staged: Path) -> None:
        import shutil

        for v in sorted(set(remove)):
            shutil.rmtree(staged / str(v))
        if policy is not None:
            (staged / CONFIG).unlink()  # a fresh file: never write through a hard link
            (staged / CONFIG).write_text(_with_policy(config, policy), encoding="utf-8")

    rewrite_model(root, name, mutate)
    return list_versions(root, name)


def set_policy(repo: Path | str, name: str, policy: VersionPolicy | str) -> VersionsReport:
    """Set ``name``'s version policy (``latest:2``, ``all``, ``specific:1,3``)."""
    return update_versions(repo, name, policy=policy)


def remove_versions(repo: Path | str, name: str, remove: Sequence[int]) -> VersionsReport:
    """Delete version folders of ``name`` (refused if none would be left to serve)."""
    return update_versions(repo, name, remove=remove)


def _with_policy(config: Any, policy: VersionPolicy) -> str:
    """The config text with ``policy``; our own rendering when it keeps every field, so a
    repository edited here reads exactly like one built with that policy."""
    spec = spec_from_config(config)
    text = render_config(spec.replace(version_policy=policy))
    expected = type(config)()
    expected.CopyFrom(config)
    expected.ClearField("version_policy")
    again = parse_config(text)
    again.ClearField("version_policy")
    if again == expected:
        return text
    # The config has fields our spec does not model (hand-edited): edit the protobuf instead.
    from google.protobuf import text_format

    edited = type(config)()
    edited.CopyFrom(config)
    edited.ClearField("version_policy")
    if policy.kind == "latest":
        edited.version_policy.latest.num_versions = policy.num_versions
    elif policy.kind == "all":
        edited.version_policy.all.SetInParent()
    else:
        edited.version_policy.specific.versions.extend(policy.versions)
    return text_format.MessageToString(edited)
