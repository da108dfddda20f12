// The virtual network for vnetEnabled=true: one subnet delegated to Flex Consumption's virtual network integration,
// one for the private endpoints of storage, Key Vault and Redis.
param name string
param location string
param tags object
param appSubnetName string = 'app'
param privateEndpointSubnetName string = 'private-endpoints'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.0.0.0/16'
      ]
    }
    subnets: [
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: '10.0.1.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
          privateLinkServiceNetworkPolicies: 'Enabled'
        }
      }
      {
        name: appSubnetName
        properties: {
          addressPrefix: '10.0.2.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
          privateLinkServiceNetworkPolicies: 'Enabled'
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

output appSubnetId string = '${vnet.id}/subnets/${appSubnetName}'
output privateEndpointSubnetName string = privateEndpointSubnetName
