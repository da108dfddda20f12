// Azure Managed Redis for the fleet-wide token cache: TLS only on port 10000, access keys disabled, Microsoft Entra ID
// authentication, and a data access policy assignment for the app's identity alone.
param name string
param location string
param tags object
param skuName string
param highAvailability bool
param dataAccessPrincipalId string
param vnetEnabled bool

resource cluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability ? 'Enabled' : 'Disabled'
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: cluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    // The app's client is a plain (non-cluster) redis-py client: OSSCluster would answer it with MOVED redirects.
    clusteringPolicy: 'NoCluster'
    // Every key the app writes carries a TTL.
    evictionPolicy: 'VolatileLRU'
    accessKeysAuthentication: 'Disabled'
  }
}

resource dataAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = {
  parent: database
  // Names allow letters and digits only.
  name: take(replace(dataAccessPrincipalId, '-', ''), 60)
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: dataAccessPrincipalId
    }
  }
}

output id string = cluster.id
output hostName string = cluster.properties.hostName
