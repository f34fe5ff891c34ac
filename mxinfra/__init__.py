"""mxinfra: Mendix apps as Pulumi infrastructure on your own cloud.

Importing the package is cheap on purpose: the CLI's start-up must not load Pulumi or a cloud SDK.
The components live in `mxinfra.components`.
"""

__version__ = "0.1.0"
