// The function app on a Flex Consumption (FC1) plan, and every app setting it gets.
//
// App settings live only in the `var <name>AppSettings = {...}` blocks below, merged into `appSettings`:
// tests/test_infra_settings.py reads them there and checks each name against the settings the app reads.
param name string
param planName string
param location string
param tags object
param serviceName string = 'api'
param pythonVersion string
param instanceMemoryMB int
param maximumInstanceCount int
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param appInsightsName string
param redisSecretUri string
param appSubnetId string
param corsAllowedOrigins string
param authProviders string
param kaizalaAllowedActionPackageIds string
param kaizalaIdentityUrl string
param kaizalaAllowedUserIds string
param kaizalaBlockedUserIds string
param teamsClientId string
param teamsApplicationIdUri string
param teamsAllowedTenantIds string
param teamsAllowedUserIds string
param teamsBlockedUserIds string
param tokenCacheSeconds int
param enableRedis bool
param redisHostName string

var kaizalaEnabled = contains(split(authProviders, ','), 'kaizala')
var teamsEnabled = contains(split(authProviders, ','), 'teams')
var corsOrigins = empty(corsAllowedOrigins) ? [] : split(replace(corsAllowedOrigins, ' ', ''), ',')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption needs at least two always-ready instances per function group, billed while idle; this deployment keeps nothing running at rest
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the API is public by design: cards in Kaizala and tabs in Teams call it from users' devices, and every request is authenticated by its token (the app answers 401 without one)
  // checkov:skip=CKV_AZURE_17: browsers in Kaizala and Teams present no client certificate; the caller is authenticated by the bearer token the app checks
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero; always-ready instances would be billed while idle, and a cold start only delays a request
  // checkov:skip=CKV_AZURE_213: every function answers 401 to a request without a token (no anonymous 2xx endpoint exists, by design), so a health-check path would mark every instance unhealthy
  // checkov:skip=CKV_AZURE_78: Flex Consumption offers no FTP and lists ftpsState among its deprecated site properties; basic-auth publishing (ftp and scm) is switched off below
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the app's user-assigned identity (the default would be a system-assigned one).
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      // The platform answers CORS: exactly the card's and the tab's origins, never *, and no credentials (the token
      // travels in the Authorization header, not in a cookie).
      cors: {
        allowedOrigins: corsOrigins
        supportCredentials: false
      }
    }
  }
}

// Publishing with a user name and password (FTP, and basic auth to the deployment endpoint) stays off: azd deploys
// with Microsoft Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// The Functions host: storage and Application Insights with the app's identity, no keys or connection strings.
var platformAppSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The Python worker configures Microsoft's OpenTelemetry distro: the app's kaizala_auth metrics, spans and logs
  // (docs/telemetry.md), sent with the same identity.
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  // Which identity the app's own Azure SDK credentials use (Redis with Entra ID).
  AZURE_CLIENT_ID: identityClientId
}

var providerAppSettings = {
  AUTH_PROVIDERS: authProviders
}

// Only with Kaizala on. Empty values mean the app's defaults (see docs/settings.md).
var kaizalaAppSettings = kaizalaEnabled ? {
  KAIZALA_ALLOWED_ACTION_PACKAGE_IDS: kaizalaAllowedActionPackageIds
  KAIZALA_IDENTITY_URL: kaizalaIdentityUrl
  KAIZALA_ALLOWED_USER_IDS: kaizalaAllowedUserIds
  KAIZALA_BLOCKED_USER_IDS: kaizalaBlockedUserIds
} : {}

// Only with Teams on (AUTH_PROVIDERS names teams): a half-configured Teams sign-in fails closed.
var teamsAppSettings = teamsEnabled ? {
  TEAMS_CLIENT_ID: teamsClientId
  TEAMS_APPLICATION_ID_URI: teamsApplicationIdUri
  TEAMS_ALLOWED_TENANT_IDS: teamsAllowedTenantIds
  TEAMS_ALLOWED_USER_IDS: teamsAllowedUserIds
  TEAMS_BLOCKED_USER_IDS: teamsBlockedUserIds
} : {}

var cacheAppSettings = {
  TOKEN_CACHE_SECONDS: string(tokenCacheSeconds)
}

// Only with Redis on: TLS to port 10000 without a password (Entra ID), and the sealing secret from Key Vault.
var redisAppSettings = enableRedis ? {
  TOKEN_CACHE_REDIS_URL: 'rediss://${redisHostName}:10000'
  TOKEN_CACHE_REDIS_AUTH: 'entra'
  TOKEN_CACHE_REDIS_SECRET: '@Microsoft.KeyVault(SecretUri=${redisSecretUri})'
} : {}

var appSettings = union(
  platformAppSettings,
  providerAppSettings,
  kaizalaAppSettings,
  teamsAppSettings,
  cacheAppSettings,
  redisAppSettings
)

resource siteAppSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: this is the appsettings config, not authsettings; App Service Authentication cannot check Kaizala tokens, so the app authenticates every request itself (Kaizala users/me, Teams RS256 signatures)
  // checkov:skip=CKV_AZURE_222: the site's public access is explained on the site; this appsettings config holds app settings only
  // checkov:skip=CKV_AZURE_63: web-server HTTP logs belong to the web config, not this appsettings config; requests are logged to Application Insights, which never sees a token or query string from the app
  // checkov:skip=CKV_AZURE_65: detailed error pages belong to the web config, not this appsettings config, and would show callers internals: the app answers JSON errors that name no internals
  // checkov:skip=CKV_AZURE_66: failed request tracing is an IIS (Windows) feature of the web config; this is a Linux app, and its failures go to Application Insights
  // checkov:skip=CKV_AZURE_80: a Python app: there is no .NET Framework version to set
  // checkov:skip=CKV_AZURE_88: Flex Consumption runs the package from its blob deployment container; Azure Files content shares are deprecated there
  parent: site
  name: 'appsettings'
  properties: appSettings
}

output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
