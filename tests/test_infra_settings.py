"""The Bicep in infra/ and the app agree on app settings, and azd finds the files it expects.

Every setting the app reads is set by infra/app/api.bicep or left to its default for a stated reason; every app
setting the Bicep sets is one the app reads, one it will read soon, or a Functions/platform setting listed here, so
a misspelt name fails this test instead of being silently ignored in Azure. The Bicep CLI is not available here, so
the Bicep is read with small regexes over the one place app settings live (the `var <name>AppSettings = {...}`
blocks of api.bicep, merged into `appSettings`).
"""

import json
import re
from pathlib import Path

import pytest
import yaml

from shared.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
API_BICEP = INFRA / "app" / "api.bicep"

# Settings the app reads that the Bicep does not set, each with why its default is the right one in Azure.
LEFT_TO_DEFAULT = {
    "KAIZALA_TIMEOUT_SECONDS": "5 s bounds every validation; the tuned default (docs/settings.md)",
    "KAIZALA_MAX_CONCURRENT_CALLS": "derived from the worker's thread pool, which the platform sizes",
    "TOKEN_CACHE_MAX_ENTRIES": "10,000 identities per instance fit a 2 GB instance many times over",
    "TOKEN_REFRESH_AHEAD": "on: cached users never wait for Kaizala",
    "PRODUCTS_FILE": "the bundled catalog (shared/products.json) is deployed with the app",
    "TOKEN_CACHE_REDIS_TIMEOUT_MS": "100 ms per Redis operation; Redis is an optimisation and is skipped when slow",
    "TOKEN_CACHE_LOCAL_SECONDS": "30 s bounds how stale an instance that missed a purge can be",
    "TOKEN_CACHE_REDIS_CA_FILE": "Azure Managed Redis has a certificate from a public CA: nothing to add",
    "TEAMS_ALLOWED_CLIENT_APP_IDS": "the two Teams clients (Microsoft 365 and Outlook clients are added by hand)",
    "TEAMS_AUTHORITY": "Microsoft's own login.microsoftonline.com; only the local stand-in replaces it",
}

# Set by the Bicep ahead of the app: each entry goes once shared.settings.SETTING_NAMES lists it.
READ_BY_THE_APP_SOON: dict[str, str] = {}

# Functions host and platform settings the Bicep sets, which the app itself never reads.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential": "the host's storage with a managed identity",
    "AzureWebJobsStorage__clientId": "which (user-assigned) identity",
    "AzureWebJobsStorage__blobServiceUri": "the host's blob endpoint (no connection string, shared keys are off)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where telemetry goes",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry with Entra ID (local auth is off)",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "the worker configures Azure Monitor: the app's telemetry",
}

# Flex Consumption ignores or refuses these (Microsoft's "Flex Consumption plan deprecations"): the runtime is set
# in functionAppConfig, deployment goes to a blob container, networking needs no app setting.
FLEX_DEPRECATED = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "ENABLE_ORYX_BUILD",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
}

_SETTINGS_BLOCK = re.compile(r"^var (?P<name>\w+AppSettings) = ", re.MULTILINE)
_SETTING_LINE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*): (?P<value>\S.*)")
_UNION = re.compile(r"^var appSettings = union\((?P<args>[^)]*)\)", re.MULTILINE)
_PARAM = re.compile(r"^param (?P<name>\w+) (?P<type>\w+)(?: = (?P<default>.+))?$", re.MULTILINE)
_MODULE_PATH = re.compile(r"^module \w+ '(?P<path>[^']+)'", re.MULTILINE)
_AZD_FALLBACK = re.compile(r"^\$\{(?P<variable>[A-Z_]+)(?:=(?P<fallback>[^}]*))?\}$")


def _object_at(text: str, start: int) -> str:
    """The `{...}` object that begins at or after `start`, its braces matched outside '...' strings and comments."""
    opening = text.index("{", start)
    depth = 0
    in_string = False
    index = opening
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == "'":
                in_string = False
        elif text.startswith("//", index):
            index = text.find("\n", index)
            if index < 0:
                break
            continue
        elif char == "'":
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[opening + 1 : index]
        index += 1
    raise AssertionError(f"unbalanced braces after offset {start}")


