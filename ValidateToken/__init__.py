"""GET/POST /api/ValidateToken: who is calling, as Kaizala says."""

import azure.functions as func

from shared import NO_STORE, Identity, json_response, protected
from shared.errors import InvalidRequest


@protected(accept_body_token=True)
def main(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    if req.params:  # it takes none: a stray parameter is a mistake worth hearing about (as in ProtectedApi)
        raise InvalidRequest(f"Unknown query parameter {sorted(req.params)[0]!r}; ValidateToken takes none.")
    return json_response(identity.to_json(), headers=NO_STORE)
