"""RV codes, HTTP statuses, KC error names and ktserver's ERROR texts (checked against
the texts the real server produced in the recordings)."""

from __future__ import annotations

import json

from conftest import CONFORMANCE

from ktstore.protocol import rpc


def test_status_mapping_both_ways() -> None:
    expected = {rpc.RVSUCCESS: 200, rpc.RVENOIMPL: 501, rpc.RVEINVALID: 400, rpc.RVELOGIC: 450}
    expected |= {rpc.RVETIMEOUT: 503, rpc.RVEINTERNAL: 500}
    for rv, status in expected.items():
        assert rpc.rv_to_status(rv) == status
        assert rpc.status_to_rv(status) == rv
    assert rpc.rv_to_status(7) == 500  # a KC error code returned by a script
    assert rpc.rv_to_status(rpc.RVEMISC) == 500
    assert rpc.status_to_rv(404) == rpc.RVEINTERNAL


def test_db_error_texts() -> None:
    assert rpc.db_error_message(rpc.KC_NOREC) == "DB: 7: no record: no record"
    assert rpc.db_error_message(rpc.KC_DUPREC) == "DB: 6: record duplication: record duplication"
    assert rpc.db_error_message(rpc.KC_LOGIC, "status conflict") == (
        "DB: 8: logical inconsistency: status conflict"
    )
    assert rpc.parse_db_error_message("DB: 7: no record: no record") == (
        7,
        "no record",
        "no record",
    )
    assert rpc.parse_db_error_message("invalid parameters") is None
    assert rpc.kc_error_name(99) == "miscellaneous error"
    assert rpc.rv_for_kc_error(rpc.KC_NOREC) == rpc.RVELOGIC
    assert rpc.rv_for_kc_error(rpc.KC_NOIMPL) == rpc.RVENOIMPL
    assert rpc.rv_for_kc_error(rpc.KC_SYSTEM) == rpc.RVEINTERNAL
    assert rpc.not_implemented_message("count") == "not implemented: count"


def test_recorded_error_texts_are_known() -> None:
    known = {
        rpc.ERR_INVALID_PARAMETERS,
        rpc.ERR_NO_SUCH_DATABASE,
        rpc.ERR_NO_SUCH_CURSOR,
        rpc.ERR_TIMED_OUT,
        rpc.ERR_SCRIPT_DISABLED,
        rpc.ERR_NO_SUCH_PROCEDURE,
        rpc.ERR_SCRIPT_FAILED,
        rpc.ERR_RTS_NOT_SET,
        rpc.ERR_NO_ULOG,
    }
    seen = 0
    for name in ("http", "lua"):
        data = json.loads((CONFORMANCE / f"{name}.json").read_text())
        for scenario in data["scenarios"]:
            for step in scenario["steps"]:
                response = step.get("response") or {}
                for key, value in response.get("pairs", []):
                    if key != rpc.ERROR_KEY:
                        continue
                    seen += 1
                    parsed = rpc.parse_db_error_message(value)
                    if parsed:
                        code, name_, _ = parsed
                        assert rpc.kc_error_name(code) == name_
                        assert rpc.rv_to_status(rpc.rv_for_kc_error(code)) == response["status"]
                    elif value.startswith("not implemented: "):
                        assert response["status"] == 501
                    else:
                        assert value in known
    assert seen > 20