def settings_blocks() -> dict[str, dict[str, str]]:
    """Each `var <name>AppSettings` block of api.bicep: setting name -> its Bicep value expression."""
    text = API_BICEP.read_text()
    blocks: dict[str, dict[str, str]] = {}
    for match in _SETTINGS_BLOCK.finditer(text):
        settings: dict[str, str] = {}
        for raw in _object_at(text, match.end()).splitlines():
            line = raw.strip()
            if not line or line.startswith("//"):
                continue
            setting = _SETTING_LINE.fullmatch(line)
            assert setting, f"{match['name']}: not a `NAME: value` line, so this test cannot read it: {line!r}"
            settings[setting["name"]] = setting["value"]
        blocks[match["name"]] = settings
    return blocks


def bicep_app_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for block in settings_blocks().values():
        settings.update(block)
    return settings


def main_parameters() -> dict[str, re.Match[str]]:
    return {match["name"]: match for match in _PARAM.finditer(MAIN_BICEP.read_text())}


def parameter_file_values() -> dict[str, str]:
    document = json.loads(PARAMETERS.read_text())
    return {name: entry["value"] for name, entry in document["parameters"].items()}


def test_app_settings_are_set_only_in_the_blocks_this_test_reads() -> None:
    text = API_BICEP.read_text()
    blocks = settings_blocks()
    assert len(blocks) >= 3, "api.bicep's `var <name>AppSettings = {...}` blocks were not found"
    union = _UNION.search(text)
    assert union, "api.bicep has no `var appSettings = union(...)`"
    merged = [name.strip() for name in union["args"].split(",") if name.strip()]
    assert sorted(merged) == sorted(blocks), "appSettings must merge every settings block, and only those"
    config = re.search(r"'Microsoft\.Web/sites/config@[^']+' = \{(?P<body>.*?)\n\}", text, re.DOTALL)
    assert config, "api.bicep has no Microsoft.Web/sites/config resource"
    assert "name: 'appsettings'" in config["body"]
    assert "properties: appSettings" in config["body"]
    for bicep in INFRA.rglob("*.bicep"):
        assert not re.search(r"\bappSettings\s*:", bicep.read_text()), f"{bicep.name} sets app settings elsewhere"


def test_every_setting_the_app_reads_is_set_or_left_to_its_default_for_a_reason() -> None:
    set_by_bicep = set(bicep_app_settings())
    missing = [name for name in SETTING_NAMES if name not in set_by_bicep and name not in LEFT_TO_DEFAULT]
    assert not missing, f"set these in api.bicep, or say in LEFT_TO_DEFAULT why the default is right: {missing}"
    both = sorted(set_by_bicep & set(LEFT_TO_DEFAULT))
    assert not both, f"set by the Bicep, yet listed as left to its default: {both}"
    unknown = sorted(set(LEFT_TO_DEFAULT) - set(SETTING_NAMES))
    assert not unknown, f"LEFT_TO_DEFAULT names settings the app does not read: {unknown}"
    assert all(reason.strip() for reason in LEFT_TO_DEFAULT.values())


def test_every_setting_the_bicep_sets_is_read_by_the_app_or_the_platform() -> None:
    known = set(SETTING_NAMES) | set(READ_BY_THE_APP_SOON) | set(PLATFORM_SETTINGS)
    unknown = sorted(set(bicep_app_settings()) - known)
    assert not unknown, f"nothing reads these app settings (a typo?): {unknown}"


def test_the_allowlists_hold_only_settings_the_bicep_sets() -> None:
    set_by_bicep = set(bicep_app_settings())
    for allowlist in (READ_BY_THE_APP_SOON, PLATFORM_SETTINGS):
        unused = sorted(set(allowlist) - set_by_bicep)
        assert not unused, f"listed but not set by the Bicep: {unused}"


def test_settings_read_soon_leave_the_allowlist_once_the_app_reads_them() -> None:
    landed = sorted(set(READ_BY_THE_APP_SOON) & set(SETTING_NAMES))
    assert not landed, f"the app reads these now: move them out of READ_BY_THE_APP_SOON: {landed}"


