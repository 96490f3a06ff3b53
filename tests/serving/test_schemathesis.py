"""schemathesis against the running application's own OpenAPI, over real HTTP: requests that fit
the schema and requests that do not, without credentials and with the serving token. No answer is
a 5xx; every 4xx says what is wrong (the field, the header or the limit).

With the token, the slot loads and unloads are left out: a generated version number can be a real
one (the session registers a model that fails on every call), and what loading does is covered by
``test_control``; everything else, state changes included, is fuzzed (``client`` resets it)."""

from __future__ import annotations

from collections import Counter

import pytest
import requests

pytestmark = pytest.mark.slow

EXAMPLES = 120
"""Generated requests per (mode, credentials): four runs."""
NAMED = {400, 401, 403, 413, 422}
"""4xx that must name what is wrong (``fields`` or ``limit``)."""


def _fuzz(schema, url: str, mode, headers: dict[str, str], *, codes: Counter[int], bad: list[str]) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    session = requests.Session()

    @given(case=schema.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        resp = case.call(base_url=url, session=session, headers=headers, timeout=60)
        codes[resp.status_code] += 1
        where = f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:300]}"
        if resp.status_code >= 500:
            bad.append(where)
        elif resp.status_code in NAMED:
            body = resp.json()
            if not (body.get("fields") or body.get("limit")) or not body.get("error"):
                bad.append(where)

    run()


def test_no_5xx_and_every_4xx_names_the_problem(client, serving_app):
    import schemathesis
    from schemathesis.generation import GenerationMode

    url = client.url
    token = serving_app.settings.serving.admin_token
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=60)
    safe = schema.exclude(path_regex=r"^/admin/slots/\{slot\}/(load|unload)$")
    codes: Counter[int] = Counter()
    bad: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        _fuzz(schema, url, mode, {}, codes=codes, bad=bad)
        _fuzz(safe, url, mode, {"Authorization": f"Bearer {token}"}, codes=codes, bad=bad)
    print(f"\nSCHEMATHESIS {sum(codes.values())} requests, status codes {dict(sorted(codes.items()))}")
    assert not bad, f"{len(bad)} bad answers, e.g. {bad[:5]}"
    assert codes[401] > 0 and codes[200] > 0 and codes[422] > 0, codes
