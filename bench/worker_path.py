"""Figure 7, in fresh processes (Python 3.13+): the functions through Microsoft's worker library. Prints JSON.

`python -m bench.worker_path invoke`: per-invocation cost through the worker path (an `InvocationRequest` with an
`RpcHttp`, the library's conversion, its thread pool, the `RpcHttp` answer), cached `ValidateToken` vs the 401
floor through the same path, interleaved batches, medians.

`python -m bench.worker_path cold <app root> <function>`: one cold start through the worker, timed from before
the worker library is imported: worker init + loading every function folder + the first answer (a request
without a token).
"""

import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOCK_URL = "https://kaizala.bench/v1/users/me"


def invoke(rounds: int = 30, batch: int = 200) -> dict[str, float]:
    import requests_mock

    from devserver.conversion import HostRequest
    from devserver.functions_host import load_app
    from tests.helpers import identity_payload, make_jwt

    os.environ.update(
        AUTH_PROVIDERS="kaizala",
        KAIZALA_IDENTITY_URL=MOCK_URL,
        KAIZALA_ALLOWED_ACTION_PACKAGE_IDS="com.contoso.productpicker",
        TOKEN_CACHE_SECONDS="1800",
        TOKEN_REFRESH_AHEAD="0",
    )
    logging.getLogger().setLevel(logging.INFO)  # as the proxy worker does: every INFO record becomes an RpcLog
    app = load_app(ROOT, invoke="worker")
    worker = app.worker
    assert worker is not None
    url = "http://127.0.0.1:7071/api/ValidateToken"
    token = make_jwt()
    cached = HostRequest("GET", url, {"authorization": f"Bearer {token}"}, {}, {}, None)
    floor = HostRequest("GET", url, {}, {}, {}, None)
    with requests_mock.Mocker() as kaizala:
        kaizala.get(MOCK_URL, json=identity_payload())
        assert worker.invoke("ValidateToken", cached).status == 200  # now cached
    assert worker.invoke("ValidateToken", floor).status == 401

    def per_call(request: HostRequest, status: int) -> float:
        began = time.perf_counter()
        for _ in range(batch):
            worker.invoke("ValidateToken", request)
        elapsed = (time.perf_counter() - began) / batch * 1e6
        assert worker.invoke("ValidateToken", request).status == status
        return elapsed

    for _ in range(3):  # warm up both
        per_call(cached, 200)
        per_call(floor, 401)
    cached_us, floor_us = [], []
    for _ in range(rounds):  # interleaved: drift on a busy machine hits both alike
        cached_us.append(per_call(cached, 200))
        floor_us.append(per_call(floor, 401))
    app.close()
    return {"cached_us": statistics.median(cached_us), "floor_us": statistics.median(floor_us)}


def cold(root: str, function: str) -> dict[str, float]:
    began = time.perf_counter()
    logging.getLogger().setLevel(logging.INFO)
    from devserver.conversion import HostRequest
    from devserver.functions_host import load_app

    app = load_app(Path(root), invoke="worker")
    assert app.worker is not None
    answer = app.worker.invoke(function, HostRequest("GET", f"http://127.0.0.1/api/{function}", {}, {}, {}, None))
    elapsed = (time.perf_counter() - began) * 1000
    app.close()
    return {"ms": elapsed, "status": answer.status}


if __name__ == "__main__":
    os.environ.setdefault("KAIZALA_ALLOWED_ACTION_PACKAGE_IDS", "com.contoso.productpicker")
    result = invoke() if sys.argv[1] == "invoke" else cold(sys.argv[2], sys.argv[3])
    print(json.dumps(result))
