// Key Vault (Azure RBAC, no access policies) holding TOKEN_CACHE_REDIS_SECRET. The app reads it through a Key Vault
// reference app setting with its own identity, which may read this one secret and nothing else (rbac.bicep).
param name string
param location string
param tags object
param redisSecretName string
@secure()
param redisSecretValue string
@description('Disabled with vnetEnabled=true: the vault is then reached through its private endpoint only.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the default action is Deny with vnetEnabled=true (and a private endpoint); without a virtual network the platform resolves the Key Vault reference over the vault's public endpoint, where only Azure RBAC lets anyone in, and the app's identity may read one secret
  // checkov:skip=CKV_AZURE_189: public network access is Disabled with vnetEnabled=true; without a virtual network the platform resolves the Key Vault reference over the public endpoint, where only Azure RBAC lets anyone in
  // checkov:skip=CKV_AZURE_110: no purge protection, so that `azd down --purge` really removes the vault and `azd up` can make it again under the same name; the one secret is disposable by design (replacing it only empties the shared cache) and soft delete still keeps a deleted vault for 7 days
  // checkov:skip=CKV_AZURE_42: recoverable means soft delete plus purge protection; soft delete is on (7 days), purge protection is off for the reason given for CKV_AZURE_110
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Disabled' ? 'Deny' : 'Allow'
      bypass: 'None'
    }
  }
}

resource redisSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the sealing secret is rotated by replacing it (which only starts an empty shared cache), not on a date: an expiry would take the shared cache's secret away at a time nobody chose
  parent: vault
  name: redisSecretName
  properties: {
    value: redisSecretValue
    contentType: 'text/plain'
  }
}

output id string = vault.id
output name string = vault.name
// Versionless: the app picks up a new version of the secret without a change to its settings.
output redisSecretUri string = '${vault.properties.vaultUri}secrets/${redisSecret.name}'
