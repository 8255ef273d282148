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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ktstore.client.command import Program
from ktstore.models import keycodec
from ktstore.models.backend import (
    END,
    Binding,
    Emit,
    Pull,
    Stream,
    _tree_path,
    arraydump,
    command_of,
    memo_keys,
)
from ktstore.models.errors import ModelError

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


def search_stats(b: Binding) -> Program:
    """``((documents, terms) by the counters, (documents, terms) by the length
    entries)``: the counters BM25 uses, and what they should hold."""
    import struct

    from ktstore.models.search import length_base

    base = length_base(b)
    docs = terms = 0
    lengths = Pull(b.scan_all(b.idb, base, keycodec.prefix_successor(base), page=1000))
    while (entry := (yield from lengths.next())) is not END:
        docs += 1
        terms += int(entry[1].rsplit(b"\x00", 1)[1])
    counters = []
    for suffix in (b"\x00sn", b"\x00sl"):
        raw = yield b.client.get_bytes_command(b.prefix + suffix, db=b.idb)
        counters.append(struct.unpack(">q", raw)[0] if raw and len(raw) == 8 else 0)
    return (counters[0], counters[1]), (docs, terms)


def reset_search_stats(b: Binding) -> Program:
    """Set the search counters from the length entries (rebuild; on a quiet store)."""
    import struct

    _stored, (docs, terms) = yield from search_stats(b)
    for suffix, n in ((b"\x00sn", docs), (b"\x00sl", terms)):
        value = struct.pack(">q", n)
        key = b.prefix + suffix
        yield command_of(b.client, lambda p, k=key, v=value: p.set_bytes(k, v, db=b.idb))


def _records(model: type[Model], b: Binding, containers: bool = False) -> Stream:
    """A stream of every record of the model as ``(key, raw)``, found *without* the
    indexes (or, with ``containers``, every container record).

    The sync API walks the record database through ``Store`` (a ``modelscan`` page
    per call on a tree database, a server cursor on a hash database).  The awaitable
    forms need the records in a tree database (the default: one tree database for
    records and indexes), where the same pages are one program step each."""
    lo = b.record_prefix
    if not b.is_async:
        for key, value in b.store._scan_raw(values=not containers, prefix=lo, page=200):
            if (b"\x00" in key[len(lo) :]) == containers:
                yield Emit((key, value or b""))
        return
    paths = yield command_of(b.client, lambda p: p.databases)
    if not (b.rdb < len(paths) and _tree_path(paths[b.rdb])):
        raise ModelError(
            f"{model.__name__}: the awaitable check/sweep/rebuild walk the records by key "
            f"order, and database {b.rdb} is not a tree database; run check(), sweep() or "
            "rebuild() with a Store"
        )
    entries = Pull(b.scan_all(b.rdb, lo, keycodec.prefix_successor(lo), page=200))
    while (entry := (yield from entries.next())) is not END:
        key, value = entry[0], entry[1]
        if (b"\x00" in key[len(lo) :]) == containers:
            yield Emit((key, value or b""))


def check(model: type[Model]) -> CheckReport:
    """Report index entries without a live record that lists them, and records whose
    index entries (computed from their current values) are missing.  Read-only."""
    return model._run(lambda b: _check(model, b))  # type: ignore[no-any-return]