def test_no_setting_flex_consumption_deprecates_is_set() -> None:
    deprecated = sorted(set(bicep_app_settings()) & FLEX_DEPRECATED)
    assert not deprecated, f"Flex Consumption does not use these (functionAppConfig does): {deprecated}"


def test_the_redis_url_carries_no_password_and_the_secret_comes_from_key_vault() -> None:
    settings = bicep_app_settings()
    url = settings["TOKEN_CACHE_REDIS_URL"]
    assert re.fullmatch(r"'rediss://\$\{\w+\}:10000'", url), url
    assert settings["TOKEN_CACHE_REDIS_AUTH"] == "'entra'"
    assert settings["TOKEN_CACHE_REDIS_SECRET"].startswith("'@Microsoft.KeyVault(SecretUri="), "a Key Vault reference"


def test_azure_yaml_names_a_function_service_whose_project_holds_host_json() -> None:
    azure_yaml = yaml.safe_load((ROOT / "azure.yaml").read_text())
    services = azure_yaml["services"]
    assert services, "azure.yaml names no service"
    tagged = re.search(r"^param serviceName string = '(?P<name>[\w-]+)'", API_BICEP.read_text(), re.MULTILINE)
    assert tagged, "api.bicep has no serviceName default (the site's azd-service-name tag)"
    assert "'azd-service-name': serviceName" in API_BICEP.read_text()
    for name, service in services.items():
        assert service["host"] == "function"
        assert service["language"] == "python"
        assert (ROOT / service["project"] / "host.json").is_file(), f"{name}: no host.json in its project folder"
        assert name == tagged["name"], f"azd finds service {name!r} by the azd-service-name tag the site carries"


def test_the_files_azd_provisions_from_exist_and_every_module_is_there() -> None:
    assert MAIN_BICEP.is_file()
    assert PARAMETERS.is_file()
    for bicep in INFRA.rglob("*.bicep"):
        for module in _MODULE_PATH.finditer(bicep.read_text()):
            assert (bicep.parent / module["path"]).is_file(), f"{bicep.name}: module {module['path']} is missing"


def test_the_parameters_file_names_only_declared_parameters() -> None:
    declared = main_parameters()
    undeclared = sorted(set(parameter_file_values()) - set(declared))
    assert not undeclared, f"main.parameters.json sets parameters main.bicep does not declare: {undeclared}"


def test_every_parameter_without_a_default_is_given_by_the_parameters_file_or_generated_by_azd() -> None:
    values = parameter_file_values()
    bicep = MAIN_BICEP.read_text()
    generated = []
    for name, param in main_parameters().items():
        if param["default"] is not None or name in values:
            continue
        decorators = bicep[: param.start()].rsplit("\n\n", 1)[-1]
        assert "type: 'generate'" in decorators, f"azd would prompt for {name}: give it a default or a value"
        generated.append(name)
    assert generated == ["tokenCacheRedisSecret"], "azd generates the sealing secret once per environment"


@pytest.mark.parametrize("name", sorted(parameter_file_values()))
def test_the_parameters_file_falls_back_to_the_bicep_default(name: str) -> None:
    value = _AZD_FALLBACK.fullmatch(parameter_file_values()[name])
    assert value, f"{name}: expected ${{VARIABLE}} or ${{VARIABLE=fallback}}"
    default = main_parameters()[name]["default"]
    if default is None:
        assert value["fallback"] is None, f"{name} has no Bicep default, so the file should give no fallback either"
        return
    assert value["fallback"] is not None, f"{name}: unset, azd would pass an empty value instead of the default"
    assert value["fallback"] == default.strip("'"), f"{name}: the file's fallback and the Bicep default differ"


def test_cors_allows_no_origin_by_default_and_never_every_origin() -> None:
    assert main_parameters()["corsAllowedOrigins"]["default"] == "''"
    api = API_BICEP.read_text()
    assert "supportCredentials: false" in api
    assert "'*'" not in api
    assert parameter_file_values()["corsAllowedOrigins"] == "${CORS_ALLOWED_ORIGINS=}"
