// `azd up` for the function app on the Flex Consumption plan. Modelled on Microsoft's Flex Consumption Python
// quickstart (Azure-Samples/functions-quickstart-python-http-azd), with native resources in local modules instead of
// registry (AVM) modules, so that every resource can be checked offline (`make infra-check`).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: it names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region for every resource; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Put the app in a virtual network and reach storage, Key Vault and Redis over private endpoints only.')
param vnetEnabled bool = false

@description('Python of the Flex Consumption runtime. 3.11 and 3.13 are the versions CI tests on every run.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.11'

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to: bounds what a flood of anonymous requests can cost.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Which tokens the API trusts: Kaizala cards, Teams tabs (Entra ID), or both.')
@allowed([
  'kaizala'
  'teams'
  'kaizala,teams'
])
param authProviders string = 'kaizala'

@description('KAIZALA_ALLOWED_ACTION_PACKAGE_IDS: your card\'s actionPackageId (comma-separated; * alone for any card). Required with Kaizala.')
param kaizalaAllowedActionPackageIds string = ''

@description('KAIZALA_IDENTITY_URL: empty for the app\'s default (Kaizala\'s users/me).')
param kaizalaIdentityUrl string = ''

@description('KAIZALA_ALLOWED_USER_IDS: empty for any user of an allowed card.')
param kaizalaAllowedUserIds string = ''

@description('KAIZALA_BLOCKED_USER_IDS: user ids refused even when cached.')
param kaizalaBlockedUserIds string = ''

@description('TEAMS_CLIENT_ID: the Entra app registration\'s client id. Required with Teams.')
param teamsClientId string = ''

@description('TEAMS_APPLICATION_ID_URI: api://<the tab\'s host>/<client id>; empty for v2 tokens only.')
param teamsApplicationIdUri string = ''

@description('TEAMS_ALLOWED_TENANT_IDS: comma-separated tenant ids; empty for the tenant this is deployed to.')
param teamsAllowedTenantIds string = ''

@description('TEAMS_ALLOWED_USER_IDS: Entra object ids; empty for any user of the allowed tenants.')
param teamsAllowedUserIds string = ''

@description('TEAMS_BLOCKED_USER_IDS: Entra object ids refused even when cached.')
param teamsBlockedUserIds string = ''

@description('TOKEN_CACHE_SECONDS: how long a checked token is trusted without asking again (0 to 1800).')
@minValue(0)
@maxValue(1800)
param tokenCacheSeconds int = 300

@description('Origins the card and the tab are served from (comma-separated https origins); empty allows none. Never *.')
param corsAllowedOrigins string = ''

@description('Create an Azure Managed Redis cache shared by every instance (the one resource billed while idle).')
param enableRedis bool = false

@description('Azure Managed Redis SKU.')
@allowed([
  'Balanced_B0'
  'Balanced_B1'
  'Balanced_B3'
  'Balanced_B5'
  'MemoryOptimized_M10'
])
param redisSkuName string = 'Balanced_B0'

@description('Replicate the cache (about twice the cost). The app answers correctly without Redis, so off by default.')
param redisHighAvailability bool = false

@secure()
@description('TOKEN_CACHE_REDIS_SECRET, kept in Key Vault. azd generates it once per environment and keeps it.')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param tokenCacheRedisSecret string

var abbrs = {
  resourceGroup: 'rg-'
  identity: 'id-'
  plan: 'plan-'
  functionApp: 'func-'
  storage: 'st'
  logAnalytics: 'log-'
  appInsights: 'appi-'
  keyVault: 'kv-'
  redis: 'redis-'
  vnet: 'vnet-'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.functionApp}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var keyVaultName = '${abbrs.keyVault}${resourceToken}'
var vnetName = '${abbrs.vnet}${resourceToken}'
var redisSecretName = 'token-cache-redis-secret'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourceGroup}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.identity}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storage}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    vnetEnabled: vnetEnabled
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.logAnalytics}${resourceToken}'
    appInsightsName: '${abbrs.appInsights}${resourceToken}'
    location: location
    tags: tags
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    redisSecretName: redisSecretName
    redisSecretValue: tokenCacheRedisSecret
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

module redis 'app/redis.bicep' = if (enableRedis) {
  name: 'redis'
  scope: rg
  params: {
    name: '${abbrs.redis}${resourceToken}'
    location: location
    tags: tags
    skuName: redisSkuName
    highAvailability: redisHighAvailability
    dataAccessPrincipalId: identity.outputs.principalId
    vnetEnabled: vnetEnabled
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultName: keyVault.outputs.name
    redisSecretName: redisSecretName
    principalId: identity.outputs.principalId
  }
}

module vnet 'app/vnet.bicep' = if (vnetEnabled) {
  name: 'vnet'
  scope: rg
  params: {
    name: vnetName
    location: location
    tags: tags
  }
}

module blobPrivateEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'blobPrivateEndpoint'
  scope: rg
  params: {
    name: 'pe-blob-${resourceToken}'
    location: location
    tags: tags
    vnetName: vnetName
    subnetName: vnetEnabled ? vnet.outputs.privateEndpointSubnetName : ''
    targetResourceId: storage.outputs.id
    groupId: 'blob'
    privateDnsZoneName: 'privatelink.blob.${environment().suffixes.storage}'
  }
}

module keyVaultPrivateEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'keyVaultPrivateEndpoint'
  scope: rg
  params: {
    name: 'pe-vault-${resourceToken}'
    location: location
    tags: tags
    vnetName: vnetName
    subnetName: vnetEnabled ? vnet.outputs.privateEndpointSubnetName : ''
    targetResourceId: keyVault.outputs.id
    groupId: 'vault'
    privateDnsZoneName: 'privatelink.vaultcore.azure.net'
  }
}

module redisPrivateEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled && enableRedis) {
  name: 'redisPrivateEndpoint'
  scope: rg
  params: {
    name: 'pe-redis-${resourceToken}'
    location: location
    tags: tags
    vnetName: vnetName
    subnetName: vnetEnabled ? vnet.outputs.privateEndpointSubnetName : ''
    targetResourceId: enableRedis ? redis.outputs.id : ''
    groupId: 'redisEnterprise'
    privateDnsZoneName: 'privatelink.redis.azure.net'
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [
    // The Key Vault reference and the identity-based storage connection resolve only once the roles exist.
    rbac
    keyVaultPrivateEndpoint
    blobPrivateEndpoint
  ]
  params: {
    name: functionAppName
    planName: '${abbrs.plan}${resourceToken}'
    location: location
    tags: tags
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    redisSecretUri: keyVault.outputs.redisSecretUri
    appSubnetId: vnetEnabled ? vnet.outputs.appSubnetId : ''
    corsAllowedOrigins: corsAllowedOrigins
    authProviders: authProviders
    kaizalaAllowedActionPackageIds: kaizalaAllowedActionPackageIds
    kaizalaIdentityUrl: kaizalaIdentityUrl
    kaizalaAllowedUserIds: kaizalaAllowedUserIds
    kaizalaBlockedUserIds: kaizalaBlockedUserIds
    teamsClientId: teamsClientId
    teamsApplicationIdUri: teamsApplicationIdUri
    teamsAllowedTenantIds: empty(teamsAllowedTenantIds) ? tenant().tenantId : teamsAllowedTenantIds
    teamsAllowedUserIds: teamsAllowedUserIds
    teamsBlockedUserIds: teamsBlockedUserIds
    tokenCacheSeconds: tokenCacheSeconds
    enableRedis: enableRedis
    redisHostName: enableRedis ? redis.outputs.hostName : ''
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_FUNCTION_NAME string = api.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
