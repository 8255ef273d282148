"""Index verification and repair (an ``fsck`` for models).

Saves and deletes keep records and indexes consistent atomically, but data can
still drift: records written or deleted around the model layer (plain ``set`` or
``remove``), an expiry changed with ``touch``, a model whose indexed fields
changed, a crash between two databases when records and indexes live in different
database files.  :func:`check` reports both kinds of damage without changing
anything; :func:`sweep` removes index entries whose record is gone (cheap, runs on
the server page by page); :func:`rebuild` rewrites every record's entries from its
current values, then sweeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ktstore.models import keycodec
from ktstore.models.backend import Binding, arraydump, memo_keys

if TYPE_CHECKING:
    from ktstore.models.base import Model


@dataclass
class CheckReport:
    """What :func:`check` found.  ``ok`` when both lists are empty."""

    records: int = 0
    entries: int = 0
    orphan_entries: list[bytes] = field(default_factory=list)  # entry without its record
    missing_entries: list[tuple[str, bytes]] = field(default_factory=list)  # (pk, absent key)
    unreadable: list[str] = field(default_factory=list)  # records that do not decode
    orphan_containers: list[bytes] = field(default_factory=list)  # container, no instance
    # full-text counters (documents, terms) that differ from the length entries:
    # ((stored), (expected)); None when they agree or the model has no search fields
    search_stats: tuple[tuple[int, int], tuple[int, int]] | None = None
    # (pk, foreign key field, referenced pk) whose referenced instance does not exist
    # (written around the model layer, or expired): fix or delete those instances
    dangling_refs: list[tuple[str, str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.dangling_refs
            or self.orphan_entries
            or self.missing_entries
            or self.unreadable
            or self.orphan_containers
            or self.search_stats
        )


def _ranges(b: Binding) -> list[tuple[bytes, bytes | None]]:
    from ktstore.models.search import length_base, posting_base

    return [
        (p, keycodec.prefix_successor(p))
        for p in (b.index_prefix, b.unique_prefix, posting_base(b), length_base(b))
    ]


def search_stats(b: Binding) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((documents, terms) by the counters, (documents, terms) by the length
    entries)``: the counters BM25 uses, and what they should hold."""
    import struct

    from ktstore.models.search import length_base

    base = length_base(b)
    docs = terms = 0
    for _key, value, _rec, _xt in b.iterate(
        b.scan_all(b.idb, base, keycodec.prefix_successor(base), page=1000)
    ):
        docs += 1
        terms += int(value.rsplit(b"\x00", 1)[1])

    def counter(suffix: bytes) -> int:
        raw = b.client.get_bytes(b.prefix + suffix, db=b.idb)
        return struct.unpack(">q", raw)[0] if raw and len(raw) == 8 else 0

    return (counter(b"\x00sn"), counter(b"\x00sl")), (docs, terms)


def reset_search_stats(b: Binding) -> None:
    """Set the search counters from the length entries (rebuild; on a quiet store)."""
    import struct

    _stored, (docs, terms) = search_stats(b)
    b.client.set_bytes(b.prefix + b"\x00sn", struct.pack(">q", docs), db=b.idb)
    b.client.set_bytes(b.prefix + b"\x00sl", struct.pack(">q", terms), db=b.idb)


def _records(
    model: type[Model], b: Binding, containers: bool = False
) -> Iterator[tuple[bytes, bytes, int]]:
    """Every record of the model as ``(key, raw, xt)``, found *without* the indexes
    (or, with ``containers``, every container record)."""
    lo = b.record_prefix
    for key, value in b.store._scan_raw(values=not containers, prefix=lo, page=200):
        if (b"\x00" in key[len(lo) :]) == containers:
            yield key, value or b"", 0


