"""The shared traffic split: compare-and-swap stores (file, ConfigMap) and replicas following one split.

The file store runs for real (several routers on one file, as replicas on one host). The ConfigMap store
runs against a fake CoreV1Api that implements the API server's resourceVersion preconditions: a real API
server cannot run here.
"""
from __future__ import annotations

import asyncio
import copy
import itertools
import threading

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from inference_server.config import ConfigError, SplitStoreConfig
from inference_server.lifecycle.shared_split import SharedSplit, open_store
from inference_server.lifecycle.split_store import (
    DATA_KEY,
    ConfigMapSplitStore,
    FileSplitStore,
    SplitConflict,
)
from inference_server.serving.traffic import Split, TrafficRouter

MODEL = "minilm"


def replica(store, *, configured=None, max_attempts=5, start=True) -> SharedSplit:
    router = TrafficRouter(MODEL, Split.of({"1": 1.0}))
    shared = SharedSplit(MODEL, router, store, registry=CollectorRegistry(), max_attempts=max_attempts)
    if start:
        shared.start(configured)
    return shared


def weights(shared: SharedSplit) -> dict[str, float]:
    return shared.router.split.as_percent()


class FakeCoreV1Api:
    """ConfigMaps in memory with the API server's semantics for create / replace preconditions."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], client.V1ConfigMap] = {}
        self._versions = itertools.count(100)
        self.lock = threading.Lock()

    def read_namespaced_config_map(self, name, namespace):
        with self.lock:
            if (namespace, name) not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            return copy.deepcopy(self.objects[(namespace, name)])

    def create_namespaced_config_map(self, namespace, body):
        with self.lock:
            key = (namespace, body.metadata.name)
            if key in self.objects:
                raise ApiException(status=409, reason="AlreadyExists")
            return self._store(key, body)

    def replace_namespaced_config_map(self, name, namespace, body):
        with self.lock:
            key = (namespace, name)
            if key not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            if body.metadata.resource_version != self.objects[key].metadata.resource_version:
                raise ApiException(status=409, reason="Conflict")
            return self._store(key, body)

    def _store(self, key, body):
        stored = copy.deepcopy(body)
        stored.metadata.resource_version = str(next(self._versions))
        self.objects[key] = stored
        return copy.deepcopy(stored)


@pytest.fixture(params=["file", "configmap"])
def store_factory(request, tmp_path):
    """A factory of store clients that all see the same document (one per replica)."""
    if request.param == "file":
        path = tmp_path / "traffic" / "minilm.json"
        return lambda: FileSplitStore(path)
    api = FakeCoreV1Api()
    return lambda: ConfigMapSplitStore(api, "inference-traffic-split", "shop")


def test_store_refuses_a_write_based_on_a_stale_read(store_factory):
    a, b = store_factory(), store_factory()
    token = a.write({"split": {"weights": {"1": 1}}}, None)
    with pytest.raises(SplitConflict):
        b.write({"split": {"weights": {"2": 1}}}, None)  # "create" when it exists
    newer = b.write({"split": {"weights": {"2": 1}}}, token)
    with pytest.raises(SplitConflict):
        a.write({"split": {"weights": {"3": 1}}}, token)  # a's read is stale now
    stored = a.read()
    assert stored.token == newer and stored.doc["split"] == {"weights": {"2": 1}}


def test_late_replica_adopts_the_current_split(store_factory):
    first = replica(store_factory(), configured=Split.of({"1": 100}))
    first.change(lambda r: r.set_weights({"1": 70, "2": 30}), "canary")
    late = replica(store_factory(), configured=Split.of({"1": 100}))  # its own config says otherwise
    assert weights(late) == {"1": 70.0, "2": 30.0}
    assert late.revision == first.revision == 2
    assert late.router.stable.as_percent() == {"1": 100.0}  # the rollback target travels too


async def test_a_change_on_one_replica_reaches_the_others(store_factory):
    replicas = [replica(store_factory(), configured=Split.of({"1": 60, "2": 40})) for _ in range(3)]
    changed = []
    replicas[2].on_change = lambda: changed.append(True)
    replicas[0].change(lambda r: r.drain("2"), "drain 2")  # the rollback webhook hit replica 0
    assert weights(replicas[1]) == {"1": 60.0, "2": 40.0}  # not yet: it polls
    for r in replicas[1:]:
        assert await r.sync() is True
    assert [weights(r) for r in replicas] == [{"1": 100.0}] * 3
    assert changed == [True]
    assert await replicas[1].sync() is False  # nothing new


def test_concurrent_changes_are_all_applied(store_factory):
    versions = [str(v) for v in range(1, 9)]
    seed = replica(store_factory(), configured=Split.of({v: 1 for v in versions}))
    workers = [replica(store_factory(), max_attempts=50) for _ in versions[1:]]
    barrier = threading.Barrier(len(workers))
    errors = []

    def drain(shared, version):
        barrier.wait()
        try:
            shared.change(lambda r: r.drain(version), f"drain {version}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(w, v)) for w, v in zip(workers, versions[1:])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    final = replica(store_factory())
    assert weights(final) == {"1": 100.0}  # all seven drains landed, none overwrote another
    assert final.revision == seed.revision + 7


def test_a_change_that_loses_every_race_is_refused_not_lost(store_factory):
    a = replica(store_factory(), configured=Split.of({"1": 50, "2": 25, "3": 25}), max_attempts=1)
    b = replica(store_factory())

    def drain_2_while_b_drains_3(router):
        b.change(lambda r: r.drain("3"), "drain 3")  # lands between a's read and a's write
        return router.drain("2")

    with pytest.raises(SplitConflict):
        a.change(drain_2_while_b_drains_3, "drain 2")
    assert weights(a) == {"1": 50.0, "2": 25.0, "3": 25.0}  # refused: a applies nothing of its own
    assert weights(replica(store_factory())) == {"1": 66.666667, "2": 33.333333}  # b's change kept
    assert a.metrics.conflicts.labels(MODEL)._value.get() == 1

    a.max_attempts = 2  # with a retry, both changes end up applied
    a.change(drain_2_while_b_drains_3, "drain 2")
    assert weights(a) == weights(replica(store_factory())) == {"1": 100.0}


def test_noop_change_does_not_write(store_factory):
    a = replica(store_factory(), configured=Split.of({"1": 100}))
    revision = a.revision
    _, changed = a.change(lambda r: r.drain("2"), "drain 2")
    assert changed is False and a.revision == revision == int(replica(store_factory()).revision)


async def test_unreadable_store_keeps_the_current_split(tmp_path):
    path = tmp_path / "split.json"
    a = replica(FileSplitStore(path), configured=Split.of({"1": 80, "2": 20}))
    path.write_text("{not json")
    assert await a.sync() is False
    assert weights(a) == {"1": 80.0, "2": 20.0}
    assert a.metrics.errors.labels(MODEL)._value.get() == 1


def test_memory_store_changes_apply_directly():
    a = replica(None, configured=Split.of({"1": 50, "2": 50}))
    a.change(lambda r: r.promote("2"), "promote 2")
    assert weights(a) == {"2": 100.0} and a.revision == 0
    assert asyncio.run(a.sync()) is False


def test_configmap_document_layout():
    api = FakeCoreV1Api()
    replica(ConfigMapSplitStore(api, "inference-traffic-split", "shop"), configured=Split.of({"1": 90, "2": 10}))
    cm = api.objects[("shop", "inference-traffic-split")]
    assert DATA_KEY in cm.data and '"2": 0.1' in cm.data[DATA_KEY]


def test_store_from_config(tmp_path, monkeypatch):
    assert open_store(SplitStoreConfig(), MODEL, str(tmp_path)) is None
    store = open_store(SplitStoreConfig(kind="file"), MODEL, str(tmp_path))
    assert store.path == tmp_path / "traffic" / "minilm.json"
    # No service account and no kubeconfig: a config error naming the key, not a crash at first use.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="traffic.store.kind"):
        open_store(SplitStoreConfig(kind="configmap"), MODEL, str(tmp_path))
