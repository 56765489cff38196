from conftest import query_task

from flyteconnectors.core.testing import builders


def test_smoke(fake, propeller):
    template = query_task("SELECT id, kind FROM events WHERE id = :id", inputs={"id": int},
                          outputs={"results": builders.STRUCTURED_DATASET, "query_id": str})
    final = propeller.run(template, {"id": 7})
    print(final)
    print([ (q.sql, q.bindings, q.query_tag) for q in fake.submissions(is_async=None)])
    assert final.phase == 3
