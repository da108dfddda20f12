"""Every sentence a refused caller reads comes from `shared/messages.py`: no check in `shared/` writes its own.

(The sample API's query errors in `shared/products.py` are the sample's own and stay beside it.)"""

import ast
import inspect
from pathlib import Path

import shared.errors
from shared import messages
from shared.cache.admission import Shed
from shared.policy import Refused

SHARED = Path(shared.errors.__file__).parent
EXEMPT = {SHARED / "messages.py", SHARED / "products.py"}
REFUSALS = {
    name for name, value in vars(shared.errors).items() if inspect.isclass(value) and issubclass(value, Exception)
} | {Refused.__name__, Shed.__name__}


def _written_here(node: ast.Call) -> bool:
    """A refusal built from a sentence written at the call (a literal or an f-string), not taken from messages."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    if name not in REFUSALS and name != "cls":
        return False
    first = node.args[0] if node.args else None
    return isinstance(first, ast.JoinedStr) or (isinstance(first, ast.Constant) and isinstance(first.value, str))


def test_no_module_of_shared_writes_a_refusal_of_its_own() -> None:
    found = []
    for path in sorted(SHARED.rglob("*.py")):
        if path in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _written_here(node):
                found.append(f"{path.relative_to(SHARED.parent)}:{node.lineno}")
    assert found == [], f"refusal wording written outside shared/messages.py: {found}"


def test_every_error_type_takes_its_default_wording_from_messages() -> None:
    wording = {value for value in vars(messages).values() if isinstance(value, str)}
    for value in vars(shared.errors).values():
        if inspect.isclass(value) and issubclass(value, shared.errors.ApiError):
            assert value.default_message in wording, value.__name__


def test_the_messages_name_no_request_value() -> None:
    # The sentences that take arguments take only limits, claim names and service names: nothing a caller sent.
    for name, value in vars(messages).items():
        if inspect.isfunction(value):
            parameters = set(inspect.signature(value).parameters)
            assert parameters <= {"limit", "kind", "renew", "claim", "scope", "service"}, name
