"""A small Kustomize renderer for the tests: the subset deploy/kubernetes uses.

No kustomize binary or network is available to the test suite, so this renders
``resources`` (files and folders with a kustomization.yaml), ``patches`` (strategic
merge patches given by ``path``), ``images`` and ``namespace``, and refuses any other
field, so an overlay cannot use a feature these tests would silently ignore.
Strategic merge here: maps merge key by key; lists whose items all have a ``name``
(containers, env, volumes, ports, ...) merge item by item on it; other lists replace.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]
SUPPORTED = frozenset({"apiVersion", "kind", "resources", "patches", "images", "namespace"})
CLUSTER_SCOPED = frozenset({"Namespace", "CustomResourceDefinition", "ClusterRole"})


class UnsupportedKustomizationError(ValueError):
    """The kustomization uses a field this renderer does not implement."""


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(folder: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise UnsupportedKustomizationError(f"{folder}: {sorted(unknown)}")
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        manifests += render(target) if target.is_dir() else load_documents(target)
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise UnsupportedKustomizationError(f"{folder}: patch {patch_entry}")
        for patch in load_documents(folder / patch_entry["path"]):
            _apply_patch(manifests, patch, folder)
    for image in kustomization.get("images", []):
        for manifest in manifests:
            _set_image(manifest, image)
    namespace = kustomization.get("namespace")
    if namespace is not None:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest.setdefault("metadata", {})["namespace"] = namespace
    return manifests


def _apply_patch(manifests: list[Manifest], patch: Manifest, folder: Path) -> None:
    for manifest in manifests:
        if (manifest["kind"], manifest["metadata"]["name"]) == (
            patch["kind"],
            patch["metadata"]["name"],
        ):
            merged = strategic_merge(manifest, patch)
            manifest.clear()
            manifest.update(merged)
            return
    raise UnsupportedKustomizationError(f"{folder}: no {patch['kind']} {patch['metadata']['name']}")


def strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(str(key).startswith("$") for key in patch):
            raise UnsupportedKustomizationError(f"patch directive in {sorted(patch)}")
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = copy.deepcopy(base)
        positions = {item["name"]: n for n, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in positions:
                n = positions[item["name"]]
                merged_list[n] = strategic_merge(merged_list[n], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _set_image(manifest: Manifest, image: dict[str, str]) -> None:
    pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            new_tag = image.get("newTag", tag)
            new_name = image.get("newName", name)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
