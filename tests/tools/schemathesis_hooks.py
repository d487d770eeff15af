"""Checks of our own for schemathesis runs against axn-worker's HTTP API
(tests/api/contract_tools.rs runs them; docs/platform-api.md, "Checked by
schemathesis", says why each replaces a built-in one).

The binding API answers HTTP 200 whatever the outcome, as the seed does:
a refusal is ResultCode 5000 with the reason in ResultMsg. So the built-in
`negative_data_rejection` (which wants a 4xx for a request the schema calls
invalid) says nothing about it; `refused_requests_change_nothing` asserts
what the convention means instead: such a request is refused with a reason,
and no refused request, valid or not, changes the Redis state.

The mapping API refuses a well-formed id that no number has with HTTP 400
(Code 1005, the seed's contract): a state, not a schema, question, so the
built-in `positive_data_acceptance` is replaced there by
`mapping_answers_valid_requests`.
"""

import hashlib
import os

import redis
import schemathesis
from schemathesis.specs.openapi import checks as builtin

R = redis.Redis.from_url(os.environ["AXN_REDIS_URL"])
PREFIX = os.environ["AXN_KEY_PREFIX"]
_before = {}


def state_digest():
    """The test's Redis state: every key under its prefix with its value,
    except keys that expire by themselves (the stored answers of repeated
    requests, reservation leases): time changes those, not requests."""
    h = hashlib.sha256()
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in PREFIX) + "*"
    keys = sorted(R.scan_iter(match=pattern, count=1000))
    pipe = R.pipeline(transaction=False)
    for k in keys:
        pipe.pttl(k)
        pipe.dump(k)
    out = pipe.execute()
    for i, k in enumerate(keys):
        ttl, dump = out[2 * i], out[2 * i + 1]
        if ttl != -1 or dump is None:
            continue
        for part in (k, dump):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


def binding_api(case):
    return case.path.startswith("/mangoapi/")


def negative(case):
    return case.meta is not None and case.meta.generation.mode.is_negative


# Where schemathesis's own check finds a negative case valid after all (it
# became valid when serialized, or only adds parameters, which the server
# ignores as the seed does), ours does too.
def _exempt(response, case):
    tests = [
        lambda: builtin.has_only_additional_properties_in_non_body_parameters(case),
        lambda: builtin._body_negation_becomes_valid_after_serialization(response, case),
        lambda: builtin._body_negation_is_only_forbidden_property(case),
        lambda: builtin._single_element_array_becomes_valid_after_serialization(response, case),
        lambda: builtin._type_mutations_become_valid_after_serialization(case),
        lambda: builtin._path_array_becomes_valid_after_serialization(case),
        lambda: builtin._non_body_negative_values_match_schema(response, case),
    ]
    return any(t() for t in tests)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if binding_api(case):
        _before[id(case)] = state_digest()


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    if not binding_api(case):
        return None
    before = _before.pop(id(case), None)
    if response.status_code != 200:
        return None
    body = response.json()
    code, message = body.get("ResultCode"), body.get("ResultMsg")
    if negative(case) and not _exempt(response, case) and code != 5000:
        raise AssertionError(
            f"a request the schema calls invalid was not refused: ResultCode {code}, {message!r}"
        )
    if code == 5000:
        if not message:
            raise AssertionError("a refusal without a reason (empty ResultMsg)")
        if before is not None and state_digest() != before:
            raise AssertionError(f"a refused request changed the Redis state ({message!r})")
    return True


@schemathesis.check
def mapping_answers_valid_requests(ctx, response, case):
    if case.path != "/number-mapping" or negative(case):
        return None
    if response.status_code in (401, 413):
        return None
    if response.status_code == 200:
        return True
    body = response.json()
    if response.status_code == 400 and body.get("Code") == 1005:
        return True
    raise AssertionError(
        f"a request the schema calls valid was refused: HTTP {response.status_code} {body}"
    )