def check(model: type[Model]) -> CheckReport:
    """Report index entries without a live record that lists them, and records whose
    index entries (computed from their current values) are missing.  Read-only."""
    b = model._binding()
    report = CheckReport()
    for lo, hi in _ranges(b):
        for key, _pk, rec, _xt in b.iterate(b.scan_all(b.idb, lo, hi, page=200, join=True)):
            report.entries += 1
            if rec is None or key not in memo_keys(rec):
                report.orphan_entries.append(key)
    from ktstore.models.relations import ForeignKey

    fks: list[Any] = [f for f in model._kt.fields.values() if isinstance(f, ForeignKey)]
    refs: list[tuple[str, str, Any]] = []

    def _dangling(refs: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
        """The references among ``refs`` whose instance does not exist."""
        out: list[tuple[str, str, Any]] = []
        by_target: dict[Any, list[tuple[str, str, Any]]] = {}
        for ref in refs:
            by_target.setdefault(model._kt.fields[ref[1]].target, []).append(ref)  # type: ignore[attr-defined]
        for target, group in by_target.items():
            tb = target._binding()
            keys = {ref: tb.record_key(target._pk_to_str(ref[2])) for ref in group}
            live = tb.run(tb.get_records(sorted(set(keys.values()))))
            out.extend(ref for ref in group if keys[ref] not in live)
        return out

    for key, raw, _xt in _records(model, b):
        report.records += 1
        pkstr = key[len(b.record_prefix) :].decode("utf-8", "surrogateescape")
        try:
            inst = model._from_record(raw)
            ix, ux, _uf = inst._index_keys(b, pkstr)
        except Exception:  # noqa: BLE001 - reported, not fatal
            report.unreadable.append(pkstr)
            continue
        expected = ix + ux
        rows = b.client.get_bulk_details([(b.idb, k) for k in expected], decode_values=False)
        present = {
            (r[1] if isinstance(r[1], bytes) else r[1].encode("utf-8", "surrogateescape"))
            for r in rows
        }
        memo = set(memo_keys(raw))
        for k in expected:
            if k not in present or k not in memo:
                report.missing_entries.append((pkstr, k))
        for f in fks:
            value = getattr(inst, f.name)
            if value is not None:
                refs.append((pkstr, f.name, value))
        if len(refs) >= 200:
            report.dangling_refs.extend(_dangling(refs))
            refs = []
    report.dangling_refs.extend(_dangling(refs))
    for batch in _batches(key for key, _v, _x in _records(model, b, containers=True)):
        parents = {k: k.split(b"\x00", 1)[0] for k in batch}
        live = b.run(b.get_records(sorted(set(parents.values()))))
        report.orphan_containers.extend(k for k in batch if parents[k] not in live)
    if model._kt.search:
        stored, expected = search_stats(b)
        if stored != expected:
            report.search_stats = (stored, expected)
    return report


def _batches(keys: Iterator[bytes], size: int = 200) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for k in keys:
        batch.append(k)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def sweep(model: type[Model]) -> int:
    """Remove orphaned index and unique entries, and container records whose instance
    is gone, on the server; the number removed."""
    b = model._binding()
    removed = 0
    for lo, hi in _ranges(b):
        _seen, n = b.run(b.sweep(lo, hi))
        removed += n
    for batch in _batches(key for key, _v, _x in _records(model, b, containers=True)):
        out = b.run(b.call("modelcgc", {**b._dbs(), b"ks": arraydump(batch)}))
        removed += int(out.get(b"removed", b"0"))
    return removed


@dataclass
class RebuildReport:
    records: int = 0
    rewritten: int = 0
    removed_entries: int = 0
    unreadable: list[str] = field(default_factory=list)
    # (pk, field): records refused because a unique value they hold is taken by another
    # record (unique=True added over duplicate values); resolve them and rebuild again
    unique_conflicts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unreadable or self.unique_conflicts)


def rebuild(model: type[Model]) -> RebuildReport:
    """Re-derive every record's index entries from its values (each record atomically,
    only if it did not change meanwhile), then sweep away entries nobody owns.  Also
    how a new ``index=True``/``unique=True`` on an existing field gets its entries:
    until a rebuild reports ``ok``, queries on such an index and (for ``unique``)
    saves raise :class:`~ktstore.models.errors.ModelError` instead of silently
    missing old records or letting a duplicate in."""
    b = model._binding()
    report = RebuildReport()
    keys: Iterator[bytes] = (key for key, _raw, _xt in _records(model, b))
    if not b.store.is_tree(b.rdb):
        # a hash database is walked with a cursor, which may skip or revisit records
        # rewritten under it: take the keys first (a tree scan resumes after a key, so
        # it streams)
        keys = iter(list(keys))
    for batch in _batches(keys):
        found = b.run(b.get_records(batch))
        for key in batch:
            report.records += 1
            got = found.get(key)
            if got is None:
                continue  # deleted or expired since the scan
            pkstr = key[len(b.record_prefix) :].decode("utf-8", "surrogateescape")
            try:
                inst = model._from_record(*got)
                keep = _keep_version(inst)
                spec, _record = inst._spec(b, mode="update", cas=got[0], overrides=keep)
            except Exception:  # noqa: BLE001 - reported, not fatal (undecodable, unindexable)
                report.unreadable.append(pkstr)
                continue
            out = b.run(b.save([spec]))
            if out.get(b"err") is None:
                report.rewritten += 1
            elif out[b"err"] == b"unique":
                report.unique_conflicts.append((pkstr, out.get(b"field", b"").decode()))
            # a conflict means a concurrent save rewrote the entries itself
    report.removed_entries = sweep(model)
    if model._kt.search:
        reset_search_stats(b)
    if report.ok:  # every record now has its entries: the indexes are complete
        b.run(b.mark_built(set(model._kt.index_names)))
    return report


def _keep_version(inst: Any) -> dict[str, Any]:
    vf = inst._kt.version
    return {} if vf is None else {vf.name: getattr(inst, vf.name)}
