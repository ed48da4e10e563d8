"""Catalog changes (add/update = upsert, remove) and how they turn one catalog into the next.

A `CatalogChanges` is what the admin endpoint and the catalog-file watcher produce; the serving
side's `CatalogUpdater` applies it, in one place, to the catalog and to every index built over it
(each model version's vector index, and any `CatalogChangeListener` such as a lexical index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from inference_server.catalog.types import Catalog, CatalogError, Product

__all__ = ["CatalogChangeListener", "CatalogChanges", "apply_changes", "diff_catalogs"]


@dataclass(frozen=True)
class CatalogChanges:
    """Products to add or replace (by id) and ids to remove; a product in both is an error."""

    upserts: tuple[Product, ...] = ()
    removals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ids = [p.id for p in self.upserts]
        if len(set(ids)) != len(ids):
            raise CatalogError("a change lists the same product id twice in upserts")
        both = set(ids) & set(self.removals)
        if both:
            raise CatalogError(f"product {sorted(both)[0]!r} is both upserted and removed")

    def __len__(self) -> int:
        return len(self.upserts) + len(self.removals)

    def merge(self, later: "CatalogChanges") -> "CatalogChanges":
        """One change equal to applying `self` then `later` (pending changes are coalesced)."""
        later_ids = {p.id for p in later.upserts} | set(later.removals)
        upserts = tuple(p for p in self.upserts if p.id not in later_ids) + later.upserts
        removals = tuple(pid for pid in self.removals if pid not in later_ids) + later.removals
        return CatalogChanges(upserts, removals)


class CatalogChangeListener(Protocol):
    """An index kept in step with the catalog (e.g. the lexical BM25 index): `apply` is called in a
    worker thread with the change and the catalog it produced, before that catalog is served."""

    def apply(self, changes: CatalogChanges, catalog: Catalog) -> None: ...


def apply_changes(catalog: Catalog, changes: CatalogChanges) -> Catalog:
    """The next catalog: updated products keep their position, removed ones go, new ones are
    appended (unknown ids in `removals` are ignored: removing twice is harmless)."""
    replacing = {p.id: p for p in changes.upserts if p.id in catalog}
    removing = set(changes.removals)
    products = [replacing.get(p.id, p) for p in catalog.products if p.id not in removing]
    products += [p for p in changes.upserts if p.id not in catalog]
    return Catalog(catalog.name, products)


def diff_catalogs(current: Catalog, wanted: Sequence[Product]) -> CatalogChanges:
    """What turns `current` into `wanted` (a re-read catalog file): new or changed products, and
    the ids that are gone."""
    wanted_ids = {p.id for p in wanted}
    upserts = tuple(p for p in wanted if current.get(p.id) != p)
    removals = tuple(p.id for p in current.products if p.id not in wanted_ids)
    return CatalogChanges(upserts, removals)