def _check(model: type[Model], b: Binding) -> Program:
    report = CheckReport()
    for lo, hi in _ranges(b):
        entries = Pull(b.scan_all(b.idb, lo, hi, page=200, join=True))
        while (entry := (yield from entries.next())) is not END:
            key, _pk, rec, _xt = entry
            report.entries += 1
            if rec is None or key not in memo_keys(rec):
                report.orphan_entries.append(key)
    from ktstore.models.relations import ForeignKey

    fks: list[Any] = [f for f in model._kt.fields.values() if isinstance(f, ForeignKey)]
    refs: list[tuple[str, str, Any]] = []

    def _dangling(refs: list[tuple[str, str, Any]]) -> Program:
        """The references among ``refs`` whose instance does not exist (related
        models share the store: their records are in ``b``'s record database)."""
        out: list[tuple[str, str, Any]] = []
        keys = {}
        for ref in refs:
            target = model._kt.fields[ref[1]].target  # type: ignore[attr-defined]
            prefix = target._kt.prefix.encode("utf-8") + b":"
            keys[ref] = prefix + target._pk_to_str(ref[2]).encode("utf-8")
        live = yield from b.get_records(sorted(set(keys.values())))
        out.extend(ref for ref in refs if keys[ref] not in live)
        return out

    records = Pull(_records(model, b))
    while (item := (yield from records.next())) is not END:
        key, raw = item
        report.records += 1
        pkstr = key[len(b.record_prefix) :].decode("utf-8", "surrogateescape")
        try:
            inst = model._from_record(raw)
            ix, ux, _uf = inst._index_keys(b, pkstr)
        except Exception:  # noqa: BLE001 - reported, not fatal
            report.unreadable.append(pkstr)
            continue
        expected = ix + ux
        pairs = [(b.idb, k) for k in expected]
        rows = yield command_of(
            b.client, lambda p, pairs=pairs: p.get_bulk_details(pairs, decode_values=False)
        )
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
            report.dangling_refs.extend((yield from _dangling(refs)))
            refs = []
    report.dangling_refs.extend((yield from _dangling(refs)))
    containers = Pull(_records(model, b, containers=True))
    while True:
        batch = yield from _batch(containers)
        if not batch:
            break
        parents = {k: k.split(b"\x00", 1)[0] for k in batch}
        live = yield from b.get_records(sorted(set(parents.values())))
        report.orphan_containers.extend(k for k in batch if parents[k] not in live)
    if model._kt.search:
        stored, expected_stats = yield from search_stats(b)
        if stored != expected_stats:
            report.search_stats = (stored, expected_stats)
    return report


def _batch(records: Pull, size: int = 200) -> Program:
    """The keys of the next ``size`` items of a :func:`_records` stream (``[]`` at
    its end)."""
    batch: list[bytes] = []
    while len(batch) < size:
        item = yield from records.next()
        if item is END:
            break
        batch.append(item[0])
    return batch


def sweep(model: type[Model]) -> int:
    """Remove orphaned index and unique entries, and container records whose instance
    is gone, on the server; the number removed."""
    return model._run(lambda b: _sweep(model, b))  # type: ignore[no-any-return]


def _sweep(model: type[Model], b: Binding) -> Program:
    removed = 0
    for lo, hi in _ranges(b):
        _seen, n = yield from b.sweep(lo, hi)
        removed += n
    containers = Pull(_records(model, b, containers=True))
    while batch := (yield from _batch(containers)):
        out = yield from b.call("modelcgc", {**b._dbs(), b"ks": arraydump(batch)})
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
    return model._run(lambda b: _rebuild(model, b))  # type: ignore[no-any-return]


def _rebuild(model: type[Model], b: Binding) -> Program:
    report = RebuildReport()
    records = Pull(_records(model, b))
    if not b.is_async and not b.store.is_tree(b.rdb):
        # a hash database is walked with a cursor, which may skip or revisit records
        # rewritten under it: take the keys first (a tree scan resumes after a key, so
        # it streams)
        keys: list[bytes] = []
        while batch := (yield from _batch(records)):
            keys.extend(batch)
        records = Pull(Emit((k, b"")) for k in keys)  # type: ignore[arg-type]
    while batch := (yield from _batch(records)):
        found = yield from b.get_records(batch)
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
            out = yield from b.save([spec])
            if out.get(b"err") is None:
                report.rewritten += 1
            elif out[b"err"] == b"unique":
                report.unique_conflicts.append((pkstr, out.get(b"field", b"").decode()))
            # a conflict means a concurrent save rewrote the entries itself
    report.removed_entries = yield from _sweep(model, b)
    if model._kt.search:
        yield from reset_search_stats(b)
    if report.ok:  # every record now has its entries: the indexes are complete
        yield from b.mark_built(set(model._kt.index_names))
    return report


def _keep_version(inst: Any) -> dict[str, Any]:
    vf = inst._kt.version
    return {} if vf is None else {vf.name: getattr(inst, vf.name)}
