"""The sample functions' bodies, once for both programming models.

v1 (function.json): `ValidateToken/__init__.py` and `ProtectedApi/__init__.py` bind these as `main`.
v2 (decorators): `shared.blueprint` registers the same two on routes of the same names.

Each is the guarded callable `protected` returns: `req`, annotated `func.HttpRequest`, and `context` (func.Context,
which the worker passes by that name: its trace parent), returning `func.HttpResponse`, with no `__wrapped__` (the
worker reads that signature to match the bindings).
"""

import azure.functions as func

from . import NO_STORE, Identity, json_response, messages, not_modified, products, protected, raw_json_response
from .errors import InvalidRequest
from .settings import current_settings

CACHE_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization, accessToken"}


@protected(accept_body_token=True)
def validate_token(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    """GET/POST /api/ValidateToken: who is calling, as Kaizala (or Entra ID, for a Teams tab) says."""
    if req.params:  # it takes none: a stray parameter is a mistake worth hearing about (as in ProtectedApi)
        raise InvalidRequest(messages.VALIDATE_TOKEN_TAKES_NO_PARAMETERS)
    return json_response(identity.to_json(), headers=NO_STORE)


@protected
def protected_api(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    """GET /api/ProtectedApi: the product list for a card's dropdown, for authenticated callers only."""
    query = products.ProductQuery.from_params(req.params)  # only now: an anonymous caller learns nothing
    listing = products.load_catalog(current_settings().products_file).listing(query)
    headers = {**CACHE_HEADERS, "ETag": listing.etag}
    if products.etag_matches(req.headers.get("If-None-Match"), listing.etag):
        return not_modified(headers)
    return raw_json_response(listing.body, headers=headers)
