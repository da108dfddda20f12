"""GET /api/ProtectedApi: the product list for a card's dropdown, for authenticated callers only."""

import azure.functions as func

from shared import Identity, not_modified, products, protected, raw_json_response
from shared.settings import current_settings

CACHE_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization, accessToken"}


@protected
def main(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    query = products.ProductQuery.from_params(req.params)  # only now: an anonymous caller learns nothing
    listing = products.load_catalog(current_settings().products_file).listing(query)
    headers = {**CACHE_HEADERS, "ETag": listing.etag}
    if products.etag_matches(req.headers.get("If-None-Match"), listing.etag):
        return not_modified(headers)
    return raw_json_response(listing.body, headers=headers)
