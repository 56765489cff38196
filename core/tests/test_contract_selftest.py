"""The kit tests itself: each deliberately broken connector must fail the contract case that guards it."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

CASES = [
    ("NonIdempotentCreate", "test_lost_create_response_creates_one_job"),
    ("RaisesOnUnknownState", "test_unknown_state_is_not_fatal"),
    ("DeleteNotIdempotent", "test_delete_twice_and_after_finish_are_ok"),
    ("LeaksSecret", "test_happy_path_succeeds"),
    ("BlocksTheLoop", "test_no_event_loop_stall"),
    ("FalseSuccess", "test_failure_during_polling_surfaces_message"),
    ("NeverCancels", "test_delete_while_running_stops_the_remote_job"),
    ("TransientAsFatal", "test_transient_errors_on_get_are_retried"),
    ("TrustsItsHandle", "test_altered_job_handle_gets_a_clear_answer"),
]


def _copy_suites(pytester):
    """Copies under fresh module names, so they never clash with modules the running session imported."""
    example = (HERE / "test_contract_example.py").read_text()
    cases = (HERE / "contract_selftest_cases.py").read_text().replace(
        "from test_contract_example import", "from selftest_example_contract import")
    pytester.makepyfile(selftest_example_contract=example, selftest_broken_cases=cases)
    pytester.syspathinsert()


@pytest.mark.parametrize(("broken", "case"), CASES, ids=[c[0] for c in CASES])
def test_broken_connector_fails_the_case_that_guards_it(pytester, broken, case):
    _copy_suites(pytester)
    result = pytester.runpytest_inprocess("selftest_broken_cases.py", "-k", f"Test{broken} and {case}", "-p",
                                          "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) + outcomes.get("error", 0) >= 1, result.stdout.str()


def test_the_healthy_example_passes_the_cases_the_broken_ones_fail(pytester):
    _copy_suites(pytester)
    selection = " or ".join(case for _, case in CASES)
    result = pytester.runpytest_inprocess("selftest_example_contract.py", "-k", f"TestExampleJob and ({selection})",
                                          "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2 * len({case for _, case in CASES}))  # over the v1 and v2 wires
