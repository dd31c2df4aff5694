"""Schemathesis hooks for `tests/api/schemathesis`.

Generated sign-in requests name random providers, so on their own they only ever reach 404
`unknown_provider`. Next to each generated sign-in this offers the same request for the `dev`
provider (reaching token verification: 400, 401, 413, 415) and the same request for `dev` with a
real ID token from the running stack's dev provider (`CREDBROKER_ID_TOKEN`), so the 200 answer
and its headers are checked against the spec too.
"""

import os

import schemathesis
from hypothesis import strategies as st

SIGNIN_PATH = "/auth/signin/{provider}"
SIGNIN_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded")
ID_TOKEN = os.environ["CREDBROKER_ID_TOKEN"]


@schemathesis.hook
def flatmap_case(context, case):
    if case.path != SIGNIN_PATH:
        return st.just(case)
    return st.sampled_from([case, _for_dev(case), _with_real_token(case)])


def _for_dev(case):
    """The same request, for the dev provider."""
    derived = case.derive()
    derived.path_parameters = {"provider": "dev"}
    return derived


def _with_real_token(case):
    """The same request, for the dev provider, with a valid ID token as its body."""
    signed = _for_dev(case)
    signed.body = {"id_token": ID_TOKEN}
    if signed.media_type not in SIGNIN_MEDIA_TYPES:
        signed.media_type = SIGNIN_MEDIA_TYPES[0]
    return signed
