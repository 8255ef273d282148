"""Changing a model while records exist: new fields, a new index, a new unique constraint.

    python examples/models_evolve.py

Runs on the embedded default store (the built-in server, started for this process
and stopped at exit): no setup.  Two versions of one model share the prefix, as two
deployments of an application would.
"""

from __future__ import annotations

from ktstore.models import Model, ModelError, fields


class CityV1(Model, prefix="city"):
    name = fields.Text(primary_key=True)
    population = fields.Integer()


class CityV2(Model, prefix="city"):
    name = fields.Text(primary_key=True)
    population = fields.Integer(index=True)  # index added later
    country = fields.Text(default="?")  # field added later, with a default
    mayor = fields.Text(optional=True)  # optional: None for old records


def main() -> None:
    CityV1.create_many(
        [{"name": n, "population": p} for n, p in [("Lyon", 522), ("Nice", 342), ("Pau", 75)]]
    )
    old = CityV2["Lyon"]
    print("old record read by V2:", old)

    try:
        CityV2.query(CityV2.population > 100).count()
    except ModelError as exc:  # not a silently empty result
        print("before rebuild:", exc)
    print("check:", len(CityV2.check().missing_entries), "missing index entries")
    print("rebuild:", CityV2.rebuild())
    big = CityV2.query(CityV2.population > 100).order_by(CityV2.population.desc())
    print("after rebuild:", [c.name for c in big])
    assert [c.name for c in big] == ["Lyon", "Nice"]
    assert CityV2.check().ok


if __name__ == "__main__":
    main()
