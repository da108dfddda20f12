"""Figure 5, in a fresh process: 100,000 distinct random tokens rejected by the stand-in. Prints JSON."""

import json
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor


def rss_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def main() -> None:
    kaizala, count = sys.argv[1], int(sys.argv[2])
    os.environ.update(
        AUTH_PROVIDERS="kaizala",
        KAIZALA_IDENTITY_URL=f"{kaizala}/v1/users/me",
        KAIZALA_ALLOWED_ACTION_PACKAGE_IDS="com.contoso.productpicker",
        TOKEN_CACHE_MAX_ENTRIES="10000",
        KAIZALA_MAX_CONCURRENT_CALLS="16",  # 8 client threads here; Azure's worker pool would bound them
    )
    import azure.functions as func

    import ValidateToken
    from shared.authenticator import root

    def call(_: int) -> int:
        token = secrets.token_urlsafe(32)  # opaque, well formed: only Kaizala can say no
        req = func.HttpRequest("GET", "http://localhost/api/ValidateToken", headers={"accessToken": token}, body=b"")
        return int(ValidateToken.main(req).status_code)

    rejected = 0
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(200)))  # warm up: connections, code paths
        baseline = rss_kib("VmRSS")
        for start in range(0, count, 1000):  # in batches: the executor would otherwise hold every future at once
            rejected += sum(status == 401 for status in pool.map(call, range(start, min(start + 1000, count))))
    print(
        json.dumps(
            {
                "requests": count,
                "rejected": rejected,
                **root().cache("kaizala").counts(),
                "max_entries": root().cache("kaizala").maxsize,
                "baseline_kib": baseline,
                "peak_kib": rss_kib("VmHWM"),
            }
        )
    )


if __name__ == "__main__":
    main()
