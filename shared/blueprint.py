"""ValidateToken and ProtectedApi for a v2 (decorator) function app, as one Blueprint.

    import azure.functions as func
    from shared.blueprint import blueprint

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(blueprint)

Each function is registered as its function.json declares it in the v1 app: the same function name, route
(`api/ValidateToken`, `api/ProtectedApi` under host.json's routePrefix), methods and `anonymous` auth level (set
on each route, so the app's own `http_auth_level` does not change it), and the same body (`shared.functions`).

The worker indexes what the decorators record and the callable `protected` returns: its parameter `req` must be
the trigger's name (`trigger_arg_name`, 'req' here), beside `context` (func.Context, no binding), its annotations
must be `func.HttpRequest`, `func.Context` and `func.HttpResponse`, and it has no `__wrapped__` for
`inspect.signature` to follow to `(req, identity)`.
Importing this module registers nothing in a v1 app: `shared/__init__.py` does not import it.
"""

import azure.functions as func

from .functions import protected_api, validate_token

TRIGGER_ARG = "req"

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves its __init__ unannotated

blueprint.function_name("ValidateToken")(
    blueprint.route(
        route="ValidateToken",
        trigger_arg_name=TRIGGER_ARG,
        methods=[func.HttpMethod.GET, func.HttpMethod.POST],
        auth_level=func.AuthLevel.ANONYMOUS,
    )(validate_token)
)
blueprint.function_name("ProtectedApi")(
    blueprint.route(
        route="ProtectedApi",
        trigger_arg_name=TRIGGER_ARG,
        methods=[func.HttpMethod.GET],
        auth_level=func.AuthLevel.ANONYMOUS,
    )(protected_api)
)

__all__ = ["blueprint"]
