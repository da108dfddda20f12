"""GET/POST /api/ValidateToken: who is calling, as Kaizala says."""

import azure.functions as func

from shared import NO_STORE, Identity, json_response, protected


@protected(accept_body_token=True)
def main(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    return json_response(identity.to_json(), headers=NO_STORE)
