"""The Cloud Foundry target of mxinfra: the cf-mendix-buildpack over the Cloud Controller v3 API.

Importing the package loads nothing: the CLI imports `mxinfra_cloudfoundry.grants` on every start (it
registers `mxinfra access`), so the target itself (pydantic schemas, pulumi) is registered as the class
`mxinfra_cloudfoundry.target:CloudFoundryTarget` and loaded only when a stack names it.
"""
