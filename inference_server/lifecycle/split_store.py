"""Where the shared traffic split document lives: compare-and-swap reads and writes, nothing else.

Several replicas of the server must apply one split. Rather than a home-made consensus, the document
sits on machinery that already offers an atomic conditional write:

- `FileSplitStore`: a JSON file on a volume every replica mounts (one host). A write takes an
  exclusive `fcntl.flock` on a side lock file, checks the stored revision, writes a temporary file and
  renames it over the document (readers never see half a file).
- `ConfigMapSplitStore`: a Kubernetes ConfigMap read and replaced through the official `kubernetes`
  client with `metadata.resourceVersion` as the precondition; the API server refuses a stale write with
  409 Conflict.

Both answer `read()` with the document and an opaque `token`; `write(doc, expected_token)` succeeds only
when the stored token still equals `expected_token` (None: the document must not exist yet) and raises
`SplitConflict` otherwise. A lost update is therefore impossible: the loser re-reads and retries or gives up.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

__all__ = ["ConfigMapSplitStore", "FileSplitStore", "SplitConflict", "SplitStore", "SplitStoreError",
           "StoredSplit", "DATA_KEY"]

DATA_KEY = "split.json"  # the ConfigMap key holding the document
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class SplitStoreError(RuntimeError):
    """The store could not be read or written (I/O error, API server unreachable, bad document)."""


class SplitConflict(SplitStoreError):
    """Someone else changed the document since it was read: re-read and retry, or refuse."""


@dataclass(frozen=True)
class StoredSplit:
    doc: dict[str, Any]
    token: str  # opaque: the file's revision or the ConfigMap's resourceVersion


class SplitStore(Protocol):
    description: str

    def read(self) -> Optional[StoredSplit]: ...

    def write(self, doc: dict[str, Any], expected_token: Optional[str]) -> str: ...


def _decode(text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SplitStoreError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SplitStoreError(f"{where}: expected a JSON object")
    return doc


class FileSplitStore:
    """The document in a file; the token is the document's `revision`, bumped by every write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.description = f"file {self.path}"

    def read(self) -> Optional[StoredSplit]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SplitStoreError(f"{self.path}: {exc}") from None
        doc = _decode(text, str(self.path))
        return StoredSplit(doc, str(doc.get("revision", 0)))

    def write(self, doc: dict[str, Any], expected_token: Optional[str]) -> str:
        try:
            return self._write(doc, expected_token)
        except OSError as exc:
            raise SplitStoreError(f"{self.path}: {exc}") from None

    def _write(self, doc: dict[str, Any], expected_token: Optional[str]) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self.read()
                current_token = current.token if current is not None else None
                if current_token != expected_token:
                    raise SplitConflict(f"{self.path} is at revision {current_token}, expected {expected_token}")
                revision = int(current_token or 0) + 1
                body = json.dumps({**doc, "revision": revision}, indent=1, sort_keys=True) + "\n"
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as out:
                        out.write(body)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                return str(revision)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def pod_namespace(default: str = "default") -> str:
    """The namespace of the pod's service account (what in-cluster config implies), else `default`."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or default
    except OSError:
        return default


class ConfigMapSplitStore:
    """The document under `data["split.json"]` of a ConfigMap; the token is its resourceVersion.

    `api` is a `kubernetes.client.CoreV1Api` (built from the in-cluster service account by `in_cluster`).
    """

    def __init__(self, api: Any, name: str, namespace: str) -> None:
        self.api, self.name, self.namespace = api, name, namespace
        self.description = f"configmap {namespace}/{name}"

    @classmethod
    def in_cluster(cls, name: str, namespace: Optional[str] = None) -> "ConfigMapSplitStore":
        from kubernetes import client, config as kube_config

        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            kube_config.load_kube_config()  # outside a pod: the operator's kubeconfig
        return cls(client.CoreV1Api(), name, namespace or pod_namespace())

    def _call(self, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 409:
                raise SplitConflict(f"{self.description}: {exc.reason}") from None
            if exc.status == 404:
                raise
            raise SplitStoreError(f"{self.description}: {exc.status} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise SplitStoreError(f"{self.description}: {exc}") from None

    def read(self) -> Optional[StoredSplit]:
        from kubernetes.client.exceptions import ApiException

        try:
            cm = self._call(self.api.read_namespaced_config_map, self.name, self.namespace)
        except ApiException:  # 404 only; others became SplitStoreError
            return None
        text = (cm.data or {}).get(DATA_KEY)
        if text is None:
            return StoredSplit({}, cm.metadata.resource_version)
        return StoredSplit(_decode(text, f"{self.description} key {DATA_KEY}"), cm.metadata.resource_version)

    def write(self, doc: dict[str, Any], expected_token: Optional[str]) -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace, resource_version=expected_token,
                                         labels={"app.kubernetes.io/part-of": "ecommerce-model-monitoring"}),
            data={DATA_KEY: json.dumps(doc, indent=1, sort_keys=True)})
        try:
            if expected_token is None:
                cm = self._call(self.api.create_namespaced_config_map, self.namespace, body)
            else:
                cm = self._call(self.api.replace_namespaced_config_map, self.name, self.namespace, body)
        except ApiException as exc:  # 404 on replace: deleted meanwhile, a conflict with whoever deleted it
            raise SplitConflict(f"{self.description}: {exc.reason}") from None
        return cm.metadata.resource_version
