"""A v2 (decorator) function app that reuses this package's guard and its two functions.

Deploy this folder with a copy of the repository's `shared/` beside this file (copy it, or symlink it while
developing: `ln -s ../../shared shared`); its requirements.txt lists what `shared` needs. `python -m devserver
--root examples/v2` runs it here: the local host finds the repository's own `shared` (it puts the repository root
on sys.path). See docs/v1-and-v2.md.
"""

import azure.functions as func

from shared import Identity, json_response, protected
from shared.blueprint import blueprint

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)  # the card's token is the authentication
app.register_functions(blueprint)  # ValidateToken and ProtectedApi, as in the v1 app


@app.route(route="Hello", methods=["GET"])
@protected
def hello(req: func.HttpRequest, identity: Identity) -> func.HttpResponse:
    return json_response({"hello": identity.name})
